"""Benchmark: what `harness verify` costs on top of PaddleDetection's own `tools/eval.py`.

Same PaddleDetection tree, config, weights, images and eval size: `harness verify --no-timing` (the whole
command: fetch from the warm cache, dataset check, worker with the strict weight check and ppdet's eval,
scoring, verdict, result) against `python tools/eval.py -c <overlay>` (ppdet's eval and its pycocotools
scoring), alternated, wall time of each process. Target: median ratio ≤ 1.02.

Needs a rehearsal with 8 images (made if missing, ~3 min):

    .venv-current/bin/python scripts/bench_eval.py [--pairs 5] [--out reports/bench-eval.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
FASTER = "faster_rcnn_res2net50_vb_26w_4s_fpn_1x_coco"
SIZE = [320, 533]


def ensure_rehearsal(work: Path, images: int) -> dict:
    specs = sorted(work.glob(f"runs/*/{FASTER}/spec.json"))
    if not specs:
        subprocess.run(
            [sys.executable, "-m", "harness", "rehearse", "--dir", str(work), "--images", str(images), "--port", "0"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        specs = sorted(work.glob(f"runs/*/{FASTER}/spec.json"))
    return json.loads(specs[-1].read_text())


def overlay(spec: dict, path: Path) -> Path:
    """tools/eval.py's input: the real config, pointed at the same data and size as the harness's worker."""
    images, annotations = Path(spec["images"]), Path(spec["annotations"])
    root = Path(os.path.commonpath([images, annotations]))
    norm = {"is_scale": True, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    cfg = {
        "_BASE_": [spec["config"]],
        "use_gpu": False,
        "worker_num": 0,
        "weights": spec["weights"],
        "EvalDataset": {
            "name": "COCODataSet",
            "dataset_dir": str(root),
            "allow_empty": True,
            "image_dir": str(images.relative_to(root)),
            "anno_path": str(annotations.relative_to(root)),
        },
        "EvalReader": {
            "batch_size": 1,
            "sample_transforms": [
                {"Decode": {}},
                {"Resize": {"interp": 2, "target_size": SIZE, "keep_ratio": True}},
                {"NormalizeImage": norm},
                {"Permute": {}},
            ],
        },
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def timed(cmd: list[str], env: dict, cwd: Path | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode not in (0, 1):  # verify exits 1 on a fail verdict (random weights)
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--rehearsal", type=Path, default=REPO / "rehearsal8")
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "bench-eval.md")
    args = ap.parse_args()
    spec = ensure_rehearsal(args.rehearsal, args.images)
    threads = os.environ.get("OMP_NUM_THREADS") or str(os.cpu_count())
    env = {**os.environ, "HARNESS_CACHE": str(args.rehearsal / "cache"), "OMP_NUM_THREADS": threads}
    # Neither side writes bytecode (as in the containers CI runs in): tools/eval.py would otherwise write
    # __pycache__ into the pinned tree, which the harness then finds not intact and extracts again.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    tmp = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    cfg = overlay(spec, tmp / "overlay.yml")
    ppdet = [sys.executable, "tools/eval.py", "-c", str(cfg), "--output_eval", str(tmp / "ppdet-output")]
    ratios, ours, theirs = [], [], []
    breakdown = None
    for i in range(args.pairs):
        run = tmp / f"run-{i}"
        harness = [
            sys.executable,
            "-m",
            "harness",
            "verify",
            FASTER,
            "--zoo",
            str(args.rehearsal / "zoo.yaml"),
            "--locked",
            "--no-timing",
            "--device",
            "cpu",
            "--eval-size",
            str(SIZE[0]),
            "--out",
            str(run),
            "-q",
        ]
        pair = [("harness", harness, None), ("ppdet", ppdet, Path(spec["ppdet_root"]))]
        if i % 2:
            pair.reverse()  # alternate the order: neither gets the warmer page cache every time
        times = {name: timed(cmd, env, cwd) for name, cmd, cwd in pair}
        ours.append(times["harness"])
        theirs.append(times["ppdet"])
        ratios.append(times["harness"] / times["ppdet"])
        print(
            f"pair {i + 1}: harness {times['harness']:.2f} s, tools/eval.py {times['ppdet']:.2f} s, "
            f"ratio {ratios[-1]:.3f}",
            flush=True,
        )
        breakdown = json.loads((run / FASTER / "result.json").read_text())["durations"]
    med = statistics.median(ratios)
    stages = breakdown.get("worker_stages") or {}
    text = [
        "# Eval overhead: `harness verify` vs PaddleDetection's `tools/eval.py`",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `scripts/bench_eval.py`: {platform.machine()}, {os.cpu_count()} "
        f"cores, {threads} threads, Python {platform.python_version()}, "
        f"stack {os.environ.get('HARNESS_STACK', 'current')}; "
        f"{FASTER} (rehearsal weights), {args.images} synthetic images at {SIZE[0]} px, CPU. Both from the same "
        "PaddleDetection tree, config, weights and images; wall time of each whole process, alternated.",
        "",
        "| pair | harness verify --no-timing | tools/eval.py | ratio |",
        "|---|---|---|---|",
        *[
            f"| {i + 1} | {a:.2f} s | {b:.2f} s | {r:.3f} |"
            for i, (a, b, r) in enumerate(zip(ours, theirs, ratios, strict=True))
        ],
        "",
        f"Median ratio: **{med:.3f}** (target ≤ 1.02).",
        "",
        "Where the harness's time went in the last run (seconds): "
        + ", ".join(f"{k} {v}" for k, v in breakdown.items() if k != "worker_stages")
        + "; inside the worker: "
        + ", ".join(f"{k} {v}" for k, v in stages.items())
        + ".",
        "",
    ]
    args.out.write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
