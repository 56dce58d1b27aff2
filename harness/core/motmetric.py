"""MOTA and IDF1 of tracking results, computed by the harness as PaddleDetection's MOT metric computes them.

The number a PaddleDetection README documents for a JDE-style tracker (FairMOT, JDE) is the OVERALL row of the
summary `tools/eval_mot.py` prints: `MOTMetric` (ppdet/metrics/mot_metrics.py) builds one `MOTEvaluator` per
sequence and hands their motmetrics accumulators to `compute_many(..., generate_overall=True)`. This module
does the same with the same library (motmetrics, its `lap` solver as ppdet sets it), step by step, so that the
harness's MOTA and IDF1 equal the printed ones (tests/test_mot.py compares the two on random cases):

- ground truth (`read_mot_results(is_gt=True)`): rows of `<seq>/gt/gt.txt` with at least 7 fields and a
  frame ≥ 1, kept when the mark (field 7) is not 0 and the class (field 8) is 1 (MOTChallenge's pedestrian);
- ignore regions (`is_ignore=True`): only when the gt file's *path* names a MOTChallenge set (`MOT15-`,
  `MOT16-`, `MOT17-`, `MOT20-`: its sequence names do), the rows of class 2, 7, 8 or 12 or with a negative
  visibility (field 9); a result matched to one of them at IoU ≥ 0.5 (one-to-one) is dropped before scoring;
- results: rows with at least 7 fields and a frame ≥ 1; **only the frames that have a result are evaluated**
  (ppdet's `eval_file` loops over the result file's frames), so the ground truth of a frame without any
  track counts neither as missed nor at all;
- per frame, ground truth and tracks are matched by IoU distance with `max_iou=0.5`, into one accumulator per
  sequence; the sequences, in sorted order, give `compute_many`'s OVERALL row: its `mota` and `idf1`.

One departure, by necessity: where no sequence has a single result, ppdet's summary is NaN (no frame was
evaluated); a model that tracked nothing scores MOTA 0 and IDF1 0 here (what MOTChallenge's definitions give
when every object is missed), as a detector that detected nothing scores AP 0.

Kept in core, paddle-free, so that the kinds table (harness/zoo/kinds.py) names it as the `mot` kind's scorer
and scoring and `harness rescore` run it in the parent; motmetrics is imported when scoring.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VALID_LABELS = (1,)  # read_mot_results' valid_label
IGNORE_LABELS = (2, 7, 8, 12)  # person on vehicle, static person, distractor, reflection
IGNORE_SETS = ("MOT16-", "MOT17-", "MOT15-", "MOT20-")  # whose gt files carry ignore classes
MAX_IOU = 0.5  # MOTEvaluator's iou_matrix(max_iou=0.5): IoU distance above 0.5 is no match

Box = tuple[float, float, float, float]  # x, y, w, h (MOTChallenge's tlwh), pixels


class MotError(ValueError):
    """A ground-truth or results row that PaddleDetection's reader would crash on; the message names it."""


@dataclass(frozen=True)
class Track:
    """One sequence's ground truth as MOTEvaluator keeps it: frame -> [(tlwh, id)], frame -> [ignore tlwh]."""

    name: str
    gt_file: str  # the path ppdet reads: its text decides whether ignore classes apply (IGNORE_SETS)
    frames: dict[int, list[tuple[Box, int]]]
    ignore: dict[int, list[Box]]

    @property
    def objects(self) -> int:
        return sum(len(v) for v in self.frames.values())


@dataclass(frozen=True)
class Truth:
    """The ground truth of a MOT dataset: its sequences, in the order ppdet evaluates them (sorted names)."""

    sequences: tuple[Track, ...]


def read_gt(name: str, gt_file: Path) -> Track:
    """A sequence's gt.txt read as read_mot_results reads it twice (is_gt, then is_ignore), from the same text.
    A file that reader would crash on (too few fields, a field that is no number) is a MotError naming the line.
    """
    frames: dict[int, list[tuple[Box, int]]] = {}
    ignore: dict[int, list[Box]] = {}
    path = str(gt_file)
    mot_set = any(s in path for s in IGNORE_SETS)
    text = gt_file.read_text(encoding="utf-8", errors="replace") if gt_file.is_file() else ""
    for n, line in enumerate(text.splitlines(keepends=True), 1):
        fields = line.split(",")
        if len(fields) < 7:
            continue
        try:
            fid = int(fields[0])
            if fid < 1:
                continue
            label, mark = int(float(fields[7])), int(float(fields[6]))
            visibility = float(fields[8]) if mot_set else 0.0
            box: Box = tuple(map(float, fields[2:6]))  # type: ignore[assignment]
            ident = int(fields[1])
        except (ValueError, IndexError) as exc:
            raise MotError(f"{gt_file}:{n}: not a MOTChallenge gt row ({exc}): {line.strip()[:80]!r}") from None
        frames.setdefault(fid, [])
        ignore.setdefault(fid, [])
        if mark != 0 and label in VALID_LABELS:
            frames[fid].append((box, ident))
        if mot_set and (label in IGNORE_LABELS or visibility < 0):
            ignore[fid].append(box)
    return Track(name, path, frames, ignore)


