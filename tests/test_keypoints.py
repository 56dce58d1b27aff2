"""COCO keypoints, the `kpt` row of harness/zoo/kinds.py, everywhere the harness handles predictions: the files
ppdet writes for them, `--parallel`'s merge in the order ppdet's keypoint datasets visit images, the zoo's metric
names, the model index, `harness list` and the plots. Scoring itself is in test_scoring.py (differential, both
scorers against pycocotools); ppdet's own eval on the same files in test_keypoint_eval.py."""

from __future__ import annotations

import json
import random
import re

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
    cut = slices.cut(ann, 3, root=tmp_path / "cache", layout="coco-keypoints")  # as a run of a keypoint set cuts it
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


def _night(model: str, run_id: str, finished: str, fps: float, **measured):
    from conftest import result

    return result(
        {
            "model": model,
            "run_id": run_id,
            "finished": finished,
            "documented": dict(measured),
            "metrics": {
                k: {"measured": v, "documented": v, "tolerance": 0.3, "delta": 0.0, "status": "pass"}
                for k, v in measured.items()
            },
            "timing": {"fps": fps, "backend": "dygraph"},
        }
    )


def test_plots_draw_each_models_documented_kinds_and_a_keypoint_models_ap_vs_fps(tmp_path):
    from harness.publish import plots, view
    from harness.records import history

    first = [
        _night("det", "r1", "2026-01-01T00:00:00+00:00", 20.0, box_ap=40.0),
        _night("pose", "r1", "2026-01-01T00:00:00+00:00", 30.0, kpt_ap=70.0),
    ]
    tonight = [
        _night("det", "r2", "2026-01-02T00:00:00+00:00", 20.0, box_ap=40.1),
        _night("pose", "r2", "2026-01-02T00:00:00+00:00", 30.0, kpt_ap=71.0),
    ]
    night = view.of(tonight, history.merge([], first))
    assert plots.ap_per_run(night, tmp_path / "ap.png") == {"det": ["box_ap"], "pose": ["kpt_ap"]}  # one panel each
    assert [plots.headline(m) for m in night.models] == [("box AP", 40.1), ("keypoint AP", 71.0)]
    assert plots.ap_vs_fps(night, tmp_path / "fps.png") == []  # nothing changed tonight: nothing named
    assert (tmp_path / "fps.png").stat().st_size > 1000


def test_list_shows_a_keypoint_column_only_where_a_model_documents_keypoints():
    from harness.commands.list import table

    row = {"name": "tinypose", "table": "t", "expected": {"kpt_ap": 52.3, "kpt_ar": 58.0}, "cached": False}
    text = table([{**row, **{k.headline: row["expected"].get(k.headline) for k in kinds.KINDS.values()}}])
    head = text.splitlines()[0]
    assert "keypoint AP" in head and "mask AP" not in head and "box AP" in head
    assert "| 52.3 " in text and "kpt_ar 58" in text


# ---- the coco-keypoints layout: what the worker tells ppdet, what prepare checks and keeps ----------------------


def _kpt_root(tmp_path, data: dict | None = None):
    root = tmp_path / "kpt"
    data = data if data is not None else keypoints.dataset(5, size=(64, 48))
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "person_keypoints_val2017.json").write_text(json.dumps(data))
    (root / "val2017").mkdir()
    for img in data["images"]:
        (root / "val2017" / img["file_name"]).write_bytes(b"x")  # prepare checks presence, not pixels
    return root, data


def _kpt_dataset(**more):
    from harness.zoo.manifest import Dataset

    return Dataset(
        name="coco-kpt",
        layout="coco-keypoints",
        images="http://unused.invalid/val2017.zip",
        annotations="http://unused.invalid/ann.zip",
        annotation_file="annotations/person_keypoints_val2017.json",
        classes=["person"],
        **more,
    )


def test_the_layout_points_the_keypoint_dataset_object_at_the_files(tmp_path):
    """img_prefix too: ppdet's keypoint datasets derived it from dataset_dir and image_dir when the config built
    them; a bbox_file (detected people) is given absolute, which ppdet's os.path.join keeps."""
    from harness.zoo.layouts import LAYOUTS

    root = tmp_path / "coco"
    row = LAYOUTS["coco-keypoints"]
    got = row.overrides(root, root / "val2017", root / "annotations" / "p.json", {})
    assert got == {
        "EvalDataset": {
            "dataset_dir": str(root),
            "image_dir": "val2017",
            "anno_path": "annotations/p.json",
            "img_prefix": str(root / "val2017"),
            "ann_file": str(root / "annotations" / "p.json"),  # the bottom-up datasets' own join (HigherHRNet)
        }
    }
    boxes = tmp_path / "elsewhere" / "person_boxes.json"
    with_boxes = row.overrides(root, root / "val2017", root / "annotations" / "p.json", {"bbox_file": boxes})
    assert with_boxes["EvalDataset"]["bbox_file"] == str(boxes)


