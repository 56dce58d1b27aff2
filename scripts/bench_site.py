"""How long the nightly's whole-zoo report takes, as the user runs it, and how big its site gets over a year.

Result records for every model of zoos/paddledetection.yaml (measured values made up around the documented ones,
with a known story: see NEW, FIXED, STILL, BROKEN below; tests/test_browser.py, tests/test_changes.py and
tests/test_alerts.py read the same nights through `make`), a history of N nights with each night's environment.

- The whole command the nightly's merge job runs, timed as a process (median of 3, each into a fresh site and a
  fresh copy of the history): `harness report RUN --history H --html SITE --outputs OUT` (the view, report.md,
  JUnit, CSV, both plots, the history written back, every page). Target: ≤ 10 s for 355 models × 30 nights on
  these 2 cores; the load average is recorded with it.
- `--year`: 365 nights built one after the other into one site, as a year of nightly runs (`--keep` nights of
  record pages, every night's summary), each model with an 80-line worker log; the site's size by part.
  Target: under 300 MB.

    python scripts/bench_site.py [--nights 30] [--year] [--out reports/bench-site.md]   (prints; --out writes)

It never writes outside a temporary directory unless `--out` names a file. scripts/demo_site.py leaves the
30-night site on disk to look at.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from harness.publish import site
from harness.records import history, results
from harness.zoo.manifest import load_zoo

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 10.0
TARGET_MB = 300.0
START = date(2026, 10, 1)  # the first made-up night
NORMAL = statistics.NormalDist()


def timing(fps: float) -> dict:
    lat = {
        "mean": 1000 / fps,
        "p50": 1000 / fps,
        "p90": 1100 / fps,
        "p99": 1200 / fps,
        "min": 900 / fps,
        "max": 1300 / fps,
    }
    return {
        "backend": "dygraph",
        "fps": fps,
        "device": "gpu",
        "device_name": "a GPU",
        "sample_ids": list(range(50)),
        "backends": {
            "dygraph": {
                "fps": fps,
                "iterations": 50,
                "seconds": 50 / fps,
                "latency_ms": {"end_to_end": lat},
                "config": {"precision": "fp32"},
                "peak_memory": {"kind": "gpu allocator peak", "mb": 1000.0},
            }
        },
    }


# The story the made-up nights tell (tests/test_browser.py and tests/test_alerts.py read it): every model passes
# within noise, except a model that fails tonight for the first time, just as PaddleDetection's commit moved (NEW);
# one whose checkpoint is truncated tonight (BROKEN: pass -> error); one that failed three nights and passes
# tonight (FIXED); one that errors in the weights stage for the last five nights (STILL); some that never pass (a
# documented value off by a point); and some noisy ones that sometimes step without any change. Every model has
# its own speed, with night-to-night noise of 2 % (6 % for a noisy few): no model slows down for real.
NEW, FIXED, STILL, BROKEN = 10, 20, 30, 40
COMMITS = ["666f597fd00d3157e84dd9fb2dd3f40bf9918ebc", "1f2e3d4c5b6a79881726354453627180a9b8c7d6"]


def _measured(i: int, night: int, nights: int, doc: float, rng: random.Random) -> float | None:
    """A model's value in a night (None: an error), as the story above says."""
    last = night == nights - 1
    if i == NEW:
        return doc - 1.5 if last else doc
    if i == FIXED:
        return doc - 1.0 if nights - 4 <= night < nights - 1 else doc
    if i == STILL and night >= nights - 5:
        return None
    if i == BROKEN and last:
        return None
    if i % 29 == 7:  # never passes
        return round(doc - 1.0 + rng.gauss(0, 0.05), 2)
    sigma = 0.12 if i % 13 == 5 else 0.05  # noisy models step now and then under the same environment
    return round(doc + rng.gauss(0, sigma), 2)


