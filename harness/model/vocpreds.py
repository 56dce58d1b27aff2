"""ppdet's VOC predictions, tied to their images: `voc.json`, the file the harness scores (harness/core/vocmap.py).

With `save_prediction_only`, ppdet's VOCMetric writes `bbox.json` as `{"bbox": [...], "score": [...], "label":
[...]}`, one list per batch, the boxes of all the batch's images in one list: no image id, no per-image count.
The worker ties them to their images, faithfully, by recording what the metric itself was given: its `update`
is wrapped (`attach`), and for every call — one per batch, in the order ppdet appends the batch's lists — the
batch's `im_id`s (`inputs['im_id']`, the ids the dataset gave the images it read) and `outputs['bbox_num']`
(how many of the batch's boxes are each image's, in batch order, as VOCMetric itself slices them) are kept.
`write` then reads the file ppdet wrote and splits batch k by the counts recorded at call k, giving each box
the image of its slice. It cannot mis-assign: the ids and counts are those of the very call that appended
the batch, a batch whose counts do not add up to its boxes, a call count that differs from the file's batch
count, or an id that is not exactly one image of the dataset, stops the eval with an error instead.

An image is named by its path in the eval list (vocdata.key), found from its id through the dataset's own
records (`roidbs`: the file ppdet read it from), so the harness's scorer finds its ground truth by the same
line of the list. ppdet's own file is kept beside as `voc.ppdet.json` (the bytes ppdet wrote, compared with
tools/eval.py's in the tests).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from harness.core.errors import HarnessError
from harness.core.files import atomic_write_bytes
from harness.fetch.vocdata import key

PPDET_FILE, OURS, KEPT = "bbox.json", "voc.json", "voc.ppdet.json"


class Tie:
    """The (image ids, boxes per image) of every batch VOCMetric was updated with, in call order."""

    def __init__(self, metric, dataset) -> None:
        self.batches: list[tuple[list[int], list[int]]] = []
        self.images = _images(dataset)
        self.map_type = str(metric.map_type)  # the config's: how the harness must score voc.json
        update = metric.update

        def recording(inputs, outputs):
            self.batches.append((_ints(inputs["im_id"]), _ints(outputs["bbox_num"])))
            return update(inputs, outputs)

        metric.update = recording

    def write(self, preds: Path) -> Path:
        """voc.json from ppdet's bbox.json (kept as voc.ppdet.json): one row a box, in ppdet's order."""
        raw = preds / PPDET_FILE
        try:
            written = json.loads(raw.read_bytes())
            boxes, scores, labels = written["bbox"], written["score"], written["label"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise HarnessError(f"{raw}: not the VOC predictions ppdet's VOCMetric writes ({exc})") from None
        if not len(boxes) == len(scores) == len(labels) == len(self.batches):
            raise HarnessError(
                f"{raw}: {len(boxes)} batches of boxes, but VOCMetric was updated {len(self.batches)} times: "
                "the boxes cannot be tied to their images",
                hint="report this with the model's config: its eval loop is not the one the harness knows",
            )
        rows = []
        for k, (ids, nums) in enumerate(self.batches):
            if (
                len(ids) != len(nums)
                or sum(nums) != len(boxes[k])
                or not len(boxes[k]) == len(scores[k]) == len(labels[k])
            ):
                raise HarnessError(
                    f"{raw}: batch {k + 1} has {len(boxes[k])} boxes, its {len(ids)} images {sum(nums)} by the "
                    "model's counts: the boxes cannot be tied to their images",
                    hint="report this with the model's config",
                )
            at = 0
            for im_id, n in zip(ids, nums, strict=True):
                image = self.images.get(im_id)
                if image is None:
                    raise HarnessError(f"VOCMetric was given image id {im_id}, which no image of the dataset has")
                for j in range(at, at + n):
                    rows.append(
                        {
                            "image": image,
                            "image_id": im_id,
                            "category_id": int(labels[k][j]),
                            "bbox": boxes[k][j],
                            "score": scores[k][j],
                        }
                    )
                at += n
        raw.replace(preds / KEPT)
        atomic_write_bytes(preds / OURS, json.dumps(rows).encode())
        return preds / OURS


def attach(trainer) -> Tie | None:
    """A Tie on the trainer's VOCMetric, or None when its metric is not VOC's."""
    from ppdet.metrics import VOCMetric

    found = [m for m in trainer._metrics if isinstance(m, VOCMetric)]
    return Tie(found[0], trainer.dataset) if found else None


def _ints(value) -> list[int]:
    array = value.numpy() if hasattr(value, "numpy") else value
    return [int(v) for v in np.asarray(array).reshape(-1)]


def _images(dataset) -> dict[int, str]:
    """Image id -> its eval-list key, from the dataset's records; ids must name one image each."""
    root = os.path.join(dataset.dataset_dir, dataset.image_dir)
    out: dict[int, str] = {}
    for rec in dataset.roidbs:
        im_id = int(np.asarray(rec["im_id"]).reshape(-1)[0])
        if im_id in out:
            raise HarnessError(
                f"images {out[im_id]} and {key(os.path.relpath(rec['im_file'], root))} have the same id {im_id} "
                "(an <id> element in their annotations): ppdet's VOC predictions could not be told apart",
                hint="remove the <id> elements, or make them unique",
            )
        out[im_id] = key(os.path.relpath(rec["im_file"], root))
    return out
