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
