"""COCO keypoints, the `kpt` row of harness/zoo/kinds.py, everywhere the harness handles predictions: the files
ppdet writes for them, `--parallel`'s merge in the order ppdet's keypoint datasets visit images, the zoo's metric
names, the model index, `harness list` and the plots. Scoring itself is in test_scoring.py (differential, both
scorers against pycocotools); ppdet's own eval on the same files in test_keypoint_eval.py."""

from __future__ import annotations

import json
import random

import keypoints
import pytest

from harness.core.errors import HarnessError
from harness.model import slices
from harness.model.predictions import prediction_files
from harness.zoo import kinds

KPT = kinds.KINDS["kpt"]


def test_the_row_names_cocoevals_ten_keypoint_statistics():
    assert KPT.stats_key == "keypoints" and len(KPT.stats) == 10
    assert [KPT.metric(s) for s in KPT.stats] == [
        f"kpt_{s}" for s in ("ap", "ap50", "ap75", "apm", "apl", "ar", "ar50", "ar75", "arm", "arl")
    ]
    assert kinds.of_metric("kpt_apm") is KPT and kinds.of_metric("kpt_aps") is None  # no small range
    assert kinds.of_metric("kpt_ar100") is None  # keypoints have one maxDets (20): AR, not AR100
    assert kinds.by_file("keypoints_results") is KPT and kinds.by_file("keypoint") is KPT
    assert KPT.headline == "kpt_ap" and KPT.task == "Body 2D Keypoint"


def _writes(tmp_path, **files):
    preds = tmp_path / "predictions"
    preds.mkdir(exist_ok=True)
    for name, dets in files.items():
        (preds / f"{name}.json").write_text(json.dumps(dets))
    return preds


def test_the_keypoint_file_ppdet_wrote_serves_the_keypoint_metrics(tmp_path):
    preds = _writes(tmp_path, keypoints_results=[{"image_id": 1}])
    assert prediction_files(preds, ["kpt_ap", "kpt_ar"]) == {"keypoints_results": str(preds / "keypoints_results.json")}


def test_no_keypoints_written_is_an_empty_keypoint_file_not_an_error(tmp_path):
    preds = _writes(tmp_path)
    assert prediction_files(preds, ["kpt_ap"]) == {"keypoints_results": str(preds / "keypoints_results.json")}
    assert json.loads((preds / "keypoints_results.json").read_text()) == []


def test_boxes_without_keypoints_cannot_serve_a_documented_keypoint_metric(tmp_path):
    preds = _writes(tmp_path, bbox=[{"image_id": 1}])
    with pytest.raises(HarnessError, match=r"the documented kpt_ap cannot be measured.*no kpt predictions"):
        prediction_files(preds, ["box_ap", "kpt_ap"])


def test_both_keypoint_files_are_refused(tmp_path):
    preds = _writes(tmp_path, keypoints_results=[], keypoint=[])
    with pytest.raises(HarnessError, match=r"keypoint\.json and keypoints_results\.json: two files of kpt"):
        prediction_files(preds, ["kpt_ap"])


def _single_worker(data: dict, order: list[int], per_image) -> list[dict]:
    """What one worker writes: each image's predictions, the images in `order`."""
    return [d for img in order for d in per_image[img]]


def test_slices_merge_keypoints_in_the_files_order_and_boxes_in_id_order(tmp_path):
    """ppdet's keypoint datasets visit the images as the annotation file lists them (pycocotools' getImgIds()),
    COCODataSet in ascending id order: a merge of 3 slices gives each kind in its single worker's order."""
    data = keypoints.dataset(7, first_id=10)
    rng = random.Random(3)
    rng.shuffle(data["images"])  # neither ascending nor descending
    ann = tmp_path / "person_keypoints.json"
    ann.write_text(json.dumps(data))
    cut = slices.cut(ann, 3, root=tmp_path / "cache")
    per_image = {
        img["id"]: [{"image_id": img["id"], "score": rng.random(), "n": n} for n in range(rng.randint(1, 3))]
        for img in data["images"]
    }
    in_file = [img["id"] for img in data["images"]]
    written = []
    for i, s in enumerate(cut):  # each slice's worker: its images, in its own annotation file's order
        own = [img["id"] for img in json.loads(s.annotations.read_text())["images"]]
        assert own == [x for x in in_file if x in set(s.image_ids)]
        files = {}
        for kind in ("keypoints_results", "bbox"):
            order = own if kind == "keypoints_results" else sorted(own)
            path = tmp_path / f"s{i}-{kind}.json"
            path.write_text(json.dumps(_single_worker(data, order, per_image)))
            files[kind] = str(path)
        written.append(files)
    merged = slices.merge(cut, written, tmp_path / "merged")
    got = {k: json.loads((tmp_path / "merged" / f"{k}.json").read_text()) for k in merged}
    assert got["keypoints_results"] == _single_worker(data, in_file, per_image)
    assert got["bbox"] == _single_worker(data, sorted(in_file), per_image)
    assert in_file != sorted(in_file)  # the two orders differ: the test tells them apart


def test_the_model_index_lists_keypoint_metrics_as_their_task(tmp_path):
    from harness.publish import modelindex

    assert modelindex._label("kpt_arm") == "kpt ARm" and modelindex._label("kpt_ap50") == "kpt AP50"
    assert modelindex._label("box_aps") == "box APs" and modelindex._label("mask_ar100") == "mask AR100"


def _entry(model: str, run_id: str, **measured):
    from harness.records.results import HistoryEntry

    return HistoryEntry(
        model=model,
        run_id=run_id,
        status="pass",
        fps=2.0,
        conditions={},
        metrics={k: {"measured": v, "documented": v} for k, v in measured.items()},
    )


def test_plots_draw_a_panel_per_measured_kind_and_a_keypoint_models_ap_vs_fps(tmp_path):
    from harness.publish import plots

    history = [_entry("det", "r1", box_ap=40.0), _entry("pose", "r1", kpt_ap=70.0), _entry("pose", "r2", kpt_ap=71.0)]
    drawn = plots.ap_per_run(history, tmp_path / "ap.png")
    assert drawn == {"box_ap": ["det"], "kpt_ap": ["pose"]}  # no empty mask panel
    assert plots.ap_vs_fps(history, tmp_path / "fps.png") == ["det", "pose (keypoint AP)"]
    assert plots.ap_per_run(history[:1], tmp_path / "ap.png") == {"box_ap": ["det"]}


def test_list_shows_a_keypoint_column_only_where_a_model_documents_keypoints():
    from harness.commands.list import table

    row = {"name": "tinypose", "table": "t", "expected": {"kpt_ap": 52.3, "kpt_ar": 58.0}, "cached": False}
    text = table([{**row, **{k.headline: row["expected"].get(k.headline) for k in kinds.KINDS.values()}}])
    head = text.splitlines()[0]
    assert "keypoint AP" in head and "mask AP" not in head and "box AP" in head
    assert "| 52.3 " in text and "kpt_ar 58" in text
