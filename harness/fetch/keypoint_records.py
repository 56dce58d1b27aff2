"""The records of a COCO keypoints annotation file (person_keypoints_val2017.json), checked before any reader sees
them: the `coco-keypoints` layout's own check in dataset.prepare (its `LAYOUT_CHECKS` row).

Why: ppdet's keypoint datasets index `keypoints[3 * i + 2]` for each of the config's joints and read `bbox` and
`area` of every annotation, and COCOeval(iouType="keypoints") reads `num_keypoints`; a record without them (an
instances json named by mistake, a hand-made file) fails deep inside the eval with a KeyError or an IndexError
after minutes of loading. Here it is refused with the record named and the fix.
"""

from __future__ import annotations

from pathlib import Path

from harness.core.errors import DatasetRecordError

FIX = "correct the annotation file, or point --data NAME=DIR / annotation_file at COCO's person_keypoints_val2017.json"


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def joints(path: Path, data: dict) -> dict[object, int]:
    """The keypoint count of each category that lists its keypoints (COCO: person, 17); none is not a keypoint
    file."""
    out = {}
    for i, cat in enumerate(data["categories"]):
        names = cat.get("keypoints")
        if names is None:
            continue
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise DatasetRecordError(f"{path}: categories[{i}]: keypoints is not a list of keypoint names", hint=FIX)
        out[cat.get("id")] = len(names)
    if not out:
        raise DatasetRecordError(
            f"{path}: no category lists its keypoints: not a COCO keypoints file (an instances json?)", hint=FIX
        )
    return out


def check(path: Path, data: dict) -> None:
    """Every annotation of a keypoint category: keypoints as x, y, v triples (one per keypoint of its category),
    num_keypoints an integer no larger than that, bbox four numbers, area a number, iscrowd 0 or 1."""
    count = joints(path, data)
    for i, ann in enumerate(data.get("annotations", [])):
        k = count.get(ann.get("category_id"))
        if k is None:
            continue  # another category's annotation: not read as keypoints
        where = f"{path}: annotations[{i}] (id {ann.get('id')!r})"
        kpts = ann.get("keypoints")
        if not isinstance(kpts, list) or len(kpts) != 3 * k or not all(_number(x) for x in kpts):
            got = f"{len(kpts)} values" if isinstance(kpts, list) else type(kpts).__name__
            raise DatasetRecordError(
                f"{where}: keypoints must be {3 * k} numbers (x, y, v per keypoint), not {got}", hint=FIX
            )
        n = ann.get("num_keypoints")
        if type(n) is not int or not 0 <= n <= k:
            raise DatasetRecordError(f"{where}: num_keypoints {n!r} is not an integer from 0 to {k}", hint=FIX)
        box = ann.get("bbox")
        if not isinstance(box, list) or len(box) != 4 or not all(_number(x) for x in box):
            raise DatasetRecordError(f"{where}: bbox {box!r} is not four numbers (x, y, w, h)", hint=FIX)
        if not _number(ann.get("area")):
            raise DatasetRecordError(f"{where}: area {ann.get('area')!r} is not a number", hint=FIX)
        if ann.get("iscrowd", 0) not in (0, 1):
            raise DatasetRecordError(f"{where}: iscrowd {ann.get('iscrowd')!r} is not 0 or 1", hint=FIX)
