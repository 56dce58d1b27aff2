"""Benchmark: the harness's scorer (faster-coco-eval) against pycocotools on a val2017-sized set.

A synthetic set the size of COCO val2017: 5000 images, ~7 objects each with polygon masks, and 100
detections per image with RLE masks (perturbed copies of the ground truth plus random false positives),
scored by both scorers in the same run, bbox and segm. Reported: the time of each (load + evaluate +
accumulate + summarize), the speed-up, and the largest difference over the 12 stats.
Targets: ≥ 3.5× faster, difference ≤ 1e-9.

    .venv-current/bin/python scripts/bench_scoring.py [--images 5000] [--out reports/bench-scoring.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from harness.score.scoring import STATS, scorer
from harness.zoo.kinds import by_file

REPO = Path(__file__).resolve().parents[1]
W, H = 480, 360


def polygon(rng: random.Random, cx: float, cy: float, rx: float, ry: float) -> list[float]:
    angles = sorted(rng.uniform(0, 2 * np.pi) for _ in range(8))
    pts = [(min(max(cx + rx * np.cos(a), 0), W - 1), min(max(cy + ry * np.sin(a), 0), H - 1)) for a in angles]
    return [round(v, 1) for p in pts for v in p]


def make(n_images: int, seed: int = 0) -> tuple[dict, list[dict], list[dict]]:
    rng = random.Random(seed)
    images, anns, bbox, segm = [], [], [], []
    for img_id in range(1, n_images + 1):
        images.append({"id": img_id, "file_name": f"{img_id:012d}.jpg", "width": W, "height": H})
        objects = []
        for _ in range(rng.randint(4, 10)):  # ~7 on average
            r = rng.choice([(8, 6), (25, 20), (80, 60)])
            objects.append((rng.randint(1, 80), rng.uniform(60, W - 60), rng.uniform(50, H - 50), *r))
        for cat, cx, cy, rx, ry in objects:
            poly = polygon(rng, cx, cy, rx, ry)
            rle = mask_utils.merge(mask_utils.frPyObjects([poly], H, W))
            x, y, w, h = mask_utils.toBbox(rle).tolist()
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img_id,
                    "category_id": cat,
                    "segmentation": [poly],
                    "area": float(mask_utils.area(rle)),
                    "bbox": [x, y, w, h],
                    "iscrowd": 0,
                }
            )
        for k in range(100):
            if k < len(objects) * 2:  # near misses and hits of the real objects
                cat, cx, cy, rx, ry = objects[k % len(objects)]
                cx, cy = cx + rng.gauss(0, rx * 0.06), cy + rng.gauss(0, ry * 0.06)
                rx, ry = rx * rng.uniform(0.9, 1.1), ry * rng.uniform(0.9, 1.1)
                if rng.random() < 0.2:
                    cat = rng.randint(1, 80)
            else:
                cat, cx, cy = rng.randint(1, 80), rng.uniform(20, W - 20), rng.uniform(20, H - 20)
                rx, ry = rng.uniform(5, 60), rng.uniform(5, 50)
            rle = mask_utils.merge(mask_utils.frPyObjects([polygon(rng, cx, cy, rx, ry)], H, W))
            score = round(rng.random(), 5)
            x, y, w, h = mask_utils.toBbox(rle).tolist()
            bbox.append({"image_id": img_id, "category_id": cat, "bbox": [x, y, w, h], "score": score})
            segm.append(
                {
                    "image_id": img_id,
                    "category_id": cat,
                    "score": score,
                    "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                }
            )
    gt = {
        "info": {"description": "synthetic val2017-sized set"},
        "images": images,
        "annotations": anns,
        "categories": [{"id": c, "name": f"c{c}"} for c in range(1, 81)],
    }
    return gt, bbox, segm


def run(name: str, ann: Path, files: dict[str, Path]) -> tuple[float, dict]:
    using = scorer(name)
    assert using.name == name, f"{name} is not installed here"
    t0 = time.perf_counter()
    gt = using.load(ann)
    stats = {}
    for kind, path in files.items():
        iou = by_file(kind).stats_key  # bbox.json, mask.json: known kinds
        dt = using.results(gt, json.loads(path.read_text()))
        stats[iou] = using.stats(gt, dt, iou)
    return time.perf_counter() - t0, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "bench-scoring.md")
    args = ap.parse_args()
    t0 = time.perf_counter()
    gt, bbox, segm = make(args.images)
    made = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        ann, fb, fs = Path(tmp) / "instances.json", Path(tmp) / "bbox.json", Path(tmp) / "mask.json"
        ann.write_text(json.dumps(gt))
        fb.write_text(json.dumps(bbox))
        fs.write_text(json.dumps(segm))
        files = {"bbox": fb, "mask": fs}
        print(
            f"made {args.images} images, {len(gt['annotations'])} objects, {len(bbox)} detections in {made:.0f} s",
            flush=True,
        )
        t_ref, s_ref = run("pycocotools", ann, files)
        print(f"pycocotools: {t_ref:.1f} s", flush=True)
        t_new, s_new = run("faster-coco-eval", ann, files)
        print(f"faster-coco-eval: {t_new:.1f} s", flush=True)
        sizes = {k: os.path.getsize(p) / 1e6 for k, p in files.items()}
    diff = {iou: max(abs(a - b) for a, b in zip(s_ref[iou], s_new[iou], strict=True)) for iou in s_ref}
    rows = [f"| {iou} | " + " | ".join(f"{v:.4f}" for v in s_ref[iou]) + " |" for iou in s_ref]
    text = [
        "# Scoring: faster-coco-eval vs pycocotools",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `scripts/bench_scoring.py`: {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"stack {os.environ.get('HARNESS_STACK', 'current')}, "
        f"{scorer('faster-coco-eval').describe()['name']} {scorer('faster-coco-eval').version}, pycocotools "
        f"{scorer('pycocotools').version}.",
        "",
        f"Synthetic val2017-sized set: {args.images} images ({W}×{H}), {len(gt['annotations'])} objects with polygon "
        f"masks, {len(bbox)} detections with RLE masks (bbox.json {sizes['bbox']:.0f} MB, mask.json "
        f"{sizes['mask']:.0f} MB). Time = load ground truth + load results + evaluate + accumulate + summarize, "
        "bbox and segm together, in one process each, one after the other.",
        "",
        "| scorer | time |",
        "|---|---|",
        f"| pycocotools | {t_ref:.1f} s |",
        f"| faster-coco-eval | {t_new:.1f} s |",
        "",
        f"Speed-up: **{t_ref / t_new:.2f}×** (target ≥ 3.5×). Largest difference over the 12 stats: bbox "
        f"**{diff['bbox']:.1e}**, segm **{diff['segm']:.1e}** (target ≤ 1e-9).",
        "",
        "| stats (pycocotools) | " + " | ".join(STATS) + " |",
        "|---|" + "---|" * len(STATS),
        *rows,
        "",
    ]
    args.out.write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
