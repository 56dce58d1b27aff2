"""COCO scoring from saved predictions, outside ppdet.

Why outside: scoring from files makes a re-score possible without running a model, and lets a faster
scorer be swapped in without touching model code. pycocotools is the reference implementation; its
chatter goes to a buffer, not the user's terminal.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
IOU_TYPES = {"bbox": "bbox", "mask": "segm"}  # ppdet's file name -> COCO iouType


def load_gt(annotations: Path):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(annotations))
    gt.dataset.setdefault("info", {})  # loadRes copies it and raises KeyError without it
    return gt


def _results(gt, predictions: list[dict]):
    from pycocotools.coco import COCO

    if predictions:
        with contextlib.redirect_stdout(io.StringIO()):
            return gt.loadRes(predictions)
    # loadRes cannot take an empty list; no detections is a valid outcome and scores AP 0.
    empty = COCO()
    empty.dataset = {"info": {}, "images": gt.dataset["images"], "categories": gt.dataset["categories"],
                     "annotations": []}
    with contextlib.redirect_stdout(io.StringIO()):
        empty.createIndex()
    return empty


def score(gt, predictions: list[dict], iou_type: str) -> dict[str, float]:
    """The 12 COCO stats (fractions, -1 where undefined) of `predictions` against `gt`."""
    from pycocotools.cocoeval import COCOeval

    dt = _results(gt, predictions)
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return dict(zip(STATS, (float(s) for s in ev.stats), strict=True))


def score_files(annotations: Path, files: dict[str, str | Path]) -> dict[str, dict[str, float]]:
    """{'bbox': stats, 'segm': stats} from ppdet's bbox.json / mask.json (whichever are given)."""
    gt = load_gt(annotations)
    return {IOU_TYPES[kind]: score(gt, json.loads(Path(path).read_text()), IOU_TYPES[kind])
            for kind, path in files.items()}


def metrics(stats: dict[str, dict[str, float]]) -> dict[str, float]:
    """The zoo's metrics in AP points: box_ap = bbox AP × 100, mask_ap = segm AP × 100."""
    out = {}
    if "bbox" in stats:
        out["box_ap"] = round(stats["bbox"]["AP"] * 100, 4)
    if "segm" in stats:
        out["mask_ap"] = round(stats["segm"]["AP"] * 100, 4)
    return out


def restrict(gt, image_ids: list[int]):
    """The ground truth of `image_ids` only, as its own COCO object."""
    from pycocotools.coco import COCO

    keep = set(image_ids)
    sub = COCO()
    sub.dataset = {"info": gt.dataset.get("info", {}), "categories": gt.dataset["categories"],
                   "images": [i for i in gt.dataset["images"] if i["id"] in keep],
                   "annotations": [a for a in gt.dataset.get("annotations", []) if a["image_id"] in keep]}
    with contextlib.redirect_stdout(io.StringIO()):
        sub.createIndex()
    return sub


def match_rate(reference: list[dict], candidate: list[dict], *, iou: float = 0.9, min_score: float = 0.05) -> float:
    """Share of the reference's boxes (score ≥ min_score) that the candidate reproduces: same image, same
    category, IoU ≥ `iou`. AP alone cannot show a difference when both are ~0 (random weights)."""
    from pycocotools import mask as mask_utils

    by_key: dict[tuple, list] = {}
    for d in candidate:
        by_key.setdefault((d["image_id"], d["category_id"]), []).append(d["bbox"])
    ref = [d for d in reference if d["score"] >= min_score]
    if not ref:
        return 1.0
    matched = 0
    for d in ref:
        boxes = by_key.get((d["image_id"], d["category_id"]))
        if boxes and mask_utils.iou([d["bbox"]], boxes, [0] * len(boxes)).max() >= iou:
            matched += 1
    return round(matched / len(ref), 6)


def fidelity(annotations: Path, image_ids: list[int], predictions: dict[str, dict[str, list]]) -> dict:
    """AP of every backend's predictions on the same images, against the dygraph model's (the eval's)."""
    gt = restrict(load_gt(annotations), image_ids)

    def aps(p: dict[str, list]) -> dict[str, float]:
        out = {"box_ap": round(score(gt, p["bbox"], "bbox")["AP"] * 100, 4)}
        if p.get("mask"):
            out["mask_ap"] = round(score(gt, p["mask"], "segm")["AP"] * 100, 4)
        return out

    ref = aps(predictions["dygraph"])
    out: dict = {"images": len(image_ids), "reference": "dygraph", "dygraph": ref}
    for name, p in predictions.items():
        if name == "dygraph":
            continue
        mine = aps(p)
        out[name] = {**{m: {"ap": mine.get(m), "delta": None if mine.get(m) is None else round(mine[m] - v, 4)}
                        for m, v in ref.items()},
                     "box_match_rate": match_rate(predictions["dygraph"]["bbox"], p["bbox"])}
    return out
