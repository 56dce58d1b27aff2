"""A `voc` dataset (zoo/layouts.py's row): prepared and checked (fetch/dataset.py), cut by --subset, pointed at by
the worker's EvalDataset overrides, its predictions tied to their images (model/vocpreds.py), and scored from
files with the config's map_type (score/scoring.py). The
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


class _Metric:
    """What vocpreds.Tie needs of ppdet's VOCMetric: its update (appending each batch, as VOCMetric does) and
    its map_type; `accumulate` writes bbox.json as VOCMetric does with save_prediction_only."""

    map_type = "integral"

    def __init__(self) -> None:
        self.results: dict[str, list] = {"bbox": [], "score": [], "label": []}

    def update(self, inputs, outputs):
        bbox = outputs["bbox"]
        self.results["bbox"].append(bbox[:, 2:].tolist())
        self.results["score"].append(bbox[:, 1].tolist())
        self.results["label"].append(bbox[:, 0].tolist())

    def accumulate(self, out: Path) -> None:
        (out / "bbox.json").write_text(json.dumps(self.results))


def _dataset(root: Path, ids: list[int]):
    from types import SimpleNamespace

    import numpy as np

    recs = [{"im_id": np.array([i]), "im_file": str(root / "JPEGImages" / f"{i}.jpg")} for i in ids]
    return SimpleNamespace(dataset_dir=str(root), image_dir="", roidbs=recs)


def test_the_worker_ties_each_box_to_the_image_ppdet_gave_the_metric(tmp_path):
    """Two batches, the first of two images (3 boxes and 1), the second of one image with no box: every box
    goes to the image whose slice of its batch holds it, in ppdet's order; a count that does not add up stops."""
    import numpy as np

    from harness.model import vocpreds

    metric = _Metric()
    tie = vocpreds.Tie(metric, _dataset(tmp_path, [5, 9, 7]))
    rows = np.array([[0, 0.9, 1, 1, 5, 5], [1, 0.8, 2, 2, 6, 6], [0, 0.7, 3, 3, 7, 7], [2, 0.6, 4, 4, 8, 8]])
    metric.update({"im_id": np.array([[9], [5]])}, {"bbox": rows, "bbox_num": np.array([3, 1])})
    metric.update({"im_id": np.array([[7]])}, {"bbox": np.zeros((0, 6)), "bbox_num": np.array([0])})
    metric.accumulate(tmp_path)
    written = tie.write(tmp_path)
    got = json.loads(written.read_text())
    assert [(r["image"], r["image_id"], r["category_id"], r["score"]) for r in got] == [
        ("JPEGImages/9.jpg", 9, 0, 0.9),
        ("JPEGImages/9.jpg", 9, 1, 0.8),
        ("JPEGImages/9.jpg", 9, 0, 0.7),
        ("JPEGImages/5.jpg", 5, 2, 0.6),
    ]
    assert got[3]["bbox"] == [4, 4, 8, 8] and tie.map_type == "integral"
    assert not (tmp_path / "bbox.json").exists() and (tmp_path / "voc.ppdet.json").is_file()  # kept, renamed

    metric = _Metric()
    tie = vocpreds.Tie(metric, _dataset(tmp_path, [5, 9]))
    metric.update({"im_id": np.array([[9], [5]])}, {"bbox": rows, "bbox_num": np.array([2, 1])})
    metric.accumulate(tmp_path)
    with pytest.raises(HarnessError, match="batch 1 has 4 boxes, its 2 images 3 by the model's counts"):
        tie.write(tmp_path)
    with pytest.raises(HarnessError, match="have the same id 5"):
        vocpreds.Tie(_Metric(), _dataset(tmp_path, [5, 5]))