def result_frames(rows: Sequence[dict]) -> dict[int, list[tuple[Box, int]]]:
    """One sequence's result rows (the worker's mot.json rows) by frame, as read_mot_results(is_gt=False) keeps
    them: frames ≥ 1, in row order."""
    out: dict[int, list[tuple[Box, int]]] = {}
    for r in rows:
        if r["frame"] >= 1:
            x, y, w, h = (float(v) for v in r["bbox"])
            out.setdefault(int(r["frame"]), []).append(((x, y, w, h), int(r["id"])))
    return out


def _boxes(objs: Sequence) -> Any:
    import numpy as np

    return np.asarray([o[0] for o in objs], dtype=float).reshape(-1, 4)


def accumulate(track: Track, rows: Sequence[dict]):
    """A sequence's motmetrics accumulator: MOTEvaluator.eval_file over the frames that have results."""
    import motmetrics as mm
    import numpy as np

    acc = mm.MOTAccumulator(auto_id=True)
    results = result_frames(rows)
    for fid in sorted(results):
        trk = results[fid]
        trk_tlwhs, trk_ids = _boxes(trk), np.asarray([o[1] for o in trk])
        gt = track.frames.get(fid, [])
        gt_tlwhs, gt_ids = _boxes(gt), [o[1] for o in gt]
        ignore_tlwhs = np.asarray(track.ignore.get(fid, []), dtype=float).reshape(-1, 4)
        keep = np.ones(len(trk_tlwhs), dtype=bool)
        distance = mm.distances.iou_matrix(ignore_tlwhs, trk_tlwhs, max_iou=MAX_IOU)
        if len(distance) > 0:
            match_is, match_js = mm.lap.linear_sum_assignment(distance)
            match_is, match_js = (np.asarray(a, dtype=int) for a in (match_is, match_js))
            matched = distance[match_is, match_js]
            keep[match_js[np.logical_not(np.isnan(matched))]] = False
            trk_tlwhs, trk_ids = trk_tlwhs[keep], trk_ids[keep]
        acc.update(gt_ids, trk_ids, mm.distances.iou_matrix(gt_tlwhs, trk_tlwhs, max_iou=MAX_IOU))
    return acc


def summary(truth: Truth, predictions: Sequence[dict]):
    """motmetrics' summary (a DataFrame) of every sequence and the OVERALL row, with MOTMetric's metrics."""
    import motmetrics as mm

    mm.lap.default_solver = "lap"  # as ppdet's mot_metrics sets it
    by_seq: dict[str, list[dict]] = {}
    for r in predictions:
        by_seq.setdefault(str(r["sequence"]), []).append(r)
    accs = [accumulate(t, by_seq.get(t.name, [])) for t in truth.sequences]
    names = [t.name for t in truth.sequences]
    return mm.metrics.create().compute_many(
        accs, metrics=list(mm.metrics.motchallenge_metrics), names=names, generate_overall=True
    )


def score(truth: Truth, predictions: Sequence[dict], using: object = None) -> dict[str, float]:
    """{"MOTA", "IDF1"} (fractions; MOTA may be negative) of the OVERALL row; 0 and 0 when no frame has a
    result (the module's docstring). `using` (the COCO scorer that scoring.py passes every kind) is unused."""
    if not predictions:
        return {"MOTA": 0.0, "IDF1": 0.0}
    overall = summary(truth, predictions).loc["OVERALL"]
    mota, idf1 = float(overall["mota"]), float(overall["idf1"])
    if math.isnan(mota) and math.isnan(idf1):  # rows only for sequences the dataset does not have
        return {"MOTA": 0.0, "IDF1": 0.0}
    return {"MOTA": mota, "IDF1": idf1}
