"""A synthetic COCO-keypoints set for tests: person_keypoints-style records (17 keypoints as x, y, v triples,
num_keypoints, bbox, area, iscrowd) on a few small JPEGs, and noisy keypoint predictions of them.

Why synthetic: the real person_keypoints_val2017.json is 230 MB of annotations for 5000 images; a test needs a
handful of people whose every field ppdet's KeypointTopDownCocoDataset and COCOeval(iouType="keypoints") read.
The people are stick figures (a template skeleton scaled into each box), so keypoints lie inside their boxes
like real ones; some keypoints are not labelled (v = 0, x = y = 0, as COCO writes them) or occluded (v = 1),
and a set can hold what COCO holds besides: a person with no labelled keypoint (num_keypoints 0, which COCOeval
ignores) and a crowd region.
"""

from __future__ import annotations

import random
from pathlib import Path

NAMES = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9], [8, 10]]
SKELETON += [[9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]  # COCO's, 1-based
PERSON = {"id": 1, "name": "person", "supercategory": "person", "keypoints": list(NAMES), "skeleton": SKELETON}
# Where each keypoint sits in a person's box (fractions of its width and height): a figure facing the camera.
TEMPLATE = (
    (0.50, 0.08),
    (0.55, 0.05),
    (0.45, 0.05),
    (0.62, 0.07),
    (0.38, 0.07),
    (0.70, 0.22),
    (0.30, 0.22),
    (0.80, 0.38),
    (0.20, 0.38),
    (0.85, 0.52),
    (0.15, 0.52),
    (0.62, 0.55),
    (0.38, 0.55),
    (0.64, 0.76),
    (0.36, 0.76),
    (0.66, 0.96),
    (0.34, 0.96),
)


def person(rng: random.Random, image_id: int, ann_id: int, box: list[float], *, labelled: bool = True) -> dict:
    """One person annotation in `box` (x, y, w, h): its keypoints from the template, jittered, some not
    labelled (v 0) or occluded (v 1); `labelled=False` is a person with no keypoint (num_keypoints 0)."""
    x, y, w, h = box
    kpts: list[float] = []
    for fx, fy in TEMPLATE:
        v = 0 if not labelled else rng.choices((0, 1, 2), (1, 2, 7))[0]
        if v == 0:
            kpts += [0, 0, 0]
        else:
            kpts += [
                round(x + w * (fx + rng.uniform(-0.03, 0.03)), 2),
                round(y + h * (fy + rng.uniform(-0.02, 0.02)), 2),
                v,
            ]
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "keypoints": kpts,
        "num_keypoints": sum(1 for v in kpts[2::3] if v > 0),
        "bbox": [round(c, 2) for c in box],
        "area": round(w * h * 0.55, 2),  # a segmentation's area: less than its box's
        "iscrowd": 0,
    }


def dataset(
    n_images: int,
    *,
    size: tuple[int, int] = (400, 300),
    seed: int = 0,
    first_id: int = 100,
    unlabelled: bool = True,
    crowd: bool = True,
) -> dict:
    """A person_keypoints json of `n_images` images (ids from `first_id`, listed in descending id order as
        COCO's files list theirs unsorted) with 1-3 people each, medium and large; with `unlabelled`, the first
        image also holds a person without keypoints, with `crowd` a crowd region (iscrowd 1, no keypoints, as COCO's
    crowds are) in the last."""
    rng = random.Random(seed)
    w, h = size
    images, anns = [], []
    for i in range(n_images):
        image_id = first_id + i
        images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": w, "height": h})
        for _ in range(rng.randint(1, 3)):
            bw = rng.uniform(0.12, 0.45) * w
            bh = min(bw * rng.uniform(1.6, 2.4), 0.95 * h)
            box = [rng.uniform(0, w - bw), rng.uniform(0, h - bh), bw, bh]
            anns.append(person(rng, image_id, len(anns) + 1, box))
    if unlabelled and images:
        anns.append(person(rng, images[0]["id"], len(anns) + 1, [2.0, 3.0, w * 0.2, h * 0.4], labelled=False))
    if crowd and images:
        region = person(rng, images[-1]["id"], len(anns) + 1, [0.0, 0.0, w * 0.5, h * 0.5], labelled=False)
        anns.append({**region, "iscrowd": 1, "segmentation": {"counts": [0, w * h], "size": [h, w]}})  # as COCO's
    return {
        "info": {"description": "synthetic COCO keypoints for tests", "version": "1"},
        "licenses": [],
        "images": images[::-1],
        "annotations": anns,
        "categories": [PERSON],
    }


def write_images(data: dict, folder: Path, seed: int = 0) -> list[Path]:
    """A JPEG for each image of `data`: a gradient with each person's skeleton drawn on it."""
    import cv2
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, img in enumerate(data["images"]):
        w, h = img["width"], img["height"]
        yy, xx = np.mgrid[0:h, 0:w]
        canvas = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, (60 + 50 * n + seed) % 256)], -1)
        canvas = canvas.astype(np.uint8)
        for a in (a for a in data["annotations"] if a["image_id"] == img["id"]):
            k = a["keypoints"]
            for i, j in SKELETON:
                if k[3 * i - 1] and k[3 * j - 1]:
                    p, q = (round(k[3 * i - 3]), round(k[3 * i - 2])), (round(k[3 * j - 3]), round(k[3 * j - 2]))
                    cv2.line(canvas, p, q, (255, 255, 255), max(1, w // 100))
        ok, jpg = cv2.imencode(".jpg", canvas)
        assert ok
        paths.append(folder / img["file_name"])
        paths[-1].write_bytes(jpg.tobytes())
    return paths


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
