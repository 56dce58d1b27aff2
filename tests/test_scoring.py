"""Scoring outside ppdet: ground truth scores 1.000, and the stats equal pycocotools' run directly."""

from __future__ import annotations

import contextlib
import io
import json
import random
import subprocess
import sys

import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from harness.score.scoring import SCORERS, STATS, metrics, score_files, scorer
from harness.zoo.kinds import KEYPOINT_STATS

pytestmark = pytest.mark.numerics  # numpy / pycocotools differ by stack: run on every stack

both = pytest.mark.parametrize("name", SCORERS)


def _gt(tmp_path):
    rng = random.Random(0)
    images, anns = [], []
    for i in range(6):
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "width": 400, "height": 300})
        if i == 5:
            continue  # an image without ground truth
        for _ in range(3):
            w, h = rng.choice([(20, 15), (60, 50), (150, 120)])  # small, medium, large
            x, y = rng.uniform(0, 400 - w), rng.uniform(0, 300 - h)
            poly = [x, y, x + w, y, x + w, y + h, x + w / 2, y + h * 1.0, x, y + h]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": rng.choice([1, 2, 3]),
                    "bbox": [x, y, w, h],
                    "area": w * h * 0.999,
                    "iscrowd": 0,
                    "segmentation": [poly],
                }
            )
    data = {
        "info": {},
        "images": images,
        "annotations": anns,
        "categories": [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path, data


def _rle(ann, image):
    rles = mask_utils.frPyObjects(ann["segmentation"], image["height"], image["width"])
    rle = mask_utils.merge(rles)
    rle["counts"] = rle["counts"].decode()  # as ppdet writes mask.json
    return rle


def _write(tmp_path, name, preds):
    path = tmp_path / name
    path.write_text(json.dumps(preds))
    return path


@both
def test_ground_truth_as_predictions_scores_one(tmp_path, name):
    ann_path, data = _gt(tmp_path)
    images = {img["id"]: img for img in data["images"]}
    bbox = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in data["annotations"]
    ]
    segm = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "score": 1.0,
            "segmentation": _rle(a, images[a["image_id"]]),
        }
        for a in data["annotations"]
    ]
    stats = score_files(
        ann_path,
        {"bbox": _write(tmp_path, "bbox.json", bbox), "mask": _write(tmp_path, "mask.json", segm)},
        scorer(name),
    )
    assert stats["bbox"]["AP"] == pytest.approx(1.0) and stats["segm"]["AP"] == pytest.approx(1.0)
    named = metrics(stats)
    assert named["box_ap"] == named["mask_ap"] == 100.0 and named["box_ap50"] == 100.0
    assert len(named) == 24 and named["mask_ar100"] == pytest.approx(stats["segm"]["AR100"] * 100)


def _noisy(tmp_path):
    """Predictions near the ground truth (boxes jittered, some classes wrong) plus one false positive."""
    ann_path, data = _gt(tmp_path)
    rng = random.Random(1)
    images = {img["id"]: img for img in data["images"]}
    bbox, segm = [], []
    for a in data["annotations"] + [
        {"image_id": 6, "category_id": 1, "bbox": [5, 5, 50, 40], "segmentation": [[5, 5, 55, 5, 55, 45, 5, 45]]}
    ]:
        x, y, w, h = a["bbox"]
        jitter = [x + rng.uniform(-5, 5), y + rng.uniform(-5, 5), w * rng.uniform(0.8, 1.2), h * rng.uniform(0.8, 1.2)]
        score = rng.random()
        cat = a["category_id"] if rng.random() > 0.2 else 3
        bbox.append({"image_id": a["image_id"], "category_id": cat, "bbox": jitter, "score": score})
        segm.append(
            {
                "image_id": a["image_id"],
                "category_id": cat,
                "score": score,
                "segmentation": _rle(a, images[a["image_id"]]),
            }
        )
    return ann_path, {"bbox": _write(tmp_path, "bbox.json", bbox), "mask": _write(tmp_path, "mask.json", segm)}


@both
def test_stats_equal_pycocotools_run_directly(tmp_path, name):
    ann_path, files = _noisy(tmp_path)
    ours = score_files(ann_path, files, scorer(name))
    for kind, iou in (("bbox", "bbox"), ("mask", "segm")):
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(str(ann_path))
            ev = COCOeval(gt, gt.loadRes(str(files[kind])), iou)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        assert [ours[iou][s] for s in STATS] == pytest.approx(list(ev.stats), abs=1e-12)
        assert 0 < ours[iou]["AP"] < 1


@both
def test_no_detections_is_ap_zero_not_a_crash(tmp_path, name):
    ann_path, _ = _gt(tmp_path)
    empty = _write(tmp_path, "bbox.json", [])
    stats = score_files(ann_path, {"bbox": empty, "mask": empty}, scorer(name))
    for iou in ("bbox", "segm"):
        assert stats[iou]["AP"] == 0.0 and stats[iou]["AR100"] == 0.0
    named = metrics(stats)
    assert named["box_ap"] == named["mask_ap"] == 0.0 and set(named) >= {"box_ap75", "mask_apl", "box_ar1"}


@both
def test_annotations_without_info_key_still_score(tmp_path, name):
    ann_path, data = _gt(tmp_path)
    del data["info"]
    ann_path.write_text(json.dumps(data))
    bbox = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in data["annotations"]
    ]
    stats = score_files(ann_path, {"bbox": _write(tmp_path, "b.json", bbox)}, scorer(name))
    assert stats["bbox"]["AP"] == pytest.approx(1.0)


@both
def test_each_scorer_is_what_it_says(name):
    assert scorer(name).name == name