def records(models, night: int, rng: random.Random, nights: int = 30) -> list[dict]:
    out = []
    day = (START + timedelta(days=night)).isoformat()
    commit = COMMITS[night == nights - 1]
    clock = 3600.0  # each model's start, seconds after midnight: one after the other on one GPU
    for i, m in enumerate(models):
        documented = dict(m.documented())
        wall = 40 + (i * 37) % 300
        started, clock = clock, clock + wall
        rec = {
            "model": m.name,
            "run_id": f"night-{night:03d}",
            "zoo_index": i,
            "started": f"{day}T{_hms(started)}+00:00",
            "finished": f"{day}T{_hms(clock)}+00:00",
            "stack": "current",
            "device": "gpu",
            "device_name": "NVIDIA H200",
            "paddle": "3.3.1" if night < nights // 2 else "3.3.2",
            "harness": "0.9.0",
            "ppdet": {
                "origin": "https://github.com/PaddlePaddle/PaddleDetection",
                "commit": commit,
                "tree": commit[::-1],
            },
            "dataset": {"name": "coco-val2017", "num_images": 5000, "annotations_sha256": "c0" * 32},
            "documented": documented,
            "table": {"name": m.table or "zoo"},
            "architecture": m.architecture,
            "durations": {"total": float(wall)},
        }
        values = {name: _measured(i, night, nights, doc, rng) for name, doc in documented.items()}
        if any(v is None for v in values.values()):
            rec.update(status="error", error={"stage": "weights", "message": "checkpoint truncated"})
            out.append(rec)
            continue
        status, metrics = "pass", {}
        for name, doc in documented.items():
            value = values[name]
            assert value is not None
            ok = abs(value - doc) <= 0.3 + 1e-9
            status = status if ok else "fail"
            metrics[name] = {
                "metric": name,
                "measured": value,
                "documented": doc,
                "tolerance": 0.3,
                "delta": round(value - doc, 2),
                "status": "pass" if ok else "fail",
                "reason": f"measured {value:.2f} vs documented {doc} ± 0.3",
            }
        rec.update(status=status, metrics=metrics, timing=timing(fps(i, rng)))
        out.append(rec)
    return out


def fps(i: int, rng: random.Random) -> float:
    """Model i's speed in a night: its own level (2 to 98 images/s) with normal noise of 2 % (6 % for every 17th
    model). One draw of the story's generator, as the AP values expect."""
    level = 2.0 + (i * 7919) % 97
    z = NORMAL.inv_cdf(min(max(rng.random(), 1e-9), 1 - 1e-9))
    return round(level * (1 + z * (0.06 if i % 17 == 3 else 0.02)), 3)


def _hms(seconds: float) -> str:
    s = int(seconds) % 86400
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def run_record(zoo_path: Path, night: int, models: list[str]) -> results.RunRecord:
    """A night's run.json: what the history keeps of the machine and the harness."""
    return results.RunRecord(
        run_id=f"night-{night:03d}",
        zoo=str(zoo_path),
        zoo_sha256="5a" * 32,
        harness="0.9.0",
        harness_git_sha="ab12" * 10 if night < 27 else "cd34" * 10,
        environment=results.Environment(paddle="paddlepaddle-gpu 3.3.1", driver="550.54.15", cuda="12.4"),
        models=models,
        started=f"{(START + timedelta(days=night)).isoformat()}T01:00:00+00:00",
    )


def make(root: Path, nights: int = 30, models: int | None = None) -> tuple[list[results.Result], Path, Path]:
    """The nights of the story above for the zoo's first `models` models (default all): tonight's records, its
    run directory (with run.json) and the history of every night."""
    zoo_path = REPO / "zoos" / "paddledetection.yaml"
    zoo, _ = load_zoo(zoo_path)
    chosen = zoo.models[:models] if models else zoo.models
    rng = random.Random(0)
    hist = root / "history.jsonl"
    lines: list[history.HistoryEntry] = []
    for night in range(nights):
        recs = [results.Result.parse(r, f"night {night}") for r in records(chosen, night, rng, nights)]
        meta = run_record(zoo_path, night, [m.name for m in chosen])
        lines += [history.entry(r, meta) for r in recs]
    hist.write_text("".join(e.model_dump_json() + "\n" for e in lines))
    last = root / "run"
    for rec in recs:
        results.write(last, rec)
    (last / results.RUN).write_text(meta.model_dump_json())
    return results.read([last]), last, hist


LOG = "".join(
    f"[12/08 01:{i // 60:02d}:{i % 60:02d}] ppdet.engine INFO: Eval iter: {i * 50}, fps: 21.7\n" for i in range(80)
)


def command(root: Path, run: Path, hist: Path, i: int) -> float:
    """The nightly merge job's whole command, timed as a process: a fresh site and a copy of the history."""
    copy = root / f"history-{i}.jsonl"
    shutil.copyfile(hist, copy)
    argv = [sys.executable, "-m", "harness", "report", str(run), "--history", str(copy)]
    argv += ["--html", str(root / f"site-{i}"), "--outputs", str(root / f"out-{i}")]
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def sizes(out: Path) -> dict[str, tuple[int, int]]:
    """(files, bytes) of each part of a site: its folders, and its top-level files together."""
    parts: dict[str, tuple[int, int]] = {}
    for p in out.rglob("*"):
        if p.is_file():
            rel = p.relative_to(out).parts
            part = f"{rel[0]}/" if len(rel) > 1 else "top-level files"
            n, b = parts.get(part, (0, 0))
            parts[part] = (n + 1, b + p.stat().st_size)
    return dict(sorted(parts.items()))


