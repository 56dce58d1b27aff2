"""Pascal VOC mAP at IoU 0.5, computed by the harness itself (numpy only: no paddle, no ppdet).

The number a PaddleDetection README documents for a VOC model is what ppdet's `VOCMetric` prints: its
`DetectionMAP` (ppdet/metrics/map_utils.py) with the config's `map_type` (`11point` for VOC2007's test set,
`integral` for some custom sets), IoU above 0.5, pixel boxes (`+1` in widths and heights, ppdet's
`is_bbox_normalized: False`) and difficult objects ignored (`evaluate_difficult: False`, the only value
ppdet's Trainer uses). This module reproduces that computation step by step so that the harness's mAP equals
the one VOCMetric prints (tests/test_vocmap.py compares the two on many random cases, difficult boxes, empty
images and classes without ground truth included):

- detections are matched image by image in the order the model emitted them (not by score): each takes the
  ground-truth box of its class it overlaps most (the first such box on a tie), a true positive above 0.5
  unless that box was taken already (a false positive) or is difficult (ignored: neither);
- per class, the detections of every image, in eval order, are sorted by score, highest first, keeping
  the eval order among equal scores (Python's stable sort, as ppdet's `sorted(..., reverse=True)`);
- a class without ground truth is left out of the mean; a class with ground truth and no detection is 0;
- `11point` and `integral` are ppdet's own loops, literally, and the mean is summed in class id order, so
  the two agree to the last bit, not only to the printed two decimals.

Kept in core so that the kinds table (harness/zoo/kinds.py) can name it as the `voc` kind's scorer; the
ground truth it scores against is read by harness/fetch/vocdata.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAP_TYPES = ("11point", "integral")
OVERLAP = 0.5  # VOCMetric's overlap_thresh: ppdet's Trainer never changes it


@dataclass(frozen=True)
class Image:
    """One image's ground truth as ppdet's VOCDataSet keeps it: boxes clipped to the image (float32, x1 y1 x2 y2
    in pixels), class ids (label_list order), difficult flags; invalid boxes already dropped."""

    boxes: np.ndarray  # (n, 4) float32
    labels: np.ndarray  # (n,) int
    difficult: np.ndarray  # (n,) bool


@dataclass(frozen=True)
class GroundTruth:
    """A VOC eval set: the class names (ids are their positions, as ppdet's label_list), the images by their
    path in the eval list (normalised, relative to the dataset root), in list order."""

    classes: list[str]
    images: dict[str, Image] = field(default_factory=dict)


class VocScoreError(ValueError):
    """Predictions that cannot be scored against this ground truth (an unknown image or class)."""


def score(gt: GroundTruth, predictions: Sequence[Mapping[str, Any]], using: Any = None, *, map_type: str = "11point"):
    """{"AP": mAP} (a fraction) of `predictions` against `gt`, as ppdet's DetectionMAP computes it.

    A prediction is `{"image": <path as in the eval list>, "category_id": <class id>, "bbox": [x1, y1, x2, y2],
    "score": s}` (harness/model/vocpreds.py writes them so, in ppdet's eval order). A negative category id is
    ppdet's "no detection" placeholder (a post-process's `[-1, 0, 0, 0, 0, 0]` row): not a detection. ppdet's
    DetectionMAP files it, through Python's index -1, as a false positive of score 0 of the last class, which
    ranks below every real detection of that class and so changes no AP, unless that class has detections of
    score exactly 0 (below every post-process's threshold). `using` (the COCO backend of the other kinds) is not
    needed here."""
    if map_type not in MAP_TYPES:
        raise VocScoreError(f"map_type {map_type!r}: ppdet knows {' and '.join(MAP_TYPES)}")
    n = len(gt.classes)
    counts = [0] * n
    for image in gt.images.values():
        for label in image.labels[~image.difficult]:
            counts[int(label)] += 1
    per_class: list[list[tuple[float, bool]]] = [[] for _ in range(n)]
    taken: dict[str, np.ndarray] = {}
    for p in predictions:
        label = int(p["category_id"])
        if label < 0:
            continue
        if label >= n:
            raise VocScoreError(f"a prediction of class id {label}: the label list has {n} classes")
        key = p["image"]
        im = gt.images.get(key)
        if im is None:
            raise VocScoreError(f"a prediction for image {key!r}, which is not in the eval list")
        hit = _match(p["bbox"], label, im)
        if hit is None:
            per_class[label].append((float(p["score"]), False))
            continue
        if im.difficult[hit]:
            continue  # a difficult object found: neither right nor wrong
        seen = taken.setdefault(key, np.zeros(len(im.labels), dtype=bool))
        per_class[label].append((float(p["score"]), not seen[hit]))
        seen[hit] = True
    total, valid = 0.0, 0
    for hits, count in zip(per_class, counts, strict=True):
        if count == 0:
            continue
        valid += 1
        if hits:
            total += _average_precision(hits, count, map_type)
    return {"AP": total / float(valid) if valid > 0 else total}


def _match(box: Sequence[float], label: int, im: Image) -> int | None:
    """The index of the ground-truth box of `label` that `box` overlaps most (the first on a tie) when that
    overlap is above 0.5, else None. The arithmetic is ppdet's `jaccard_overlap`, in float64, in its order."""
    idx = np.flatnonzero(im.labels == label)
    if idx.size == 0:
        return None
    g = im.boxes[idx].astype(np.float64)
    x1, y1, x2, y2 = (float(v) for v in box)
    apart = (x1 >= g[:, 2]) | (x2 <= g[:, 0]) | (y1 >= g[:, 3]) | (y2 <= g[:, 1])
    ix1, iy1 = np.maximum(x1, g[:, 0]), np.maximum(y1, g[:, 1])
    ix2, iy2 = np.minimum(x2, g[:, 2]), np.minimum(y2, g[:, 3])
    inter = (ix2 - ix1 + 1.0) * (iy2 - iy1 + 1.0)
    mine = (x2 - x1 + 1.0) * (y2 - y1 + 1.0)
    theirs = (g[:, 2] - g[:, 0] + 1.0) * (g[:, 3] - g[:, 1] + 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        overlap = np.where(apart, 0.0, inter / (mine + theirs - inter))
    overlap[np.isnan(overlap)] = -1.0  # never a maximum in ppdet's `overlap > max_overlap` (from -1)
    best = int(np.argmax(overlap))  # the first maximum, as ppdet's strict `>` keeps it
    return int(idx[best]) if overlap[best] > OVERLAP else None


def _average_precision(hits: list[tuple[float, bool]], count: int, map_type: str) -> float:
    """One class's AP from its (score, true positive) list in eval order; ppdet's loops, literally."""
    order = sorted(hits, key=lambda h: h[0], reverse=True)  # stable: equal scores keep the eval order
    precision, recall = [], []
    tp = fp = 0
    for _, positive in order:
        tp += int(positive)
        fp += 1 - int(positive)
        precision.append(float(tp) / (tp + fp))
        recall.append(float(tp) / count)
    if map_type == "11point":
        best = [0.0] * 11
        start = len(precision) - 1
        for j in range(10, -1, -1):
            for i in range(start, -1, -1):
                if recall[i] < float(j) / 10.0:
                    start = i
                    if j > 0:
                        best[j - 1] = best[j]
                        break
                elif best[j] < precision[i]:
                    best[j] = precision[i]
        return sum(best) / 11.0
    ap, previous = 0.0, 0.0
    for p, r in zip(precision, recall, strict=True):
        gap = math.fabs(r - previous)
        if gap > 1e-6:
            ap += p * gap
            previous = r
    return ap
