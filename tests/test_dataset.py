"""COCO val2017 over loopback HTTP: two zips in, a checked layout out; deterministic subsets."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from conftest import FAST

from harness import dataset
from harness.errors import DatasetError, UsageError
from harness.lockfile import LockFile
from harness.manifest import Dataset

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
