"""Synthetic evaluation sets, one maker per dataset layout: what the rehearsal mirror serves and the tests use.

Why synthetic: the real sets are gigabytes behind licences and forms; a rehearsal (random weights, AP ≈ 0) and a
test need a handful of images whose every field PaddleDetection's readers and the harness's scorers read. The
same code makes both, so a test's set and the mirror's set cannot drift apart:

- COCO instances json (`coco`): 1-3 filled polygons an image, with boxes, polygons and areas, under the
  dataset's own classes (COCO's 80 with their ids unless the zoo names others: VisDrone's 10, ...);
- COCO keypoints (`coco-keypoints`): person_keypoints records (17 keypoints as x, y, v triples, num_keypoints,
  bbox, area, iscrowd). The people are stick figures (a template skeleton scaled into each box), so keypoints
  lie inside their boxes like real ones; some keypoints are not labelled (v = 0, x = y = 0, as COCO writes them)
  or occluded (v = 1), and a set can hold what COCO holds besides: a person with no labelled keypoint
  (num_keypoints 0, which COCOeval ignores) and a crowd region;
- Pascal VOC (`voc`), laid out as PaddleDetection's VOCDataSet reads it: JPEGImages/, Annotations/ (size,
  objects with name, difficult, bndbox), the eval list (`JPEGImages/<name>.jpg Annotations/<name>.xml` a line)
  and the label list. Objects are filled rectangles; some are difficult, some cross the image border (ppdet
  clips them), some have no area once clipped (ppdet drops them), and `empty` images have none;
- MOTChallenge sequences (`mot`), laid out as tools/eval_mot.py reads them: `<seq>/img1/000001.jpg ...`,
  `<seq>/seqinfo.ini`, `<seq>/gt/gt.txt` (`frame,id,x,y,w,h,mark,class,visibility`). People are filled
  rectangles walking in straight lines; besides pedestrians (class 1) the ground truth holds what MOT16's does:
  rows marked 0 (not evaluated), static people (class 7) and negative visibility (ignore regions where the
  sequence is named MOT16-..).

`write(dataset, root, n)` lays a zoo dataset's synthetic set out under `root` as the zoo file describes it
(its image_dir, annotation_file and files), by the LAYOUTS row of its layout.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from harness.zoo.manifest import Dataset

# The 80 COCO categories (ids as in instances_val2017.json): the configs predict 80 classes, and ppdet
# maps class index -> category id through the annotation file, so a synthetic set must carry all 80.
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
COCO_NAMES = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign "
    "parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag "
    "tie suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard surfboard "
    "tennis_racket bottle wine_glass cup fork knife spoon bowl banana apple sandwich orange broccoli carrot "
    "hot_dog pizza donut cake chair couch potted_plant bed dining_table toilet tv laptop mouse remote "
    "keyboard cell_phone microwave oven toaster sink refrigerator book clock vase scissors teddy_bear "
    "hair_drier toothbrush"
).split()
COCO_CATEGORIES = [{"id": c, "name": n, "supercategory": "thing"} for c, n in zip(COCO_IDS, COCO_NAMES, strict=True)]


def categories(classes: int | list[str] | None) -> list[dict]:
    """The categories of a COCO-format set with these classes (the zoo's `classes`): COCO's 80 when unsaid or
    80, else ids 1..N named as listed (or class1..classN for a count)."""
    if classes is None or classes == 80:
        return COCO_CATEGORIES
    names = classes if isinstance(classes, list) else [f"class{i}" for i in range(1, classes + 1)]
    return [{"id": i, "name": n, "supercategory": "thing"} for i, n in enumerate(names, 1)]


def synthetic_coco(
    out: Path,
    n_images: int,
    *,
    size: tuple[int, int] = (320, 240),
    seed: int = 0,
    cats: list[dict] | None = None,
    image_dir: str = "val2017",
) -> dict:
    """`n_images` JPEGs under out/image_dir with 1-3 filled polygons each, and their instances json (boxes,
    polygons, areas) over `cats` (COCO's 80 by default; objects of the first 20)."""
    import cv2
    import numpy as np

    cats = cats or COCO_CATEGORIES
    rng = random.Random(seed)
    (out / image_dir).mkdir(parents=True, exist_ok=True)
    w, h = size
    images: list[dict] = []
    anns: list[dict] = []
    for i in range(n_images):
        image_id = 1000 + i
        yy, xx = np.mgrid[0:h, 0:w]
        canvas = np.stack([(xx * 255 // w), (yy * 255 // h), np.full_like(xx, 90 + 40 * i)], -1).astype(np.uint8)
        for _ in range(rng.randint(1, 3)):
            cx, cy = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h
            rx, ry = rng.uniform(0.08, 0.22) * w, rng.uniform(0.08, 0.22) * h
            angles = sorted(rng.uniform(0, 6.283) for _ in range(rng.randint(5, 9)))
            pts = np.array([[cx + rx * np.cos(a), cy + ry * np.sin(a)] for a in angles]).round(1)
            cv2.fillPoly(canvas, [pts.astype(np.int32)], tuple(rng.randrange(256) for _ in range(3)))
            x0, y0 = pts.min(0)
            x1, y1 = pts.max(0)
            area = 0.5 * abs(float(np.dot(pts[:, 0], np.roll(pts[:, 1], 1)) - np.dot(pts[:, 1], np.roll(pts[:, 0], 1))))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": rng.choice(cats[:20])["id"],
                    "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                    "area": round(area, 2),
                    "iscrowd": 0,
                    "segmentation": [pts.flatten().tolist()],
                }
            )
        name = f"{image_id:012d}.jpg"
        ok, jpg = cv2.imencode(".jpg", canvas[:, :, ::-1].copy())
        assert ok
        (out / image_dir / name).write_bytes(jpg.tobytes())
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
    return {
        "info": {"description": "harness rehearsal: synthetic COCO-format set", "version": "1"},
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": [dict(c) for c in cats],
    }


# ---- COCO keypoints -----------------------------------------------------------------------------------------

KEYPOINT_NAMES = (
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
PERSON = {"id": 1, "name": "person", "supercategory": "person", "keypoints": list(KEYPOINT_NAMES), "skeleton": SKELETON}
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


def keypoint_person(rng: random.Random, image_id: int, ann_id: int, box: list[float], *, labelled: bool = True) -> dict:
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


def keypoint_dataset(
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
    images: list[dict] = []
    anns: list[dict] = []
    for i in range(n_images):
        image_id = first_id + i
        images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": w, "height": h})
        for _ in range(rng.randint(1, 3)):
            bw = rng.uniform(0.12, 0.45) * w
            bh = min(bw * rng.uniform(1.6, 2.4), 0.95 * h)
            box = [rng.uniform(0, w - bw), rng.uniform(0, h - bh), bw, bh]
            anns.append(keypoint_person(rng, image_id, len(anns) + 1, box))
    if unlabelled and images:
        anns.append(keypoint_person(rng, images[0]["id"], len(anns) + 1, [2.0, 3.0, w * 0.2, h * 0.4], labelled=False))
    if crowd and images:
        region = keypoint_person(rng, images[-1]["id"], len(anns) + 1, [0.0, 0.0, w * 0.5, h * 0.5], labelled=False)
        anns.append({**region, "iscrowd": 1, "segmentation": {"counts": [0, w * h], "size": [h, w]}})  # as COCO's
    return {
        "info": {"description": "synthetic COCO keypoints (harness tests and rehearsal)", "version": "1"},
        "licenses": [],
        "images": images[::-1],
        "annotations": anns,
        "categories": [copy.deepcopy(PERSON)],  # a copy: a test that edits its set edits only it
    }


def keypoint_images(data: dict, folder: Path, seed: int = 0) -> list[Path]:
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


# ---- Pascal VOC ---------------------------------------------------------------------------------------------

VOC_CLASSES = (
    "aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse motorbike person "
    "pottedplant sheep sofa train tvmonitor"
).split()


@dataclass
class Voc:
    root: Path
    eval_list: Path
    label_list: Path
    names: list[str]  # image stems, in list order
    classes: list[str]


def _xml(name: str, w: int, h: int, objects: list[tuple[str, int, list[float]]], difficult_tag: bool) -> str:
    objs = []
    for cls, hard, (x1, y1, x2, y2) in objects:
        tag = f"<difficult>{hard}</difficult>" if difficult_tag or hard else ""
        objs.append(
            f"<object><name>{escape(cls)}</name><pose>Unspecified</pose>{tag}<bndbox><xmin>{x1:g}</xmin>"
            f"<ymin>{y1:g}</ymin><xmax>{x2:g}</xmax><ymax>{y2:g}</ymax></bndbox></object>"
        )
    return (
        f"<annotation><folder>VOC</folder><filename>{name}.jpg</filename><size><width>{w}</width>"
        f"<height>{h}</height><depth>3</depth></size>{''.join(objs)}</annotation>\n"
    )


def synthetic_voc(
    root: Path,
    n: int,
    *,
    size: tuple[int, int] = (96, 64),
    classes: list[str] | None = None,
    use: int | None = None,
    seed: int = 0,
    empty: tuple[int, ...] = (),
    objects: tuple[int, int] = (1, 4),
    difficult: float = 0.25,
    edges: bool = True,
    scale: tuple[float, float] = (0.15, 0.6),
) -> Voc:
    """`n` images of `size` (w, h) under `root` (its list test.txt, its label list label_list.txt) with objects
    of the first `use` classes (all by default: the others have no ground truth), each side a `scale` fraction
    of the image's; image i in `empty` has none. `edges`: some boxes cross the border or have no area."""
    import cv2
    import numpy as np

    rng = random.Random(seed)
    classes = list(classes or VOC_CLASSES)
    pool = classes[: use or len(classes)]
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    w, h = size
    names, lines = [], []
    for i in range(n):
        name = f"{2008 + i:06d}"
        yy, xx = np.mgrid[0:h, 0:w]
        canvas = np.stack([(xx * 255 // w), (yy * 255 // h), np.full_like(xx, (90 + 40 * i) % 256)], -1)
        canvas = canvas.astype(np.uint8)
        objs: list[tuple[str, int, list[float]]] = []
        for _ in range(0 if i in empty else rng.randint(*objects)):
            bw, bh = rng.uniform(*scale) * w, rng.uniform(*scale) * h
            x1, y1 = rng.uniform(-0.1 * w if edges else 0, w - bw), rng.uniform(-0.1 * h if edges else 0, h - bh)
            box = [round(x1, 1), round(y1, 1), round(x1 + bw, 1), round(y1 + bh, 1)]
            if edges and rng.random() < 0.1:
                box = [box[0], box[1], box[0], box[3]]  # no area: ppdet drops it
            hard = int(rng.random() < difficult)
            objs.append((rng.choice(pool), hard, box))
            colour = tuple(rng.randrange(256) for _ in range(3))
            cv2.rectangle(canvas, (int(max(box[0], 0)), int(max(box[1], 0))), (int(box[2]), int(box[3])), colour, -1)
        ok, jpg = cv2.imencode(".jpg", canvas[:, :, ::-1].copy())
        assert ok
        (root / "JPEGImages" / f"{name}.jpg").write_bytes(jpg.tobytes())
        (root / "Annotations" / f"{name}.xml").write_text(_xml(name, w, h, objs, difficult_tag=i % 2 == 0))
        names.append(name)
        lines.append(f"JPEGImages/{name}.jpg Annotations/{name}.xml")
    (root / "test.txt").write_text("\n".join(lines) + "\n")
    (root / "label_list.txt").write_text("\n".join(classes) + "\n")
    return Voc(root, root / "test.txt", root / "label_list.txt", names, classes)


def synthetic_mot(
    folder: Path,
    names: tuple[str, ...] = ("MOT16-02", "MOT16-04"),
    frames: int = 4,
    size: tuple[int, int] = (320, 240),
    people: int = 3,
    seed: int = 0,
) -> list[Path]:
    """Sequences `names` of `frames` frames each under `folder` (see the module's docstring); returns the frames.
    Person k of a sequence has id k + 1; every third sequence row past the first gets one extra row of each
    kind the metric must leave out or ignore."""
    import cv2
    import numpy as np

    rng = random.Random(seed)
    w, h = size
    written = []
    for s, name in enumerate(names):
        seq = folder / name
        (seq / "img1").mkdir(parents=True, exist_ok=True)
        (seq / "gt").mkdir(parents=True, exist_ok=True)
        walk = []
        for _ in range(people):
            bw, bh = rng.uniform(0.12, 0.2) * w, rng.uniform(0.35, 0.5) * h
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            walk.append(
                (x, y, bw, bh, rng.uniform(-6, 6), rng.uniform(-3, 3), tuple(rng.randrange(256) for _ in "rgb"))
            )
        rows = []
        for f in range(1, frames + 1):
            yy, xx = np.mgrid[0:h, 0:w]
            canvas = np.stack([(xx * 200 // w), (yy * 200 // h), np.full_like(xx, (60 + 50 * s) % 256)], -1)
            canvas = canvas.astype(np.uint8)
            for k, (x, y, bw, bh, dx, dy, colour) in enumerate(walk):
                bx, by = round(x + dx * f, 1), round(y + dy * f, 1)
                cv2.rectangle(canvas, (int(bx), int(by)), (int(bx + bw), int(by + bh)), colour, -1)
                rows.append(f"{f},{k + 1},{bx},{by},{round(bw, 1)},{round(bh, 1)},1,1,{round(rng.uniform(0.3, 1), 2)}")
            if f % 3 == 2:  # left out (mark 0), a static person (ignored), an ignore region (visibility -1)
                rows.append(f"{f},{people + 1},5,5,20,40,0,1,1")
                rows.append(f"{f},{people + 2},{w - 40},10,30,60,1,7,0.5")
                rows.append(f"{f},{people + 3},10,{h - 70},25,60,1,1,-1")
            ok, jpg = cv2.imencode(".jpg", canvas[:, :, ::-1].copy())
            assert ok
            path = seq / "img1" / f"{f:06d}.jpg"
            path.write_bytes(jpg.tobytes())
            written.append(path)
        (seq / "gt" / "gt.txt").write_text("\n".join(rows) + "\n")
        (seq / "seqinfo.ini").write_text(
            f"[Sequence]\nname={name}\nimDir=img1\nframeRate=30\nseqLength={frames}\n"
            f"imWidth={w}\nimHeight={h}\nimExt=.jpg\n"
        )
    return written


# ---- a zoo dataset, laid out by its layout -------------------------------------------------------------------


def _coco_set(ds: Dataset, root: Path, n: int) -> list[Path]:
    data = synthetic_coco(root, n, cats=categories(ds.classes), image_dir=ds.image_dir)
    _write_json(root / ds.annotation_file, data)
    return [root / ds.image_dir / img["file_name"] for img in data["images"]]


def _keypoint_set(ds: Dataset, root: Path, n: int) -> list[Path]:
    data = keypoint_dataset(n, size=(320, 240))
    _write_json(root / ds.annotation_file, data)
    return keypoint_images(data, root / ds.image_dir)


def _voc_set(ds: Dataset, root: Path, n: int) -> list[Path]:
    """The VOC set under the image_dir (the eval list's paths are relative to it), its eval list and label list
    moved to where the zoo file names them (relative to the root)."""
    classes = ds.classes if isinstance(ds.classes, list) else None
    if classes is None and ds.num_classes not in (None, len(VOC_CLASSES)):
        classes = [f"class{i}" for i in range(1, (ds.num_classes or 0) + 1)]
    voc = synthetic_voc(root / ds.image_dir, n, size=(320, 240), classes=classes, edges=False, difficult=0.1)
    for made, want in ((voc.eval_list, root / ds.annotation_file), (voc.label_list, root / ds.files["label_list"])):
        if made.resolve() != want.resolve():
            want.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(made, want)
    return [voc.root / "JPEGImages" / f"{name}.jpg" for name in voc.names]


def _mot_set(ds: Dataset, root: Path, n: int) -> list[Path]:
    """Two MOT16-named sequences (ignore regions apply) of n // 2 frames each (one of n frames when n < 4)."""
    names = ("MOT16-02", "MOT16-04") if n >= 4 else ("MOT16-02",)
    return synthetic_mot(root / ds.image_dir, names, frames=max(n // len(names), 1))


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


# layout -> (dataset, root, n images) -> the images written (what calibrates a model's random weights)
WRITERS: dict[str, Callable[[Dataset, Path, int], list[Path]]] = {
    "coco": _coco_set,
    "coco-keypoints": _keypoint_set,
    "voc": _voc_set,
    "mot": _mot_set,
}


def write(ds: Dataset, root: Path, n: int) -> list[Path]:
    """A synthetic set of `n` images for dataset `ds`, laid out under `root` as the zoo file says (image_dir,
    annotation_file, files); returns its images. A layout without a maker is an error naming the table."""
    maker = WRITERS.get(ds.layout)
    if maker is None:
        raise ValueError(f"no synthetic maker for layout {ds.layout!r} (dataset {ds.name}): add one to WRITERS")
    return maker(ds, root, n)
