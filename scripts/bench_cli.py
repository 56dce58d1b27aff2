"""Benchmark: start-up of `harness list`, `report` and `--help`, and a warm-cache `harness fetch`.

Targets: `harness list`, `report` and `--help` ≤ 0.5 s (paddle and ppdet are never imported there); a warm
fetch of every artifact of the rehearsal zoo a no-op costing milliseconds (≤ 0.2 s in total). Run after
`scripts/rehearse.sh` (it needs ./rehearsal):

    .venv-current/bin/python scripts/bench_cli.py [--runs 10] [--out reports/bench-cli.md]

The rehearsal's loopback server is down while this runs: the warm fetch must not need the network.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def wall(argv: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
    return elapsed


def in_process_warm_fetch(zoo_path: Path) -> tuple[float, int]:
    """Time of fetch_artifact over every artifact of the zoo, in this process (no interpreter start)."""
    from harness.fetch.artifacts import fetch, fetch_artifact
    from harness.zoo.lockfile import LockFile
    from harness.zoo.manifest import load_zoo

    zoo, path = load_zoo(zoo_path)
    lock = LockFile.beside(path)
    arts = [m.weights for m in zoo.models] + [zoo.dataset.images, zoo.dataset.annotations]
    sources = [s.archive_artifact() for s in zoo.sources.values()]  # pinned by their git tree, not zoo.lock
    t0 = time.perf_counter()
    for a in arts:
        assert not fetch_artifact(a, lock, locked=True).downloaded
    for a in sources:
        assert not fetch(a.url, sha256=a.sha256, size=a.size).downloaded
    return time.perf_counter() - t0, len(arts) + len(sources)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--rehearsal", type=Path, default=REPO / "rehearsal")
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "bench-cli.md")
    args = ap.parse_args()
    zoo = args.rehearsal / "zoo.yaml"
    if not zoo.is_file():
        sys.exit(f"{zoo} not found: run scripts/rehearse.sh first")
    env = {**os.environ, "HARNESS_CACHE": str(args.rehearsal / "cache")}
    os.environ["HARNESS_CACHE"] = env["HARNESS_CACHE"]
    harness = [sys.executable, "-m", "harness"]

    lists = [wall([*harness, "list"], env) for _ in range(args.runs)]
    runs = sorted(p for p in (args.rehearsal / "runs").iterdir() if (p / "run.json").exists())
    reports = [wall([*harness, "report", str(runs[-1])], env) for _ in range(args.runs)] if runs else []
    helps = [wall([*harness, "--help"], env) for _ in range(args.runs)]
    bare = [wall([sys.executable, "-c", "pass"], env) for _ in range(args.runs)]
    fetches = [
        wall([*harness, "fetch", "--zoo", str(zoo), "--dataset", "--locked", "--json"], env) for _ in range(args.runs)
    ]
    inproc = [in_process_warm_fetch(zoo) for _ in range(args.runs)]
    n_art = inproc[0][1]
    sizes = sum(
        p.stat().st_size
        for p in (args.rehearsal / "cache" / "downloads").rglob("*")
        if p.is_file() and p.suffix not in (".stamp", ".lock")
    )

    med = statistics.median
    rows = [
        ("`harness list` (process start to exit)", med(lists), "≤ 0.5 s"),
        *([("`harness report RUN_DIR` (3 results, markdown)", med(reports), "≤ 0.5 s")] if reports else []),
        ("`harness --help`", med(helps), "≤ 0.5 s"),
        ("bare `python -c pass` (interpreter floor)", med(bare), "—"),
        ("`harness fetch --dataset --locked` warm, whole command", med(fetches), "—"),
        (
            f"warm `fetch_artifact` × {n_art} artifacts ({sizes / 1e6:.0f} MB cached), in process",
            med(t for t, _ in inproc),
            "≤ 0.2 s",
        ),
    ]
    text = [
        "# CLI start-up and warm-cache fetch",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `scripts/bench_cli.py` ({args.runs} runs each, median), "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"stack {os.environ.get('HARNESS_STACK', 'current')}. The rehearsal's server was down: the warm "
        "fetch used no network.",
        "",
        "| what | median | target |",
        "|---|---|---|",
        *[f"| {what} | {secs * 1000:.1f} ms | {target} |" for what, secs, target in rows],
        "",
        "The whole warm `fetch` command includes interpreter start-up, imports (requests, tqdm), the dataset "
        "layout check (annotation json parsed, every image stat'ed) and printing; the in-process figure is "
        "the cache's own cost: a stamp read and a `stat()` per artifact, no hashing.",
        "",
    ]
    args.out.write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
