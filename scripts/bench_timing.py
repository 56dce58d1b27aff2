"""Benchmark of the fps method itself: is it repeatable, and what does the harness add?

1. Repeatability: `harness bench` run N times (separate processes) on the CPU for the Faster model at a small
   size; the coefficient of variation of the runs' median end-to-end latency. Target: CV ≤ 3 %.
2. Overhead: the harness's timing loop (sync + clock reads + bookkeeping around each stage) against a bare
   loop of the same preprocess / forward / postprocess calls, alternated in one process. Target ≤ 2 %.

Needs the rehearsal (scripts/rehearse.sh) for its zoo, cache and specs; its server may be down:

    .venv-current/bin/python scripts/bench_timing.py [--runs 3] [--out reports/bench-timing.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FASTER = "faster_rcnn_res2net50_vb_26w_4s_fpn_1x_coco"


def repeatability(args, zoo: Path, env: dict) -> list[dict]:
    runs = []
    for i in range(args.runs):
        out = Path(args.tmp) / f"bench-{i}"
        cmd = [
            sys.executable,
            "-m",
            "harness",
            "bench",
            FASTER,
            "--zoo",
            str(zoo),
            "--locked",
            "--device",
            "cpu",
            "--backend",
            "dygraph",
            "--eval-size",
            str(args.size),
            "--warmup",
            "3",
            "--iters",
            str(args.iters),
            "--min-seconds",
            str(args.min_seconds),
            "--sample",
            "4",
            "--out",
            str(out),
            "--json",
            "-q",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            sys.exit(f"harness bench failed:\n{proc.stderr[-3000:]}")
        t = json.loads(proc.stdout)["backends"]["dygraph"]
        runs.append({"p50_ms": t["latency_ms"]["end_to_end"]["p50"], "fps": t["fps"], "iterations": t["iterations"]})
        print(f"run {i + 1}: p50 {runs[-1]['p50_ms']:.1f} ms, {t['iterations']} images", flush=True)
    return runs


def overhead(spec_path: Path, rounds: int, iters: int) -> dict:
    """Bare loop vs the harness loop over the same calls, alternated `rounds` times in this process."""
    spec = json.loads(spec_path.read_text())
    sys.path.insert(0, spec["ppdet_root"])
    from harness.model import backends, weights
    from harness.model.model_build import build_model
    from harness.model.timing import Method, run

    cfg, model, _, _, _ = build_model(Path(spec["config"]), short=spec.get("eval_short"), square=spec.get("input_size"))
    weights.load(model, Path(spec["weights"]), None)
    from ppdet.data.source.category import get_categories

    clsid2catid, _ = get_categories("COCO", spec["annotations"])
    method = Method(warmup=3, min_iters=iters, min_seconds=0, sample=4)
    items = backends.sample_images(Path(spec["annotations"]), Path(spec["images"]), method)
    pipe = backends.dygraph(model, backends.preprocessor(cfg), clsid2catid)
    dev = backends.Device("cpu")
    bare, harness = [], []
    for _ in range(rounds):
        for i in range(method.warmup):
            pipe.post(pipe.model(pipe.pre(items[i % len(items)])), items[i % len(items)])
        t0 = time.perf_counter()
        for i in range(iters):
            item = items[i % len(items)]
            pipe.post(pipe.model(pipe.pre(item)), item)
        bare.append((time.perf_counter() - t0) / iters)
        t0 = time.perf_counter()
        run(items, pipe, method, sync=dev.sync, between=dev.sample)
        harness.append((time.perf_counter() - t0) / (iters + method.warmup))
    b, h = statistics.median(bare), statistics.median(harness)
    return {"bare_ms": b * 1000, "harness_ms": h * 1000, "overhead": (h - b) / b, "rounds": rounds, "iters": iters}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--min-seconds", type=float, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rehearsal", type=Path, default=REPO / "rehearsal")
    ap.add_argument("--tmp", default="/tmp/harness-bench-timing")
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "bench-timing.md")
    args = ap.parse_args()
    zoo = args.rehearsal / "zoo.yaml"
    specs = sorted(args.rehearsal.glob(f"runs/*/{FASTER}/spec.json"))
    if not zoo.is_file() or not specs:
        sys.exit("run scripts/rehearse.sh first (this needs its zoo, cache and a verify run)")
    threads = os.environ.get("OMP_NUM_THREADS") or str(os.cpu_count())
    env = {**os.environ, "HARNESS_CACHE": str(args.rehearsal / "cache"), "OMP_NUM_THREADS": threads}
    os.environ["OMP_NUM_THREADS"] = threads  # before paddle is imported below

    runs = repeatability(args, zoo, env)
    p50s = [r["p50_ms"] for r in runs]
    cv = statistics.stdev(p50s) / statistics.fmean(p50s) if len(p50s) > 1 else 0.0
    ov = overhead(specs[-1], args.rounds, args.iters)

    text = [
        "# Timing method: repeatability and overhead",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `scripts/bench_timing.py`: {platform.machine()}, "
        f"{os.cpu_count()} cores, {threads} threads, Python {platform.python_version()}, stack "
        f"{os.environ.get('HARNESS_STACK', 'current')}; {FASTER} (rehearsal weights: random, batch-norm "
        f"calibrated) on the dygraph backend, CPU, {args.size} px, 4 distinct synthetic images.",
        "",
        f"## Repeatability: {args.runs} × `harness bench` (each ≥ {args.iters} images and ≥ {args.min_seconds:g} s)",
        "",
        "| run | median end-to-end latency | fps | timed images |",
        "|---|---|---|---|",
        *[f"| {i + 1} | {r['p50_ms']:.1f} ms | {r['fps']:.3f} | {r['iterations']} |" for i, r in enumerate(runs)],
        "",
        f"Coefficient of variation of the median: **{cv:.2%}** (target ≤ 3 %).",
        "",
        "## Overhead of the harness's timing loop",
        "",
        f"Same preprocess / forward / postprocess calls, {ov['iters']} images per loop, {ov['rounds']} alternated "
        "rounds, medians:",
        "",
        "| loop | per image |",
        "|---|---|",
        f"| bare loop (no sync, no clock reads, no bookkeeping) | {ov['bare_ms']:.2f} ms |",
        f"| harness `timing.run` (incl. its warm-up) | {ov['harness_ms']:.2f} ms |",
        "",
        f"Overhead: **{ov['overhead']:+.2%}** (target ≤ 2 %).",
        "",
    ]
    args.out.write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