def test_overrides_of_an_object_section_become_its_attributes_and_dicts_merge_as_ppdet_does():
    """ppdet's merge_config would replace the tagged dataset object by the dict (and `create` refuse it)."""
    from harness.model.model_build import merge_into_objects

    class Tagged:  # what `EvalDataset: !KeypointTopDownCocoDataset` loads as
        def __init__(self):
            self.dataset_dir, self.use_gt_bbox = "dataset/coco", True

    obj = Tagged()
    cfg = {"EvalDataset": obj, "EvalReader": {"batch_size": 16}, "TestDataset": {"name": "ImageFolder"}}
    rest = merge_into_objects(cfg, {"EvalDataset": {"dataset_dir": "/d"}, "EvalReader": {"batch_size": 1}, "x": 1})
    assert rest == {"EvalReader": {"batch_size": 1}, "x": 1}  # for merge_config
    assert cfg["EvalDataset"] is obj and obj.dataset_dir == "/d" and obj.use_gt_bbox is True


def test_a_keypoint_dataset_is_prepared_and_subset_with_its_people_in_the_files_order(tmp_path, cache):
    from harness.fetch import dataset

    root, data = _kpt_root(tmp_path)
    got = dataset.prepare(_kpt_dataset(), None, data_dir=root)
    assert (got.layout, got.num_images, got.name) == ("coco-keypoints", 5, "coco-kpt")
    sub = dataset.prepare(_kpt_dataset(), None, data_dir=root, subset=3, seed=1)
    kept = json.loads(sub.annotations.read_text())
    ids = {img["id"] for img in kept["images"]}
    assert len(ids) == 3 and [i["id"] for i in kept["images"]] == [i["id"] for i in data["images"] if i["id"] in ids]
    assert kept["annotations"] == [a for a in data["annotations"] if a["image_id"] in ids]  # every field kept
    assert kept["categories"] == data["categories"]


def test_a_keypoint_dataset_is_scored_and_sliced_as_the_coco_json_it_is(tmp_path, cache):
    """Its record keeps no layout files (the annotation file is the ground truth, as COCO's instances are), a
    record that names the layout loads it through the COCO scorer, and --parallel cuts it by image."""
    from harness.fetch import dataset
    from harness.model import slices
    from harness.score.scoring import Truth, score_files

    root, data = _kpt_root(tmp_path)
    got = dataset.prepare(_kpt_dataset(), None, data_dir=root)
    assert got.layout_fields() == {}
    person = next(a for a in data["annotations"] if a["num_keypoints"] and not a["iscrowd"])
    pred = tmp_path / "keypoints_results.json"
    pred.write_text(json.dumps([{**{k: person[k] for k in ("image_id", "keypoints")}, "category_id": 1, "score": 1}]))
    named = Truth(got.annotations, "coco-keypoints", got.images)
    assert score_files(named, {"keypoints_results": pred}) == score_files(got.annotations, {"keypoints_results": pred})
    cut = slices.cut(got.annotations, 2, layout="coco-keypoints")
    assert sorted(i for s in cut for i in s.image_ids) == sorted(img["id"] for img in data["images"])


def _broken(edit):
    data = keypoints.dataset(3, size=(64, 48))
    edit(data)
    return data


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda d: d["annotations"][1].update(keypoints=[1, 2, 2] * 16), "annotations[1] (id 2): keypoints must be 51"),
        (lambda d: d["annotations"][0].update(keypoints=None), "keypoints must be 51 numbers (x, y, v per keypoint)"),
        (lambda d: d["annotations"][2].update(num_keypoints=18), "annotations[2] (id 3): num_keypoints 18"),
        (lambda d: d["annotations"][0].pop("num_keypoints"), "num_keypoints None is not an integer from 0 to 17"),
        (lambda d: d["annotations"][1].update(bbox=[1, 2, 3]), "bbox [1, 2, 3] is not four numbers"),
        (lambda d: d["annotations"][1].pop("area"), "area None is not a number"),
        (lambda d: d["annotations"][1].update(iscrowd=2), "iscrowd 2 is not 0 or 1"),
        (lambda d: d["categories"][0].update(keypoints="nose"), "categories[0]: keypoints is not a list"),
        (lambda d: d["categories"][0].pop("keypoints"), "no category lists its keypoints: not a COCO keypoints file"),
    ],
)
def test_a_malformed_keypoint_record_is_named_with_exit_2(tmp_path, cache, edit, named):
    from harness.core.errors import DatasetError
    from harness.fetch import dataset

    root, _ = _kpt_root(tmp_path, _broken(edit))
    with pytest.raises(DatasetError, match=re.escape(named)) as exc:
        dataset.prepare(_kpt_dataset(), None, data_dir=root)
    assert exc.value.exit_code == 2 and "person_keypoints_val2017.json" in exc.value.hint


def test_parallel_cuts_coco_json_layouts_and_refuses_the_others(tmp_path):
    """Which layouts `--parallel` can cut is the layouts table's `coco_json`: COCO json (boxes, keypoints) yes, a VOC
    eval list not yet (exit 2 naming the layout)."""
    from harness.core.errors import UsageError
    from harness.zoo.layouts import LAYOUTS

    ann = tmp_path / "person_keypoints.json"
    ann.write_text(json.dumps(keypoints.dataset(4)))
    assert {n for n, row in LAYOUTS.items() if row.coco_json} == {"coco", "coco-keypoints"}
    assert len(slices.cut(ann, 2, root=tmp_path / "cache", layout="coco-keypoints")) == 2
    with pytest.raises(UsageError, match=r"\(voc layout\) cannot be cut into slices"):
        slices.cut(ann, 2, root=tmp_path / "cache", layout="voc")