def year(root: Path, nights: int, keep: int) -> tuple[dict[str, tuple[int, int]], float]:
    """`nights` nights of the whole zoo built one after the other into one site; its parts' sizes, and the
    seconds it took."""
    zoo_path = REPO / "zoos" / "paddledetection.yaml"
    zoo, _ = load_zoo(zoo_path)
    rng = random.Random(0)
    lines: list[history.HistoryEntry] = []
    run = root / "year-run"  # one run directory of logs: each night's records are written into it
    t0 = time.perf_counter()
    for night in range(nights):
        recs = [results.Result.parse(r, f"night {night}") for r in records(zoo.models, night, rng, nights)]
        for rec in recs if night == 0 else ():  # a result and a worker log per model, read for the log's tail
            results.write(run, rec)
            (run / rec.model / "worker.log").write_text(LOG)
        meta = run_record(zoo_path, night, [m.name for m in zoo.models])
        site.build(recs, root / "year-site", history=lines, run_dirs=[run], keep=keep)
        lines = history.merge(lines, recs, {meta.run_id: meta})
        if night % 30 == 29:
            print(f"night {night + 1}/{nights}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return sizes(root / "year-site"), time.perf_counter() - t0


def _table(parts: dict[str, tuple[int, int]]) -> str:
    rows = [f"| `{k}` | {n} | {b / 1e6:.2f} MB |" for k, (n, b) in parts.items()]
    total = sum(b for _, b in parts.values())
    rows.append(f"| **all** | {sum(n for n, _ in parts.values())} | **{total / 1e6:.1f} MB** |")
    return "| part | files | size |\n|---|---:|---:|\n" + "\n".join(rows) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nights", type=int, default=30)
    ap.add_argument("--runs", type=int, default=3, help="timed runs of the whole command (default 3)")
    ap.add_argument("--year", action="store_true", help="also build 365 nights into one site and measure its size")
    ap.add_argument("--keep", type=int, default=site.KEEP, help="nights of record pages the year's site keeps")
    ap.add_argument("--out", type=Path, help="write the report to this file (default: print it only)")
    args = ap.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tonight, last, hist = make(root, args.nights)
        lines = len(hist.read_text().splitlines())
        load = [os.getloadavg()[0]]
        times = []
        for i in range(args.runs):
            times.append(command(root, last, hist, i))
            load.append(os.getloadavg()[0])
        median = statistics.median(times)
        ok = median <= TARGET_S
        text = (
            "# Benchmark: the nightly's whole-zoo report (`harness report --history --html --outputs`)\n\n"
            f"`python scripts/bench_site.py --nights {args.nights}{' --year' if args.year else ''}`: "
            f"{len(tonight)} models of zoos/paddledetection.yaml, {args.nights} nights of history ({lines} lines). "
            "The whole command as the nightly's merge job runs it, timed as a process, each run into a fresh site "
            f"and a fresh copy of the history; 2 CPU cores; load average (1 min) {min(load):.2f}–{max(load):.2f} "
            "while it ran.\n\n"
            "| what | value |\n|---|---|\n"
            f"| `harness report RUN --history H --html SITE --outputs OUT`, median of {args.runs} | "
            f"{median:.2f} s ({', '.join(f'{t:.2f}' for t in times)}) |\n"
            f"| target | ≤ {TARGET_S:.0f} s: {'met' if ok else 'NOT met'} |\n"
            f"\nThe site of that night:\n\n{_table(sizes(root / 'site-0'))}"
        )
        if args.year:
            parts, seconds = year(root, 365, args.keep)
            total = sum(b for _, b in parts.values()) / 1e6
            ok = ok and total < TARGET_MB
            text += (
                f"\n## A year: 365 nights of {len(tonight)} models in one site (`--keep-nights {args.keep}`)\n\n"
                "Each night built into the site of the night before (the view and every page; each model with an "
                f"80-line worker log), {seconds / 60:.0f} min in all. Target: under {TARGET_MB:.0f} MB: "
                f"{'met' if total < TARGET_MB else 'NOT met'}.\n\n{_table(parts)}"
            )
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
