"""How long `harness report --html` takes for the whole zoo, and how big the site gets.

Result records for every model of zoos/paddledetection.yaml (measured values made up around the documented ones,
with a known story: see NEW, FIXED, STILL below; tests/test_browser.py and tests/test_changes.py read the same
nights through `make`), a history of N nights with each night's environment, then `site.build` timed (median of
3) and the site's bytes counted. Target: the whole zoo with 30 nights of history in under 10 s on these 2 cores.

    python scripts/bench_site.py [--nights 30] [--out reports/bench-site.md]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from harness.publish import site
from harness.records import history, results
from harness.zoo.manifest import load_zoo

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 10.0
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
    day = f"2026-{10 + night // 28:02d}-{1 + night % 28:02d}"
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
        started=f"2026-10-{1 + night % 28:02d}T01:00:00+00:00",
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nights", type=int, default=30)
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "bench-site.md")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tonight, last, hist = make(root, args.nights)
        past = history.load(hist)
        times = []
        for i in range(3):
            t0 = time.perf_counter()
            site.build(tonight, root / f"site{i}", history=past, run_dirs=[last])
            times.append(time.perf_counter() - t0)
        files = [p for p in (root / "site0").rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        index = (root / "site0" / "index.html").stat().st_size
    median = statistics.median(times)
    text = (
        "# Benchmark: the web page of the whole zoo (`harness report --html`)\n\n"
        f"`python scripts/bench_site.py --nights {args.nights}`: {len(tonight)} models of "
        f"zoos/paddledetection.yaml, {args.nights} nights of history ({len(past)} history lines), one page per "
        "model with its trend charts and what changed, the overview (tonight's summary, the model × night grid), "
        "nights.html and the night's own overview, built 3 times into fresh directories (2 CPU cores shared with "
        "other jobs).\n\n"
        "| what | value |\n|---|---|\n"
        f"| build time, median of 3 | {median:.2f} s ({', '.join(f'{t:.2f}' for t in times)}) |\n"
        f"| target | < {TARGET_S:.0f} s: {'met' if median < TARGET_S else 'NOT met'} |\n"
        f"| files written | {len(files)} |\n"
        f"| site size | {size / 1e6:.1f} MB (index.html {index / 1e3:.0f} kB) |\n"
    )
    args.out.write_text(text)
    print(text)
    return 0 if median < TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
