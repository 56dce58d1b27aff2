"""Benchmark: memory and time of reading a checkpoint with the harness's reader (harness/model/checkpoint.py).

The reader interprets the pickle itself, keeps each array's bytes once, builds every array once and hands it
to the model one at a time, releasing the bytes as it goes. Measured in fresh processes (ru_maxrss is a
lifetime peak), each on the rehearsal's real checkpoints (the models of the real configs, saved by paddle):

- `read`: `checkpoint.read` + every array built and kept (the worst case for the reader alone);
- `worker`: what the worker does: build the model from its config with ppdet, then `weights.load` (read,
  key/shape check, finiteness, exact casts, `set_value` into the model one tensor at a time); the peak is
  measured above the RSS of the built model;
- `pickle.load`: the same file with plain pickle (unsafe; the reference for speed and memory).

Target (issue #10): the peak of reading is at most ~1.2 x the file size on top of the model.

    .venv-current/bin/python scripts/bench_checkpoint.py [--out reports/bench-checkpoint.md]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROBE = textwrap.dedent("""
    import json, resource, sys, time
    from pathlib import Path

    def rss():
        return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) * 1024

    how, path = sys.argv[1], Path(sys.argv[2])
    if how == "worker":
        from harness.model import model_build, weights
        model_build.ppdet_on_path(Path(sys.argv[3]))
        _, model, _, _, _ = model_build.build_model(Path(sys.argv[4]))
    elif how == "read":
        from harness.model import checkpoint
    else:
        import pickle
        import numpy
    base = rss()
    t0 = time.perf_counter()
    if how == "worker":
        info = weights.load(model, path, None)
    elif how == "read":
        arrays = dict(checkpoint.read(path).arrays())
    else:
        with path.open("rb") as f:
            arrays = pickle.load(f)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"base": base, "peak": peak, "seconds": seconds}))
""")


def probe(how: str, weights: Path, *extra: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, how, str(weights), *extra], capture_output=True, text=True, check=True, cwd=REPO
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rehearsal", type=Path, default=REPO / "rehearsal")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "bench-checkpoint.md")
    args = parser.parse_args()
    specs = sorted(args.rehearsal.glob("runs/*/*/spec.json"))
    if not specs:
        sys.exit(f"no rehearsal run under {args.rehearsal}: run scripts/rehearse.sh first")
    latest: dict[str, dict] = {}
    for spec_path in specs:  # the newest spec of each model
        latest[spec_path.parent.name] = json.loads(spec_path.read_text())
    rows = []
    for name, spec in sorted(latest.items()):
        weights = Path(spec["weights"])
        size = weights.stat().st_size
        for how in ("read", "worker", "pickle.load"):
            extra = (spec["ppdet_root"], spec["config"]) if how == "worker" else ()
            m = probe(how, weights, *extra)
            over = m["peak"] - m["base"]
            rows.append(
                f"| {name} | {size / 1e6:.1f} | {how} | {m['base'] / 1e6:.0f} | {m['peak'] / 1e6:.0f} | "
                f"{over / 1e6:.0f} | **{over / size:.2f}** | {m['seconds']:.2f} |"
            )
            print(rows[-1], file=sys.stderr)
    text = "\n".join(
        [
            "# Checkpoint reading: peak memory and time",
            "",
            "`scripts/bench_checkpoint.py` on the rehearsal's checkpoints (the real configs' models, random values, "
            "saved by paddle.save). Each row is a fresh process; *base* is its RSS just before reading (for "
            "`worker`: with the model built from its config), *peak* its lifetime maximum RSS.",
            "",
            f"Machine: {platform.processor() or platform.machine()}, {platform.python_version()}, "
            f"stack `{Path(sys.executable).parent.parent.name}`.",
            "",
            "| model | file MB | how | base MB | peak MB | peak − base MB | ÷ file size | seconds |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Target: peak − base ≤ ~1.2 × the file size (issue #10). `read` keeps every array (the reader's worst "
            "case); `worker` hands each array to the model as soon as it is built, so its peak is about one file's "
            "worth of bytes plus one tensor. `pickle.load` is the unsafe reference.",
            "",
        ]
    )
    args.out.write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
