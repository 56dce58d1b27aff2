"""A synthetic COCO-keypoints set for tests, and noisy keypoint predictions of it.

The set is harness/nightly/synthetic.py's (the rehearsal mirror serves the same people): person_keypoints-style
records (17 keypoints as x, y, v triples, num_keypoints, bbox, area, iscrowd) on a few small JPEGs. Why
synthetic: the real person_keypoints_val2017.json is 230 MB of annotations for 5000 images; a test needs a
handful of people whose every field ppdet's KeypointTopDownCocoDataset and COCOeval(iouType="keypoints") read.
"""

from __future__ import annotations

import random

from harness.nightly.synthetic import KEYPOINT_NAMES as NAMES
from harness.nightly.synthetic import PERSON, SKELETON, TEMPLATE
from harness.nightly.synthetic import keypoint_dataset as dataset
from harness.nightly.synthetic import keypoint_images as write_images
from harness.nightly.synthetic import keypoint_person as person

__all__ = ["NAMES", "PERSON", "SKELETON", "TEMPLATE", "dataset", "person", "predictions", "write_images"]


def predictions(data: dict, *, seed: int = 1, miss: float = 0.15, spurious: int = 3) -> list[dict]:
    """Keypoint results as ppdet writes them (image_id, category_id 1, 51 numbers, score; no box): each
    person found with its keypoints moved by up to 6 % of its box, some people missed, and `spurious`
    people that are not there."""
    rng = random.Random(seed)
    out = []
    for a in data["annotations"]:
        if rng.random() < miss:
            continue
        x, y, w, h = a["bbox"]
        kpts: list[float] = []
        for (fx, fy), v in zip(TEMPLATE, a["keypoints"][2::3], strict=True):
            px = x + w * fx + rng.uniform(-0.06, 0.06) * w
            py = y + h * fy + rng.uniform(-0.06, 0.06) * h
            kpts += [round(px, 3), round(py, 3), round(rng.uniform(0.05, 1.0) if v else rng.uniform(0, 0.3), 4)]
        out.append({"image_id": a["image_id"], "category_id": 1, "keypoints": kpts, "score": round(rng.random(), 5)})
    ids = [img["id"] for img in data["images"]]
    for _ in range(spurious):
        img = next(i for i in data["images"] if i["id"] == rng.choice(ids))
        w, h = img["width"] * 0.2, img["height"] * 0.4
        x0, y0 = rng.uniform(0, img["width"] - w), rng.uniform(0, img["height"] - h)
        kpts = [v for fx, fy in TEMPLATE for v in (round(x0 + w * fx, 3), round(y0 + h * fy, 3), 0.5)]
        out.append({"image_id": img["id"], "category_id": 1, "keypoints": kpts, "score": round(rng.random(), 5)})
    return out
