"""COCO scoring from saved predictions, outside ppdet, with an interchangeable scorer.

Why outside: scoring from files makes `harness rescore` possible without running a model, and lets a
faster scorer be swapped in without touching model code. Two scorers:
- `faster-coco-eval` (default): a C++ drop-in for pycocotools' COCOeval, several times faster on
  val2017-sized inputs, with the same stats (checked in the tests and in scripts/bench_scoring.py);
- `pycocotools`: the reference implementation (PaddleDetection's own eval uses it).
If faster-coco-eval cannot be imported on a stack, pycocotools is used and the result records which
scorer produced it. Chatter from either goes to a buffer, not the user's terminal.

Each kind of kinds.py that COCOeval scores names its statistics there (12 for boxes and masks, 10 for
keypoints, whose OKS takes COCOeval's default per-keypoint sigmas: both scorers' defaults are COCO's 17,
checked in the tests); a scorer computes as many as the kind names, in COCOeval's order.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import multiprocessing
import threading
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.fetch import motdata, vocdata
from harness.zoo import kinds
from harness.zoo.kinds import COCO_STATS as STATS  # box and mask: what scripts and tests compare
from harness.zoo.layouts import LAYOUTS

log = logging.getLogger(__name__)

SCORERS = ("faster-coco-eval", "pycocotools")
DEFAULT = SCORERS[0]


class Scorer:
    """One COCO evaluation backend: load ground truth, make a result set, compute an iouType's stats."""

    name = "pycocotools"

    def __init__(self) -> None:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        self._coco, self._eval = COCO, COCOeval

    @property
    def version(self) -> str | None:
        try:
            return version(self.name)
        except PackageNotFoundError:
            return None

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version}

    def from_dataset(self, dataset: dict):
        gt = self._coco()
        gt.dataset = {"info": {}, **dataset}  # loadRes needs "info" (docs/stacks.md, Evaluation)
        with contextlib.redirect_stdout(io.StringIO()):
            gt.createIndex()
        return gt

    def load(self, annotations: Path):
        with contextlib.redirect_stdout(io.StringIO()):
            gt = self._coco(str(annotations))
        gt.dataset.setdefault("info", {})
        return gt

    def results(self, gt, predictions: list[dict]):
        if not predictions:  # pycocotools' loadRes cannot take an empty list; no detections scores AP 0
            return self.from_dataset(
                {"images": gt.dataset["images"], "categories": gt.dataset["categories"], "annotations": []}
            )
        with contextlib.redirect_stdout(io.StringIO()):
            return gt.loadRes(copy.deepcopy(predictions))  # loadRes writes into the dicts it is given

    def stats(self, gt, dt, iou_type: str, count: int = len(STATS)) -> list[float]:
        """COCOeval's first `count` summary statistics (faster-coco-eval may append extras after them)."""
        with contextlib.redirect_stdout(io.StringIO()):
            ev = self._eval(gt, dt, iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        if len(ev.stats) < count:
            raise HarnessError(f"{self.name} summarised {len(ev.stats)} {iou_type} statistics, not {count}")
        return [float(x) for x in ev.stats[:count]]


class FasterScorer(Scorer):
    name = "faster-coco-eval"

    def __init__(self) -> None:
        from faster_coco_eval import COCO, COCOeval_faster

        self._coco = COCO
        self._eval = lambda gt, dt, iou: COCOeval_faster(gt, dt, iou, print_function=lambda *a, **k: None)


def scorer(name: str | None = None) -> Scorer:
    """The named scorer; the default falls back to pycocotools when faster-coco-eval does not import."""
    name = name or DEFAULT
    if name not in SCORERS:
        from harness.core.errors import UsageError

        raise UsageError(f"unknown scorer {name!r}", hint=f"use one of: {', '.join(SCORERS)}")
    if name == "faster-coco-eval":
        try:
            return FasterScorer()
        except ImportError as exc:
            log.warning("faster-coco-eval is not usable here (%s): scoring with pycocotools", exc)
    return Scorer()


def score(gt, predictions: list[dict], iou_type: str, using: Scorer | None = None) -> dict[str, float]:
    """COCOeval's stats of `predictions` against `gt` (fractions, -1 where undefined), named as the kind of
    `iou_type` names them (kinds.py): 12 for bbox and segm, 10 for keypoints."""
    using = using or scorer()
    kind = kinds.by_stats_key(iou_type)
    names = kind.stats if kind is not None else STATS
    stats = using.stats(gt, using.results(gt, predictions), iou_type, len(names))
    return dict(zip(names, stats, strict=True))


def _kind(file: str) -> kinds.Kind:
    kind = kinds.by_file(file)
    if kind is None:
        raise HarnessError(f"{file}.json: not a prediction file of any kind the harness knows (kinds.py)")
    return kind


def score_kind(
    gt, predictions: list[dict], kind: kinds.Kind, using: Scorer, params: Mapping[str, Any] | None = None
) -> dict[str, float]:
    """A kind's statistics: its own scorer's (with the metric's `params` from the config, a VOC map_type), or
    COCOeval's with its iouType."""
    if kind.score:
        return kind.score(gt, predictions, using, **(params or {}))
    return score(gt, predictions, kind.stats_key, using)


@dataclass(frozen=True)
class Truth:
    """Where a dataset's ground truth is, as its layout (zoo/layouts.py) lays it out: the annotation file (COCO
    json, a VOC eval list), the images' directory (VOC's list is relative to it), further files by role."""

    annotations: Path
    layout: str = "coco"
    images: Path | None = None
    files: Mapping[str, Path] = field(default_factory=dict)

    @classmethod
    def of(cls, dataset: Any) -> Truth:
        """From a record's `dataset` (records.results.Dataset: annotations, layout, images, files); a record
        without annotations gives a path that is no file."""
        annotations = Path(dataset.annotations) if dataset is not None and dataset.annotations else Path("")
        if dataset is None or not dataset.layout:
            return cls(annotations)
        images = Path(dataset.images) if dataset.images else None
        return cls(annotations, dataset.layout, images, {k: Path(p) for k, p in (dataset.files or {}).items()})

    def load(self, using: Scorer):
        own = _coco_truth if LAYOUTS[self.layout].coco_json else _GROUND_TRUTH[self.layout]
        return own(self, using)


def _voc_truth(truth: Truth, using: Scorer):
    if truth.images is None or "label_list" not in truth.files:
        raise HarnessError(f"{truth.annotations}: a VOC eval list, to be scored without its images or label list")
    return vocdata.ground_truth(truth.images, truth.annotations, truth.files["label_list"])


def _mot_truth(truth: Truth, using: Scorer):
    if truth.images is None:
        raise HarnessError(f"{truth.annotations}: a MOT dataset, to be scored without its folder of sequences")
    return motdata.ground_truth(truth.images)


def _coco_truth(truth: Truth, using: Scorer):
    return using.load(truth.annotations)


# The ground truth of a dataset, by its layout: COCO json (instances, keypoints) through the COCO scorer, VOC's XML
# files and MOT's per-sequence gt.txt read as ppdet does.
_GROUND_TRUTH = {
    "voc": _voc_truth,
    "mot": _mot_truth,
}  # layouts whose annotation file is not COCO json (layouts' `coco_json`)


def score_files(
    annotations: Path | Truth,
    files: Mapping[str, str | Path],
    using: Scorer | None = None,
    *,
    concurrent: bool = True,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, dict[str, float]]:
    """{'bbox': stats, 'segm': stats, ...} from ppdet's prediction files (bbox.json, mask.json,
    keypoints_results.json: whichever are given), keyed by the stats key of each file's kind; {'voc': stats} from
    voc.json against a VOC dataset (`annotations` a Truth); `params`: a file's metric parameters (the worker's
    answer's `scoring`: {"voc": {"map_type": "11point"}}).

    The ground truth is parsed once. With `concurrent` (and more than one kind), each kind is scored in its
    own process forked after the parse, so both inherit the parsed ground truth copy-on-write. Not threads:
    most of the work (loading 500 000 results, building their index) holds the GIL — measured slower than
    serial — and pycocotools' evaluateImg writes per-area-range state (`_ignore`) into the ground truth's
    annotation dicts, so two evaluations sharing one object at once change each other's APs/APm/APl (the
    tests caught it). Each forked child has its own copy. Where fork is unavailable, one after the other.
    The tests and scripts/bench_scoring_parallel.py check the stats equal a serial run's."""
    using = using or scorer()
    truth = annotations if isinstance(annotations, Truth) else Truth(annotations)
    gt = truth.load(using)
    params = params or {}
    if concurrent and len(files) > 1 and "fork" in multiprocessing.get_all_start_methods():
        return _forked(gt, using, files, params)
    return {
        _kind(file).stats_key: score_kind(gt, json.loads(Path(path).read_bytes()), _kind(file), using, params.get(file))
        for file, path in files.items()
    }


_FORK = threading.Lock()
_GT = None  # the parsed ground truth, inherited by the scoring processes forked while it is set


def _forked(
    gt, using: Scorer, files: Mapping[str, str | Path], params: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, float]]:
    global _GT
    with _FORK:
        _GT = gt
        try:
            with ProcessPoolExecutor(max_workers=len(files), mp_context=multiprocessing.get_context("fork")) as pool:
                futures = {
                    _kind(k).stats_key: pool.submit(_score_in_child, k, str(p), using.name, params.get(k))
                    for k, p in files.items()
                }
                return {iou: f.result() for iou, f in futures.items()}
        except BrokenProcessPool as exc:
            raise HarnessError(
                f"scoring: a scoring process died ({exc}); out of memory?",
                hint="free memory, or score again with `harness rescore RUN_DIR`",
            ) from None
        finally:
            _GT = None