def test_without_faster_coco_eval_the_default_is_pycocotools():
    """The only mock here: an import that fails (uninstalling a package inside the test run is not an option)."""
    code = (
        "import sys; sys.modules['faster_coco_eval'] = None; from harness.score.scoring import scorer; "
        "print(scorer().describe()['name'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "pycocotools" and "not usable here" in out.stderr


@both
def test_bbox_and_segm_scored_at_once_equal_one_after_the_other(tmp_path, name):
    """bbox and segm in two processes forked after the ground truth's parse (each with its own copy: pycocotools
    keeps per-evaluation state in the ground truth's dicts, and two threads sharing one object changed
    APs/APm/APl) must give the stats of one after the other, and of each kind alone."""
    ann_path, files = _noisy(tmp_path)
    serial = score_files(ann_path, files, scorer(name), concurrent=False)
    for _ in range(3):
        assert score_files(ann_path, files, scorer(name), concurrent=True) == serial
    alone = {
        **score_files(ann_path, {"bbox": files["bbox"]}, scorer(name)),
        **score_files(ann_path, {"mask": files["mask"]}, scorer(name)),
    }
    assert alone == serial


# Keypoints (kinds.py's `kpt` row): COCOeval(iouType="keypoints"), its 10 statistics, on synthetic people.


def _keypoints(tmp_path, n: int = 6):
    import keypoints

    data = keypoints.dataset(n)
    return _write(tmp_path, "person_keypoints.json", data), data


def test_both_scorers_take_cocos_keypoint_sigmas():
    """The OKS of either scorer uses COCO's 17 per-keypoint sigmas (pycocotools' defaults are the reference)."""
    from faster_coco_eval.core.cocoeval import Params
    from pycocotools.cocoeval import Params as Reference

    assert list(Params(iouType="keypoints").kpt_oks_sigmas) == list(Reference("keypoints").kpt_oks_sigmas)
    assert len(Reference("keypoints").kpt_oks_sigmas) == 17


@both
def test_keypoint_ground_truth_as_predictions_scores_one(tmp_path, name):
    ann_path, data = _keypoints(tmp_path)
    gt = [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
        for a in data["annotations"]
        if a["num_keypoints"] and not a["iscrowd"]
    ]
    stats = score_files(ann_path, {"keypoints_results": _write(tmp_path, "k.json", gt)}, scorer(name))
    assert list(stats) == ["keypoints"]
    assert stats["keypoints"] == dict.fromkeys(KEYPOINT_STATS, 1.0)  # medium and large people: none is -1


@both
def test_keypoint_stats_equal_pycocotools_run_directly(tmp_path, name):
    """Both scorers' 10 keypoint stats, from either file ppdet writes them to, are pycocotools' own (its COCOeval
    on the same files, as ppdet's KeyPointTopDownCOCOEval runs it), and the metrics are named after them."""
    import keypoints

    ann_path, data = _keypoints(tmp_path)
    preds = _write(tmp_path, "keypoints_results.json", keypoints.predictions(data))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_path))
        ev = COCOeval(gt, gt.loadRes(str(preds)), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert len(ev.stats) == 10 and 0.1 < ev.stats[0] < 0.9 and min(ev.stats) >= 0  # neither trivial nor undefined
    from harness.score.scoring import Truth

    for file in ("keypoints_results", "keypoint"):  # top-down and bottom-up (HigherHRNet) models' file
        ours = score_files(ann_path, {file: preds}, scorer(name))["keypoints"]
        assert list(ours) == list(KEYPOINT_STATS)
        assert list(ours.values()) == pytest.approx(list(ev.stats), abs=1e-12)
        # as a run scores it: the ground truth of a coco-keypoints dataset (a record's Truth), not a bare path
        assert score_files(Truth(ann_path, "coco-keypoints"), {file: preds}, scorer(name))["keypoints"] == ours
    named = metrics({"keypoints": ours})
    assert list(named) == [f"kpt_{s}" for s in ("ap", "ap50", "ap75", "apm", "apl", "ar", "ar50", "ar75", "arm", "arl")]
    assert named["kpt_ap"] == round(ev.stats[0] * 100, 4)


@both
def test_no_keypoint_predictions_is_ap_zero(tmp_path, name):
    ann_path, _ = _keypoints(tmp_path)
    stats = score_files(ann_path, {"keypoints_results": _write(tmp_path, "k.json", [])}, scorer(name))
    assert stats["keypoints"]["AP"] == 0 and stats["keypoints"]["AR"] == 0


@both
def test_boxes_and_keypoints_scored_at_once_equal_each_alone(tmp_path, name):
    """A model with boxes and keypoints (PETR-like): both kinds from one ground truth, forked or one after the
    other, are each kind's stats alone."""
    import keypoints

    ann_path, data = _keypoints(tmp_path)
    kpts = keypoints.predictions(data)
    boxes = [{**{k: p[k] for k in ("image_id", "category_id", "score")}, "bbox": _box(p["keypoints"])} for p in kpts]
    files = {"bbox": _write(tmp_path, "bbox.json", boxes), "keypoints_results": _write(tmp_path, "k.json", kpts)}
    serial = score_files(ann_path, files, scorer(name), concurrent=False)
    assert score_files(ann_path, files, scorer(name), concurrent=True) == serial
    assert serial == {
        **score_files(ann_path, {"bbox": files["bbox"]}, scorer(name)),
        **score_files(ann_path, {"keypoints_results": files["keypoints_results"]}, scorer(name)),
    }
    assert len(serial["bbox"]) == 12 and len(serial["keypoints"]) == 10


def _box(k: list[float]) -> list[float]:
    xs, ys = k[0::3], k[1::3]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
