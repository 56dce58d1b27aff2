"""What the harness writes, deletes and trusts: names and paths, zoo.lock records, deep files, repairs.

Each test causes the fault for real (a zoo.yaml, a zoo.lock, a result.json, a damaged file) and checks the
exit code, the message and the state of the cache, the lock and the run directory afterwards.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import FAST, REPO, coco_zips, harness, harness_argv, namespaced

from harness.core.errors import DatasetError, ExitCode, ManifestError, UsageError
from harness.core.files import remove_tree
from harness.fetch import dataset
from harness.fetch.artifacts import fetch_artifact
from harness.fetch.cache import entry_path
from harness.nightly.rescoring import rescore
from harness.records.results import model_dir, write
from harness.zoo.lockfile import LockFile
from harness.zoo.manifest import Artifact, Dataset, parse_zoo

RAW = yaml.safe_load((REPO / "zoo.yaml").read_text())
SHA = "ab" * 32


# ---- names and paths -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, why",
    [
        ("..", "is not a model name"),
        (".", "is not a model name"),
        ("a/b", "does not match"),
        ("/abs", "does not match"),
        ("", "does not match"),
    ],
)
def test_a_model_name_must_be_one_plain_path_component(name, why):
    raw = copy.deepcopy(RAW)
    raw["models"][0]["name"] = name
    with pytest.raises(ManifestError, match="models\\[0\\].name: .*" + why):
        parse_zoo(raw)


def test_a_record_cannot_name_a_directory_outside_the_run(tmp_path):
    for bad in ("..", ".", "../x", "/tmp/x", ""):
        with pytest.raises(UsageError, match="is not a plain file name"):
            model_dir(tmp_path / "run", bad)
        with pytest.raises(UsageError):
            write(tmp_path / "run", {"model": bad, "status": "fail"})
    assert not (tmp_path / "run").exists() and not (tmp_path / "x").exists()


def test_remove_tree_never_leaves_the_directory_it_is_given(tmp_path):
    run = tmp_path / "run"
    (run / "m").mkdir(parents=True)
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("years of work")
    (run / "link").symlink_to(tmp_path / "precious")
    for path in (run / "..", run, run / "link", run / "m" / ".." / "..", tmp_path / "precious"):
        assert remove_tree(path, inside=run) is False
    assert (tmp_path / "precious" / "thesis.tex").read_text() == "years of work"
    assert remove_tree(run / "m", inside=run) and not (run / "m").exists()


def _scored_run(tmp_path, model_field: str) -> Path:
    """A run directory holding one result that reached scoring, whose `model` field is `model_field`."""
    ann = tmp_path / "instances.json"
    ann.write_text(
        json.dumps(
            {
                "info": {},
                "images": [{"id": 1, "file_name": "1.jpg", "width": 9, "height": 9}],
                "annotations": [
                    {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "area": 16, "iscrowd": 0}
                ],
                "categories": [{"id": 1, "name": "x"}],
            }
        )
    )
    mdir = tmp_path / "run" / "m"
    (mdir / "predictions").mkdir(parents=True)
    (mdir / "predictions" / "bbox.json").write_text(
        json.dumps([{"image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "score": 0.9}])
    )
    verdict = {
        "metric": "box_ap",
        "measured": 0.0,
        "documented": 40.6,
        "tolerance": 0.3,
        "delta": -40.6,
        "status": "fail",
        "reason": "r",
    }
    rec = {
        "schema": 1,
        "model": model_field,
        "run_id": "r",
        "zoo_index": 0,
        "started": "2026-11-25T00:00:00+00:00",
        "table": {},
        "documented": {"box_ap": 40.6},
        "status": "fail",
        "predictions": {"bbox": "predictions/bbox.json"},
        "dataset": {"annotations": str(ann)},
        "metrics": {"box_ap": verdict},
    }
    (mdir / "result.json").write_text(json.dumps(rec))
    return tmp_path / "run"


@pytest.mark.numerics
@pytest.mark.parametrize("field", ["/tmp/harness-escape-test", "../../escape", ".."])
def test_rescore_writes_the_file_it_read_whatever_the_record_says(tmp_path, field):
    run = _scored_run(tmp_path, field)
    before = sorted(p for p in tmp_path.rglob("*"))
    records = rescore(run, "pycocotools")
    assert records[0].stats["bbox"]["AP"] == pytest.approx(1.0) and records[0].rescored
    assert json.loads((run / "m" / "result.json").read_text())["rescored"]
    claim = run / ".m.lock"  # the directory's claim (claims.py), beside it in the run directory
    assert sorted(p for p in tmp_path.rglob("*") if p != claim) == before  # no file was created anywhere else
    assert not Path("/tmp/harness-escape-test").exists()


# ---- zoo.yaml and zoo.lock ------------------------------------------------------------------------------


def test_a_deeply_nested_zoo_yaml_is_exit_2_in_one_line(tmp_path):
    deep = tmp_path / "zoo.yaml"
    deep.write_text("models: " + "[" * 50_000 + "]" * 50_000 + "\n")
    out = harness("list", "--zoo", str(deep))
    assert out.returncode == ExitCode.USAGE, out.stderr[-500:]
    assert "not valid YAML: nested too deeply" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 2  # the error and its fix


@pytest.mark.parametrize(
    "record, expected",
    [
        ({"sha256": SHA.upper(), "size": 5}, "sha256: 'ABAB"),
        ({"sha256": SHA, "size": -5}, "size: expected greater than 0"),
        ({"sha256": SHA, "size": "5"}, "size: expected an integer"),
        ({"sha256": SHA, "size": True}, "size: expected an integer"),
        ("not a mapping", "expected a mapping"),
        ({"sha256": SHA}, "size: required field is missing"),
        ({"sha256": SHA, "size": 5, "etag": "x"}, "etag: unknown field"),
    ],
)
def test_a_bad_zoo_lock_record_is_a_usage_error_naming_its_field(tmp_path, record, expected):
    url = "http://127.0.0.1:1/w.pdparams"
    lock = tmp_path / "zoo.lock"
    lock.write_text(json.dumps({"format": 1, "artifacts": {url: record}}))
    with pytest.raises(ManifestError) as err:
        LockFile(lock).get(url)
    assert f"artifacts['{url}']" in str(err.value) and expected in str(err.value)
    assert err.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"format": 2, "artifacts": {}}', "format: expected 1"),
        ("[" * 100_000, "not a zoo.lock of format 1"),
        ("{", "not a zoo.lock"),
    ],
)
def test_a_malformed_zoo_lock_is_a_usage_error(tmp_path, text, expected):
    (tmp_path / "zoo.lock").write_text(text)
    with pytest.raises(ManifestError, match=expected):
        LockFile(tmp_path / "zoo.lock").get("x")


def _zoo(tmp_path: Path, weights: str, ds: Dataset | None = None) -> tuple[Path, str]:
    """A one-model zoo.yaml for `harness fetch`, and `--ppdet-root` of a minimal tree (no source download)."""
    raw = copy.deepcopy(RAW)
    raw["models"] = raw["models"][:1]
    raw["models"][0]["weights"] = weights
    if ds is not None:
        raw["dataset"] = ds.model_dump(exclude_none=True)
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(yaml.safe_dump(raw))
    tree = tmp_path / "tree"
    (tree / "ppdet").mkdir(parents=True, exist_ok=True)
    (tree / "ppdet" / "__init__.py").touch()
    (tree / "configs").mkdir(exist_ok=True)
    return zoo, str(tree)


def test_a_bad_zoo_lock_never_evicts_a_good_entry(server, cache, tmp_path):
    url = server.add("/w.pdparams", b"w" * 1000)
    lock = LockFile(tmp_path / "zoo.lock")
    got = fetch_artifact(Artifact(url=url), lock, policy=FAST)
    data = json.loads(lock.path.read_text())
    data["artifacts"][url]["sha256"] = got.sha256.upper()
    lock.path.write_text(json.dumps(data))
    zoo, tree = _zoo(tmp_path, url)
    out = harness(
        "fetch", RAW["models"][0]["name"], "--zoo", str(zoo), "--ppdet-root", tree, env={"HARNESS_CACHE": str(cache)}
    )
    assert out.returncode == ExitCode.USAGE, out.stderr
    assert f"artifacts['{url}'].sha256: '{got.sha256.upper()}' does not match" in out.stderr
    assert entry_path(url, cache).read_bytes() == b"w" * 1000  # the verified entry is still there


# ---- a repair hint repairs -----------------------------------------------------------------------------


@pytest.fixture
def coco_served(server, tmp_path):
    images, annotations = coco_zips(tmp_path, 3)
    return Dataset(
        name="coco", images=server.add("/val2017.zip", images), annotations=server.add("/ann.zip", annotations)
    )


def test_a_damaged_annotation_file_is_repaired_by_following_the_hint(coco_served, cache, tmp_path):
    lock = LockFile(tmp_path / "zoo.lock")
    ann = dataset.prepare(coco_served, lock, policy=FAST).annotations
    st = ann.stat()
    ann.write_bytes(b"{" + b" " * (st.st_size - 1))  # damaged in place; size and mtime as they were
    os.utime(ann, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(DatasetError) as err:
        dataset.prepare(coco_served, lock, policy=FAST)
    hint = err.value.hint
    assert hint == f"delete {ann} and run `harness fetch --dataset` (a missing or changed file is extracted again)"
    ann.unlink()  # what the hint says, then what `harness fetch --dataset` does
    assert dataset.prepare(coco_served, lock, policy=FAST).num_images == 3


def test_an_edited_or_deleted_extracted_file_is_extracted_again(coco_served, cache, tmp_path):
    lock = LockFile(tmp_path / "zoo.lock")
    data = dataset.prepare(coco_served, lock, policy=FAST)
    (data.images / "1.jpg").unlink()
    data.annotations.write_text("{}")
    again = dataset.prepare(coco_served, lock, policy=FAST)
    assert again.num_images == 3 and (again.images / "1.jpg").read_bytes() == b"jpeg"


def test_a_damaged_subset_file_is_made_again(coco_served, cache, tmp_path):
    lock = LockFile(tmp_path / "zoo.lock")
    sub = dataset.prepare(coco_served, lock, subset=2, policy=FAST).annotations
    sub.write_text("not json")
    assert dataset.prepare(coco_served, lock, subset=2, policy=FAST).num_images == 2


def test_an_archive_that_will_not_extract_is_evicted_and_its_learned_pin_forgotten(
    coco_served, server, cache, tmp_path
):
    """The first-use pin of a broken archive must not wedge the cache: it goes with the entry, and once the
    server has the right file the next fetch works without editing zoo.lock."""
    good = server.files["/ann.zip"]
    server.files["/ann.zip"] = b"PK\x03\x04 this is not a zip archive"
    zoo, tree = _zoo(tmp_path, server.add("/w.pdparams", b"w"), coco_served)
    argv = ["fetch", RAW["models"][0]["name"], "--zoo", str(zoo), "--dataset", "--ppdet-root", tree]
    env = {"HARNESS_CACHE": str(cache), "HARNESS_RETRIES": "1"}
    out = harness(*argv, env=env)
    assert out.returncode == ExitCode.ERROR, out.stderr
    assert (
        "cannot extract" in out.stderr and "the cache entry was removed and its zoo.lock record forgotten" in out.stderr
    )
    assert LockFile.beside(zoo).get(coco_served.annotations.url) is None
    assert not entry_path(coco_served.annotations.url, cache).exists()
    server.files["/ann.zip"] = good
    again = harness(*argv, env=env)
    assert again.returncode == 0, again.stderr


# ---- a decompression bomb and a small disk, in a real tmpfs -------------------------------------------------


def _in_tmpfs(tmp_path: Path, size: str, ds: Dataset, weights: str):
    """`harness fetch --dataset` with the cache on a tmpfs of `size`; returns (rc, stderr, free KiB, files)."""
    cache = tmp_path / "cache"
    wrap = namespaced(f"size={size}", cache)
    zoo, tree = _zoo(tmp_path, weights, ds)
    cmd = harness_argv(
        "fetch",
        RAW["models"][0]["name"],
        "--zoo",
        str(zoo),
        "--dataset",
        "--ppdet-root",
        tree,
    )
    shell = (
        " ".join(f"'{c}'" for c in cmd) + f"; echo rc=$?; df -k --output=avail {cache} | tail -1; "
        f"find {cache} -type f | sort"
    )
    out = subprocess.run(
        [*wrap, "sh", "-c", shell],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HARNESS_CACHE": str(cache), "HARNESS_RETRIES": "1"},
    )
    lines = out.stdout.splitlines()
    rc_at = next(i for i, line in enumerate(lines) if line.startswith("rc="))
    return int(lines[rc_at][3:]), out.stderr, int(lines[rc_at + 1]), lines[rc_at + 2 :]


def test_a_zip_bomb_never_fills_the_cache_and_its_pin_is_forgotten(server, tmp_path):
    """The issue's case: a ~1 MB annotations zip that expands to 1 GiB, on a 64 MiB cache filesystem."""
    from test_archive import _zeros_zip

    bomb = _zeros_zip(tmp_path / "ann.zip", 1 << 30)
    assert bomb.stat().st_size < 2 << 20
    ds = Dataset(
        name="coco", images=server.add("/val2017.zip", _images_zip(tmp_path)), annotations=server.add("/ann.zip", bomb)
    )
    rc, err, free_kib, files = _in_tmpfs(tmp_path, "64m", ds, server.add("/w.pdparams", b"w"))
    assert rc == ExitCode.ERROR, err
    assert "refusing to extract" in err and "(more than 200:1)" in err
    assert "the cache entry was removed and its zoo.lock record forgotten" in err
    assert free_kib > 50_000 and not [f for f in files if f.endswith(("instances_val2017.json", "ann.zip"))], files
    assert ds.annotations.url not in json.loads((tmp_path / "zoo.lock").read_text())["artifacts"]


