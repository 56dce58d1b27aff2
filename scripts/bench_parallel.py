"""Benchmark: one model evaluated as two slices at once (`--parallel 2 --threads 1`) against one worker with
both cores (`--parallel 1 --threads 2`), on the CPU.

Faster R-CNN Res2Net (random weights, batch-norm calibrated so it emits real boxes), 16 synthetic images at
320 px, the mirror built like the rehearsal's and served on 127.0.0.1, the two commands alternated. Reported
per run: the wall time of the worker phase (`durations.worker`: from the first worker's start to the last
one's answer, start-up included, what a user waits for) and of the eval alone (the slowest slice's ppdet eval);
the median ratio of each; and whether the predictions are the same. Target: ≥ 1.3× faster, predictions
identical.

    .venv-current/bin/python scripts/bench_parallel.py [--pairs 3] [--images 16]
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

from harness.nightly.rehearsal import build_mirror, mirror_zoo, serve
from harness.zoo.manifest import load_zoo

REPO = Path(__file__).resolve().parents[1]
FASTER = "faster_rcnn_res2net50_vb_26w_4s_fpn_1x_coco"
MODES = {
    "parallel 1, threads 2": ["--parallel", "1", "--threads", "2"],
    "parallel 2, threads 1": ["--parallel", "2", "--threads", "1"],
}


def one(zoo: Path, out: Path, cache: Path, opts: list[str]) -> dict:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "verify",
            FASTER,
            "--zoo",
            str(zoo),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--eval-size",
            "320",
            "--no-timing",
            "--json",
            "-q",
            *opts,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HARNESS_CACHE": str(cache)},
    )
    if proc.returncode not in (0, 1):
        sys.exit(f"verify {' '.join(opts)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    rec = json.loads(proc.stdout)
    units = (rec.get("parallel") or {}).get("units") or [{"stages": rec["durations"]["worker_stages"]}]
    preds = {k: json.loads((out / FASTER / p).read_text()) for k, p in rec["predictions"].items()}
    return {
        "worker": rec["durations"]["worker"],
        "eval": max(u["stages"]["eval"] for u in units),
        "stats": rec["stats"],
        "preds": preds,
    }


def compare(a: dict, b: dict) -> str:
    """Identical, or how far apart: the largest score and box-coordinate difference of matched detections."""
    if a == b:
        return "identical"
    pa, pb = a["bbox"], b["bbox"]
    if len(pa) != len(pb):
        return f"{len(pa)} vs {len(pb)} detections"
    ds = max(abs(x["score"] - y["score"]) for x, y in zip(pa, pb, strict=True))
    dbox = max(abs(u - v) for x, y in zip(pa, pb, strict=True) for u, v in zip(x["bbox"], y["bbox"], strict=True))
    return f"same {len(pa)} detections, largest difference: score {ds:.2e}, box {dbox:.2e} px"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "harness-bench-parallel")
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "bench-parallel.md")
    args = ap.parse_args()
    zoo, _ = load_zoo(REPO / "zoo.yaml")
    zoo = zoo.model_copy(update={"models": [zoo.model(FASTER)]})
    stack, _ = zoo.source()
    args.work.mkdir(parents=True, exist_ok=True)
    mirror = build_mirror(args.work, zoo, stack, n_images=args.images)
    cache = args.work / "cache"
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    with serve(mirror, 0) as base:
        served = args.work / "zoo.yaml"
        served.write_text(yaml.safe_dump(mirror_zoo(zoo, stack, base, mirror), allow_unicode=True))
        one(served, args.work / "warm", cache, MODES["parallel 1, threads 2"])  # fetch + page cache, untimed
        for i in range(args.pairs):
            for mode in list(MODES) if i % 2 == 0 else list(reversed(MODES)):
                out = args.work / f"run-{i}-{list(MODES).index(mode)}"
                runs[mode].append(one(served, out, cache, MODES[mode]))
                print(
                    f"pair {i + 1}, {mode}: worker {runs[mode][-1]['worker']:.1f} s, "
                    f"eval {runs[mode][-1]['eval']:.1f} s",
                    flush=True,
                )
    single, sliced = (runs[m] for m in MODES)
    ratio_w = statistics.median(a["worker"] / b["worker"] for a, b in zip(single, sliced, strict=True))
    ratio_e = statistics.median(a["eval"] / b["eval"] for a, b in zip(single, sliced, strict=True))
    ref, par = runs["parallel 1, threads 2"][0], runs["parallel 2, threads 1"][0]
    same_stats = all(r["stats"] == ref["stats"] for m in MODES for r in runs[m])
    text = [
        "# Data-parallel eval of one model: `--parallel 2 --threads 1` vs `--parallel 1 --threads 2`",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `scripts/bench_parallel.py`: {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, stack {stack}; {FASTER} (random weights, "
        f"batch-norm calibrated), {args.images} synthetic images at 320 px, CPU, `--no-timing`, the two modes "
        f"alternated {args.pairs} times after one untimed warm-up run.",
        "",
        "| pair | mode | worker phase | eval (slowest slice) |",
        "|---|---|---|---|",
        *(
            f"| {i + 1} | {m} | {runs[m][i]['worker']:.1f} s | {runs[m][i]['eval']:.1f} s |"
            for i in range(args.pairs)
            for m in MODES
        ),
        "",
        f"Median speed-up of `--parallel 2 --threads 1`: worker phase **{ratio_w:.2f}×**, eval alone "
        f"**{ratio_e:.2f}×** (target ≥ 1.3×).",
        "",
        "Predictions, one worker with 2 threads vs two slices with 1 thread each: "
        f"{compare(ref['preds'], par['preds'])}. The 24 stats equal in every run: "
        f"**{'yes' if same_stats else 'no'}**. (With the same threads per "
        "worker the merged predictions are identical to one worker's, detection for detection: "
        "tests/test_parallel.py.)",
        "",
    ]
    args.out.write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
