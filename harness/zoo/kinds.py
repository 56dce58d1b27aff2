"""The kinds of predictions a model is judged on, as one table (detectron2's `{"bbox": ..., "segm": ...}[iou_type]`).

One row per kind says everything the harness knows of it: the metric prefix a zoo file documents (`box_ap`,
`mask_ap50`), the key of its stats in a record (COCO's iouType), the files PaddleDetection's eval writes for it,
its model-index task, its column label, its statistics and how they are computed. Every module iterates this
table: the zoo file's metric names, the worker's prediction files, scoring, the report's columns, the CSV,
`harness list`, the plots and the model index. Adding a kind is adding a row (and its scorer, when COCOeval's
iouTypes do not cover it); nothing else changes.

No harness imports here but core's (the `voc` kind's scorer, harness/core/vocmap.py): every stage reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness.core import motmetric, vocmap

# COCOeval's 12 summary statistics, in its order (fractions; -1 where a size range has no objects).
COCO_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
# COCOeval's 10 keypoint statistics (iouType "keypoints"), in its order: one maxDets (20), no small range.
KEYPOINT_STATS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
# The OVERALL row of ppdet's MOT summary that a tracker's README documents (fractions; MOTA may be negative).
MOT_STATS = ("MOTA", "IDF1")

# A kind's own scorer: (ground truth as the scorer loaded it, the predictions, the scorer) -> {stat: fraction}; the
# metric's parameters that PaddleDetection's config sets (a VOC `map_type`) come as keywords.
ScoreFn = Callable[..., dict[str, float]]


@dataclass(frozen=True)
class Kind:
    prefix: str  # metric prefix: `box` -> box_ap, box_ap50, ...
    stats_key: str  # the record's stats[...] key; for COCOeval kinds its iouType
    files: tuple[str, ...]  # ppdet's prediction files (without .json) holding this kind; the first is written empty
    task: str  # OpenMMLab model-index task
    label: str  # column label: "box AP"
    stats: tuple[str, ...] = COCO_STATS
    score: ScoreFn | None = None  # None: COCOeval with iouType=stats_key
    # The order ppdet's eval visits (and writes) images: "id", ascending ids (COCODataSet sorts them); "file",
    # the annotation file's order (the keypoint datasets take pycocotools' getImgIds() as it is). slices.py
    # merges the slices' predictions back into it.
    image_order: str = "id"
    first: str = "AP"  # the statistic a table shows for the kind (its headline)
    # the statistics whose verdict columns the CSV carries (the headline, unless a kind is judged on several
    # numbers as a whole: a tracker's MOTA and IDF1)
    columns: tuple[str, ...] = ()

    @property
    def csv_metrics(self) -> tuple[str, ...]:
        return tuple(self.metric(s) for s in self.columns) or (self.headline,)

    @property
    def headline(self) -> str:
        """The metric a table shows for the kind: `box_ap`, `mot_mota`."""
        return self.metric(self.first)

    def metric(self, stat: str) -> str:
        return f"{self.prefix}_{stat.lower()}"


KINDS: dict[str, Kind] = {
    k.prefix: k
    for k in (
        Kind("box", "bbox", ("bbox",), "Object Detection", "box AP"),
        # R-CNNs write mask.json, SOLOv2 segm.json: either is the kind's file (never both: predictions.py)
        Kind("mask", "segm", ("mask", "segm"), "Instance Segmentation", "mask AP"),
        # top-down models (KeyPointTopDownCOCOEval) write keypoints_results.json, bottom-up HigherHRNet
        # (COCOMetric, IouType keypoints) keypoint.json; task as OpenMMLab's mmpose metafiles spell it
        Kind(
            "kpt",
            "keypoints",
            ("keypoints_results", "keypoint"),
            "Body 2D Keypoint",
            "keypoint AP",
            KEYPOINT_STATS,
            image_order="file",
        ),
        # Pascal VOC: mAP at IoU 0.5 under the config's map_type (11point or integral), as ppdet's VOCMetric
        # prints it. ppdet writes its VOC boxes as bbox.json in a per-batch layout without image ids; the worker
        # ties them to their images and writes voc.json (harness/model/vocpreds.py), so `bbox` stays COCO's.
        Kind("voc", "voc", ("voc",), "Object Detection", "VOC mAP@0.5", stats=("AP",), score=vocmap.score),
        # JDE-style trackers (FairMOT, JDE) on MOTChallenge sequences: MOTA and IDF1 of the summary ppdet's
        # tools/eval_mot.py prints (its MOTMetric, on motmetrics), computed by harness/core/motmetric.py from
        # mot.json, the rows of ppdet's per-sequence result files (harness/model/tracking.py)
        Kind(
            "mot",
            "mot",
            ("mot",),
            "Multiple Object Tracking",
            "MOTA",
            stats=MOT_STATS,
            score=motmetric.score,
            first="MOTA",
            columns=("MOTA", "IDF1"),
        ),
    )
}


def by_file(name: str) -> Kind | None:
    """The kind a prediction file (`bbox`, `mask`, `segm`: ppdet's name without .json) holds."""
    return next((k for k in KINDS.values() if name in k.files), None)


def by_stats_key(key: str) -> Kind | None:
    return next((k for k in KINDS.values() if k.stats_key == key), None)


def of_metric(metric: str) -> Kind | None:
    """The kind of a metric name (`mask_ap50` -> mask), if the name is one of its statistics."""
    prefix, _, stat = metric.partition("_")
    kind = KINDS.get(prefix)
    return kind if kind is not None and stat in {s.lower() for s in kind.stats} else None


def metric_names() -> list[str]:
    """Every metric a zoo file can document, kind by kind, in statistic order."""
    return [k.metric(s) for k in KINDS.values() for s in k.stats]


def prediction_files() -> tuple[str, ...]:
    return tuple(f for k in KINDS.values() for f in k.files)