def test_too_little_disk_for_an_honest_archive_keeps_its_entry_and_pin(server, tmp_path):
    """Not a bomb: 3 MB of incompressible annotations on a 4 MiB filesystem. The machine is at fault, so the
    verified download and its zoo.lock record stay (a later run with more room extracts it)."""
    with zipfile.ZipFile(tmp_path / "ann.zip", "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("annotations/instances_val2017.json", os.urandom(3_000_000))
    ds = Dataset(
        name="coco",
        images=server.add("/val2017.zip", _images_zip(tmp_path)),
        annotations=server.add("/ann.zip", tmp_path / "ann.zip"),
    )
    rc, err, _, files = _in_tmpfs(tmp_path, "4m", ds, server.add("/w.pdparams", b"w"))
    assert rc == ExitCode.ERROR and "extracting needs 3000000 bytes" in err and "free disk space" in err
    assert "removed" not in err and [f for f in files if f.endswith("ann.zip")]
    assert ds.annotations.url in json.loads((tmp_path / "zoo.lock").read_text())["artifacts"]


def _images_zip(tmp_path: Path) -> Path:
    with zipfile.ZipFile(tmp_path / "val2017.zip", "w") as zf:
        zf.writestr("val2017/1.jpg", b"jpeg")
    return tmp_path / "val2017.zip"


def test_rehearse_refuses_a_directory_it_did_not_make(tmp_path):
    (tmp_path / "mine" / "cache").mkdir(parents=True)
    (tmp_path / "mine" / "cache" / "precious.txt").write_text("keep me")
    out = harness("rehearse", "--dir", str(tmp_path / "mine"))
    assert out.returncode == ExitCode.USAGE and "not empty and not a rehearsal directory" in out.stderr
    assert (tmp_path / "mine" / "cache" / "precious.txt").read_text() == "keep me"
