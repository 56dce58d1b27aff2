"""A synthetic Pascal VOC eval set for tests, laid out as PaddleDetection's VOCDataSet reads it:

    ROOT/JPEGImages/<name>.jpg
    ROOT/Annotations/<name>.xml     size, objects (name, difficult, bndbox)
    ROOT/test.txt                   `JPEGImages/<name>.jpg Annotations/<name>.xml` a line
    ROOT/label_list.txt             a class name a line (the 20 VOC classes unless told otherwise)

Objects are drawn as filled rectangles so that a real model has something to look at; some are difficult,
some cross the image border (ppdet clips them), some have no area once clipped (ppdet drops them), and
`empty` images have no object at all (ppdet's eval leaves them out).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

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
    """`n` images of `size` (w, h) with objects of the first `use` classes (all by default: the others have no
    ground truth), each side a `scale` fraction of the image's; image i in `empty` has none. `edges`: some boxes
    cross the border or have no area."""
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
