"""COCO val2017 over loopback HTTP: two zips in, a checked layout out; deterministic subsets."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest
from conftest import FAST

from harness.core.errors import DatasetError, UsageError
from harness.fetch import dataset
from harness.zoo.lockfile import LockFile
from harness.zoo.manifest import Dataset

N = 7


def _coco(n: int = N) -> dict:
    images = [{"id": 100 + i, "file_name": f"{100 + i:012d}.jpg", "width": 64, "height": 48} for i in range(n)]
    anns = [
        {
            "id": i + 1,
            "image_id": 100 + i,
            "category_id": 1,
            "bbox": [1, 2, 10, 10],
            "area": 100,
            "iscrowd": 0,
            "segmentation": [[1, 2, 11, 2, 11, 12]],
        }
        for i in range(n)
    ]
    return {
        "info": {"description": "synthetic"},
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "thing", "supercategory": "thing"}],
    }


def _zips(tmp_path: Path, coco: dict) -> tuple[Path, Path]:
    images, annotations = tmp_path / "val2017.zip", tmp_path / "annotations_trainval2017.zip"
    with zipfile.ZipFile(images, "w") as zf:
        for img in coco["images"]:
            zf.writestr(f"val2017/{img['file_name']}", b"\xff\xd8 not really a jpeg")
    with zipfile.ZipFile(annotations, "w") as zf:
        zf.writestr("annotations/instances_val2017.json", json.dumps(coco))
        zf.writestr("annotations/instances_train2017.json", "{}")  # must not be extracted
    return images, annotations


@pytest.fixture
def served(server, tmp_path):
    images, annotations = _zips(tmp_path, _coco())
    return Dataset(
        name="coco-val2017",
        images=server.add("/zips/val2017.zip", images),
        annotations=server.add("/annotations/annotations_trainval2017.zip", annotations),
    )


def test_fetch_extracts_images_and_only_the_val_annotations(served, cache, tmp_path):
    lock = LockFile(tmp_path / "zoo.lock")
    data = dataset.prepare(served, lock, policy=FAST)
    assert data.num_images == N and data.subset is None
    assert data.annotations.name == "instances_val2017.json"
    assert sorted(p.name for p in data.annotations.parent.iterdir()) == ["instances_val2017.json"]
    assert len(list(data.images.glob("*.jpg"))) == N
    assert set(data.sha256) == {served.images.url, served.annotations.url}
    assert lock.get(served.images.url).sha256 == data.sha256[served.images.url]
    assert dataset.prepare(served, lock, policy=FAST) == data  # second time: from the cache


def test_subset_is_deterministic_and_self_consistent(served, cache):
    a = dataset.prepare(served, None, subset=3, seed=0, policy=FAST)
    b = dataset.prepare(served, None, subset=3, seed=0, policy=FAST)
    assert a == b and a.num_images == 3
    ann = json.loads(a.annotations.read_text())
    ids = [img["id"] for img in ann["images"]]
    assert ids == a.subset["image_ids"] == sorted(ids)
    assert {x["image_id"] for x in ann["annotations"]} == set(ids) and len(ann["annotations"]) == 3
    assert "info" in ann and ann["categories"] == _coco()["categories"]
    others = {
        tuple(dataset.prepare(served, None, subset=3, seed=s, policy=FAST).subset["image_ids"]) for s in range(1, 6)
    }
    assert len(others | {tuple(ids)}) > 1  # the seed matters


@pytest.mark.parametrize("n", [0, N + 1])
def test_subset_size_out_of_range_is_a_usage_error(served, cache, n):
    with pytest.raises(UsageError, match=f"--subset {n}: must be between 1 and the {N} images"):
        dataset.prepare(served, None, subset=n, policy=FAST)


def test_existing_root_with_data(tmp_path, cache):
    root = tmp_path / "coco"
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    coco = _coco()
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(coco))
    ds = Dataset(name="coco-val2017", images="http://unused.invalid/a.zip", annotations="http://unused.invalid/b.zip")
    with pytest.raises(DatasetError, match=f"{N} of {N} images listed in instances_val2017.json are missing"):
        dataset.prepare(ds, None, data_dir=root)
    for img in coco["images"][:2]:
        (root / "val2017" / img["file_name"]).write_bytes(b"x")
    with pytest.raises(DatasetError, match=f"{N - 2} of {N} images"):
        dataset.prepare(ds, None, data_dir=root)
    for img in coco["images"]:
        (root / "val2017" / img["file_name"]).write_bytes(b"x")
    assert dataset.prepare(ds, None, data_dir=root).num_images == N
    (root / "annotations" / "instances_val2017.json").unlink()
    with pytest.raises(DatasetError, match="annotations not found"):
        dataset.prepare(ds, None, data_dir=root, subset=2)


def _offline(tmp_path: Path) -> list[str]:
    """`harness fetch` arguments that touch no network: the first seed model with local weights, a local tree."""
    import yaml
    from conftest import REPO

    raw = yaml.safe_load((REPO / "zoo.yaml").read_text())
    (tmp_path / "w.pdparams").write_bytes(b"weights")
    raw["models"][0]["weights"] = str(tmp_path / "w.pdparams")
    (tmp_path / "zoo.yaml").write_text(yaml.safe_dump(raw))
    (tmp_path / "ppdet" / "ppdet").mkdir(parents=True)
    (tmp_path / "ppdet" / "ppdet" / "__init__.py").write_text("")
    (tmp_path / "ppdet" / "configs").mkdir()
    return [raw["models"][0]["name"], "--zoo", str(tmp_path / "zoo.yaml"), "--ppdet-root", str(tmp_path / "ppdet")]


@pytest.mark.parametrize(
    "edit, named",
    [
        (lambda c: c["images"][2].update(file_name="../../../etc/hostname"), "images[2] (id 102): file_name climbs"),
        (lambda c: c["images"][1].update(file_name="/etc/hostname"), "images[1] (id 101): file_name is an absolute"),
        (lambda c: c["images"][3].pop("id"), "images[3]: id None is not an integer"),
        (lambda c: c["images"][4].update(id="104"), "images[4]: id '104' is not an integer"),
        (lambda c: c["images"].__setitem__(0, "000000000100.jpg"), "images[0] is a str, not an image record"),
        (lambda c: c["images"][5].update(id=100), "images[5]: id 100 appears twice"),
        (lambda c: c["annotations"].__setitem__(1, [1, 2]), "annotations[1] is a list, not a record"),
    ],
)
def test_a_hostile_or_malformed_image_record_is_named_with_exit_2(tmp_path, cache, edit, named):
    """`file_name` with `..` or an absolute path would make ppdet read files outside the COCO root; an image
    without an integer id, or a record that is not a record, gave a traceback. Each is refused by name, exit 2,
    through the CLI as a user meets it, before any reader runs."""
    from conftest import harness

    root = tmp_path / "coco"
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    coco = _coco()
    for img in coco["images"]:
        (root / "val2017" / img["file_name"]).write_bytes(b"x")
    edit(coco)
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(coco))
    ds = Dataset(name="coco-val2017", images="http://unused.invalid/a.zip", annotations="http://unused.invalid/b.zip")
    with pytest.raises(DatasetError, match=re.escape(named)) as exc:
        dataset.prepare(ds, None, data_dir=root, subset=2)
    assert exc.value.exit_code == 2
    out = harness("fetch", *_offline(tmp_path), "--data", str(root), cache=cache)
    assert out.returncode == 2 and named in out.stderr and "Traceback" not in out.stderr, out.stderr[-1500:]


# ---- a dataset per model: classes, further files, `--data NAME=DIR` --------------------------------------------


def _root(tmp_path: Path, coco: dict) -> Path:
    root = tmp_path / "root"
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(coco))
    for img in coco["images"]:
        (root / "val2017" / img["file_name"]).write_bytes(b"x")
    return root


@pytest.mark.parametrize(
    "classes, ok",
    [(1, True), (["thing"], True), (80, False), (["person"], False), (["thing", "other"], False)],
)
def test_a_dataset_is_refused_unless_its_categories_are_the_classes_the_zoo_names(tmp_path, cache, classes, ok):
    root = _root(tmp_path, _coco())
    ds = Dataset(name="visdrone-val", images="http://unused.invalid/a.zip", annotations="b.zip", classes=classes)
    if ok:
        assert dataset.prepare(ds, None, data_dir=root).name == "visdrone-val"
        return
    with pytest.raises(DatasetError, match=r"has 1 categories \(thing\); dataset visdrone-val has") as err:
        dataset.prepare(ds, None, data_dir=root)
    assert "--data visdrone-val=DIR" in err.value.hint


def test_a_layouts_further_file_must_be_in_the_root(tmp_path, cache):
    root = _root(tmp_path, _coco())
    ds = Dataset(name="d", images="a.zip", annotations="b.zip", files={"label_list": "label_list.txt"})
    with pytest.raises(DatasetError, match=r"d: its label_list .*label_list.txt is missing"):
        dataset.prepare(ds, None, data_dir=root)
    (root / "label_list.txt").write_text("thing\n")
    assert dataset.prepare(ds, None, data_dir=root).files == {"label_list": root / "label_list.txt"}


def test_data_arguments_name_their_dataset_or_are_the_one_the_models_use(tmp_path):
    from harness.commands.options import data_args

    assert data_args(None) == (None, {})
    assert data_args(["/c"]) == (Path("/c"), {})
    assert data_args(["visdrone=/v", "/c", "voc-2007=/p"]) == (
        Path("/c"),
        {"visdrone": Path("/v"), "voc-2007": Path("/p")},
    )
    odd = tmp_path / "a=b"
    odd.mkdir()
    assert data_args([str(odd)]) == (odd, {})  # an existing directory whose name holds `=` is a plain root
    with pytest.raises(UsageError, match="2 unnamed roots"):
        data_args(["/c", "/d"])
    with pytest.raises(UsageError, match="given twice"):
        data_args(["v=/a", "v=/b"])


def test_one_datasets_failure_is_its_models_error_and_no_other_models(tmp_path, cache):
    from harness.model.inputs import Inputs, Options, data_roots
    from harness.zoo.manifest import parse_zoo

    raw = yaml_zoo()
    raw["datasets"] = {"visdrone-val": {"images": "v.zip", "annotations": "w.zip", "classes": 10}}
    raw["models"].append({**raw["models"][0], "name": "on-visdrone", "dataset": "visdrone-val"})
    zoo = parse_zoo(raw)
    coco, vis = zoo.models[0], zoo.model("on-visdrone")
    assert zoo.dataset_of(coco).name == "coco-val2017" and zoo.dataset_of(vis).classes == 10
    assert [d.name for d in zoo.datasets_of([vis, coco, vis])] == ["visdrone-val", "coco-val2017"]
    with pytest.raises(UsageError, match="2 datasets"):
        data_roots(zoo, Options(data=tmp_path), ["coco-val2017", "visdrone-val"])
    with pytest.raises(UsageError, match="no dataset 'nope'"):
        data_roots(zoo, Options(data_roots={"nope": tmp_path}), ["coco-val2017"])
    assert data_roots(
        zoo,
        Options(data=tmp_path, data_roots={"visdrone-val": tmp_path / "v"}),
        [
            "coco-val2017",
            "visdrone-val",
        ],
    ) == {"coco-val2017": tmp_path, "visdrone-val": tmp_path / "v"}
    good = dataset.prepare(zoo.dataset, None, data_dir=_root(tmp_path, _coco()))
    inputs = Inputs("current", None, {"coco-val2017": good, "visdrone-val": DatasetError("gone", hint="h")}, "cpu")  # type: ignore[arg-type]
    assert inputs.data_for(coco) is good and inputs.images_of(coco) == N
    assert inputs.images_of(vis) is None
    with pytest.raises(DatasetError, match="gone"):
        inputs.data_for(vis)


def yaml_zoo() -> dict:
    import yaml
    from conftest import REPO

    return yaml.safe_load((REPO / "zoo.yaml").read_text())


def test_a_dataset_without_an_archive_names_its_homepage_and_data_and_a_named_root_is_used(tmp_path, cache):
    """`harness fetch --dataset NAME` of a dataset the zoo can name no archive for (VisDrone, Objects365, ...):
    exit 4 (unavailable) naming the page to get it from and `--data NAME=DIR`; with that root, it is prepared."""
    import yaml
    from conftest import harness

    args = _offline(tmp_path)
    zoo = tmp_path / "zoo.yaml"
    raw = yaml.safe_load(zoo.read_text())
    raw["datasets"] = {"visdrone-det-val": {"homepage": "https://example.org/visdrone", "classes": 1}}
    zoo.write_text(yaml.safe_dump(raw))
    out = harness("fetch", *args, "--dataset", "visdrone-det-val", cache=cache)
    assert out.returncode == 4 and "Traceback" not in out.stderr, out.stderr[-1500:]
    assert "dataset visdrone-det-val has no archive the harness can fetch" in out.stderr
    assert "https://example.org/visdrone" in out.stderr and "--data visdrone-det-val=DIR" in out.stderr
    root = _root(tmp_path, _coco())
    out = harness("fetch", *args, "--data", f"visdrone-det-val={root}", "--json", cache=cache)
    assert out.returncode == 0, out.stderr[-1500:]
    rows = {r["kind"] + ":" + r["name"]: r for r in json.loads(out.stdout)}
    assert rows["dataset:visdrone-det-val"]["num_images"] == N and rows["dataset:visdrone-det-val"]["status"] == "ok"
    out = harness("fetch", *args, "--dataset", "nope", cache=cache)
    assert out.returncode == 2 and "unknown dataset 'nope'" in out.stderr and "visdrone-det-val" in out.stderr