def _score_in_child(kind: str, path: str, scorer_name: str, params: Mapping[str, Any] | None) -> dict[str, float]:
    return score_kind(_GT, json.loads(Path(path).read_bytes()), _kind(kind), scorer(scorer_name), params)


def metrics(stats: dict[str, dict[str, float]]) -> dict[str, float]:
    """Every metric a zoo can document, in AP points (percent for MOTA and IDF1): `<kind>_<stat>` = the stat ×
    100 (box_ap, mask_ap, box_ap50, mot_mota, ...; kinds.KINDS)."""
    out = {}
    for kind in kinds.KINDS.values():
        for stat, value in (stats.get(kind.stats_key) or {}).items():
            out[kind.metric(stat)] = round(value * 100, 4)
    return out


def restrict(gt, image_ids: list[int], using: Scorer | None = None):
    """The ground truth of `image_ids` only, as its own COCO object."""
    keep = set(image_ids)
    return (using or scorer()).from_dataset(
        {
            "info": gt.dataset.get("info", {}),
            "categories": gt.dataset["categories"],
            "images": [i for i in gt.dataset["images"] if i["id"] in keep],
            "annotations": [a for a in gt.dataset.get("annotations", []) if a["image_id"] in keep],
        }
    )


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
    using = scorer()
    gt = restrict(using.load(annotations), image_ids, using)

    def aps(p: dict[str, list]) -> dict[str, float]:
        out = {}
        for i, (file, dets) in enumerate(p.items()):  # the first file (boxes) always: the match rate's reference
            if (kind := kinds.by_file(file)) is not None and (dets or i == 0):
                out[kind.headline] = round(score_kind(gt, dets, kind, using)["AP"] * 100, 4)
        return out

    ref = aps(predictions["dygraph"])
    out: dict = {"images": len(image_ids), "reference": "dygraph", "dygraph": ref}
    for name, p in predictions.items():
        if name == "dygraph":
            continue
        mine = aps(p)
        out[name] = {
            **{
                m: {"ap": mine.get(m), "delta": None if mine.get(m) is None else round(mine[m] - v, 4)}
                for m, v in ref.items()
            },
            "box_match_rate": match_rate(predictions["dygraph"]["bbox"], p["bbox"]),
        }
    return out
