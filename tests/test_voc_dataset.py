"""A `voc` dataset (zoo/layouts.py's row): prepared and checked (fetch/dataset.py), cut by --subset, pointed at by
the worker's EvalDataset overrides, and scored from files with the config's map_type (score/scoring.py). The
VOC scorer itself is tests/test_vocmap.py's; a VOC model end to end is tests/test_voc_fidelity.py's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from synthetic_voc import synthetic_voc

from harness.core.errors import DatasetError, DatasetRecordError, HarnessError, UsageError
from harness.core.vocmap import score
from harness.fetch import dataset, vocdata
from harness.score.scoring import Truth, score_files
from harness.zoo import layouts
from harness.zoo.manifest import Dataset

VOC07 = {
    "name": "voc07",
    "layout": "voc",
    "images": "http://host.invalid/VOCtest.tar",
    "image_dir": ".",
    "annotation_file": "test.txt",
    "files": {"label_list": "label_list.txt"},
    "classes": 20,
}


def _voc(tmp_path: Path, n: int = 6, **kw):
    return synthetic_voc(tmp_path / "voc", n, **kw)


def test_a_voc_root_is_prepared_and_checked_file_by_file(tmp_path):
    voc = _voc(tmp_path, empty=(2,))
    data = dataset.prepare(Dataset.model_validate(VOC07), None, data_dir=voc.root, root=tmp_path / "cache")
    assert (data.layout, data.name, data.num_images, data.subset) == ("voc", "voc07", 6, None)
    assert data.annotations == voc.eval_list and data.images == voc.root
    assert data.files == {"label_list": voc.label_list}
    assert data.layout_fields() == {
        "layout": "voc",
        "images": str(voc.root),
        "files": {"label_list": str(voc.label_list)},
    }


def test_a_subset_is_a_seeded_choice_of_lines_in_list_order(tmp_path):
    voc = _voc(tmp_path)
    ds = Dataset.model_validate(VOC07)
    first = dataset.prepare(ds, None, data_dir=voc.root, subset=3, seed=7, root=tmp_path / "cache")
    again = dataset.prepare(ds, None, data_dir=voc.root, subset=3, seed=7, root=tmp_path / "cache")
    lines = voc.eval_list.read_text().splitlines()
    chosen = first.subset["image_ids"]
    assert first.annotations.read_text().splitlines() == [lines[i] for i in chosen] and chosen == sorted(chosen)
    assert first.num_images == 3 and first.annotations.parent != voc.root
    assert again.annotations.read_bytes() == first.annotations.read_bytes() and again.subset == first.subset
    seeds = [dataset.prepare(ds, None, data_dir=voc.root, subset=3, seed=s, root=tmp_path / "cache") for s in range(4)]
    assert len({tuple(d.subset["image_ids"]) for d in seeds}) > 1  # the seed chooses
    with pytest.raises(UsageError, match=r"--subset 7: must be between 1 and the 6 images of test\.txt"):
        dataset.prepare(ds, None, data_dir=voc.root, subset=7, root=tmp_path / "cache")


def test_what_ppdet_would_skip_or_trip_on_is_refused_by_name(tmp_path):
    voc = _voc(tmp_path)
    ds = Dataset.model_validate(VOC07)
    (voc.root / "JPEGImages" / f"{voc.names[1]}.jpg").unlink()  # ppdet would leave it out with a warning
    with pytest.raises(DatasetError, match=rf"1 files listed in test\.txt are missing .*{voc.names[1]}\.jpg"):
        dataset.prepare(ds, None, data_dir=voc.root, root=tmp_path / "cache")
    voc = _voc(tmp_path / "2")
    xml = voc.root / "Annotations" / f"{voc.names[0]}.xml"
    xml.write_text('<!DOCTYPE a [<!ENTITY x "x">]>' + xml.read_text())
    with pytest.raises(DatasetRecordError, match="declares a document type"):
        dataset.prepare(ds, None, data_dir=voc.root, root=tmp_path / "cache")
    voc = _voc(tmp_path / "3", classes=["cat", "dog"])
    with pytest.raises(DatasetError, match=r"lists 2 classes .*dataset voc07 has 20"):
        dataset.prepare(ds, None, data_dir=voc.root, root=tmp_path / "cache")
    (voc.root / "label_list.txt").unlink()
    with pytest.raises(DatasetError, match=r"its label_list .* is missing"):
        dataset.prepare(ds, None, data_dir=voc.root, root=tmp_path / "cache")


def test_a_voc_dataset_names_its_label_list_and_may_leave_annotations_out():
    assert Dataset.model_validate(VOC07).annotations is None
    with pytest.raises(ValueError, match="a voc dataset needs files: label_list"):
        Dataset.model_validate({**VOC07, "files": {}})


def test_the_worker_points_vocdataset_at_the_files(tmp_path):
    root = tmp_path / "voc"
    got = layouts.LAYOUTS["voc"].overrides(root, root, root / "test.txt", {"label_list": root / "label_list.txt"})
    assert got["EvalDataset"] == {
        "dataset_dir": str(root),
        "image_dir": ".",
        "anno_path": "test.txt",
        "label_list": str(root / "label_list.txt"),  # absolute: ppdet's join keeps it
    }
    sub = tmp_path / "cache" / "subsets" / "test-n2.txt"  # a subset's list: the common root is higher up
    got = layouts.LAYOUTS["voc"].overrides(tmp_path, root, sub, {"label_list": root / "label_list.txt"})
    assert got["EvalDataset"]["image_dir"] == "voc" and got["EvalDataset"]["anno_path"] == "cache/subsets/test-n2.txt"


def test_voc_predictions_are_scored_from_files_with_the_configs_map_type(tmp_path):
    voc = _voc(tmp_path, 8, use=3, seed=2)
    gt = vocdata.ground_truth(voc.root, voc.eval_list, voc.label_list)
    rows = [
        {"image": k, "category_id": int(c), "bbox": [float(v) + 1.5 for v in b], "score": 0.3 + 0.05 * (i % 7)}
        for i, (k, im) in enumerate(gt.images.items())
        for b, c in zip(im.boxes.tolist(), im.labels.tolist(), strict=True)
    ]
    rows += [{"image": k, "category_id": 1, "bbox": [0, 0, 30, 30], "score": 0.6} for k in gt.images]
    (tmp_path / "voc.json").write_text(json.dumps(rows))
    truth = Truth(voc.eval_list, "voc", voc.root, {"label_list": voc.label_list})
    for map_type in ("11point", "integral"):
        stats = score_files(truth, {"voc": tmp_path / "voc.json"}, params={"voc": {"map_type": map_type}})
        assert stats == {"voc": score(gt, rows, map_type=map_type)}
    eleven = score_files(truth, {"voc": tmp_path / "voc.json"})["voc"]["AP"]  # no parameters: 11point, ppdet's default
    integral = score_files(truth, {"voc": tmp_path / "voc.json"}, params={"voc": {"map_type": "integral"}})
    assert 0 < eleven < 1 and eleven != integral["voc"]["AP"]
    with pytest.raises(HarnessError, match="without its images or label list"):
        score_files(Truth(voc.eval_list, "voc"), {"voc": tmp_path / "voc.json"})
