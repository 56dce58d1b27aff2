"""The nightly's plan for the seed zoo and the whole imported zoo at 1, 8 and 64 GPUs (`harness plan`, written
down): makespan against the lower bound max(Σ work / G, longest unit), and against one model per GPU.

    .venv-current/bin/python scripts/plan_nightly.py [--history reports/history.jsonl] [--out reports/plan-nightly.md]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

from harness.nightly import schedule
from harness.records import history
from harness.zoo.manifest import load_zoo

REPO = Path(__file__).resolve().parents[1]
ZOOS = [REPO / "zoo.yaml", REPO / "zoos" / "paddledetection.yaml"]
GPUS = [1, 8, 64]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--history", type=Path, default=REPO / "reports" / "history.jsonl")
    ap.add_argument("--images", type=int, default=schedule.NOMINAL_IMAGES)
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "plan-nightly.md")
    args = ap.parse_args()
    past = history.load(args.history)
    text = [
        "# The nightly's plan: seed zoo and whole imported zoo at 1, 8, 64 GPUs",
        "",
        f"Written {time.strftime('%Y-%m-%d')} by `scripts/plan_nightly.py` (`harness plan`), {platform.machine()}, "
        f"Python {platform.python_version()}; history: {len(past)} entries from `{args.history.name}` "
        f"({'none with durations' if not any(e.get('seconds') for e in past) else 'with durations'}). "
        f"{args.images} images per model (COCO val2017).",
        "",
        "A unit is one model, or one slice of a model's images (`--parallel`); the planner picks each model's "
        "slices (`--parallel auto`) and schedules the units longest first onto the GPU free first, which is what "
        "`harness run --gpus ... --parallel auto` does online. Estimates per model: its last run under the same "
        "conditions in the history, else the first speed its README documents (V100 fps, model only; taken as "
        f"the eval's images/s), else {schedule.DEFAULT_FPS:g} fps; plus {schedule.STARTUP_S:g} s start-up per "
        "worker (import, build, weight check) and the fps measurement in the first slice. These are estimates, "
        "not measurements: no GPU ran here. The lower bound is the plan's own: its units' work (start-ups of "
        "every slice included) over the GPUs, or its longest unit; 'one model per GPU' is the schedule without "
        "slicing, as `--gpus` ran before this work queue.",
        "",
    ]
    for path in ZOOS:
        zoo, _ = load_zoo(path)
        estimates = [schedule.estimate(zoo, m, args.images, past, device="gpu") for m in zoo.models]
        plans = {g: schedule.plan(estimates, g) for g in GPUS}
        baseline = {g: schedule.plan(estimates, g, parallel=1) for g in GPUS}
        text.append(schedule.markdown(str(path.relative_to(REPO)), estimates, plans, baseline))
        if path == ZOOS[0]:
            p = plans[8]
            text += [
                "Seed zoo on 8 GPUs, unit by unit (seconds):",
                "",
                "| GPU | units, in order | load |",
                "|---:|---|---:|",
                *(
                    f"| {i} | {', '.join(f'{u.label} ({u.seconds:.0f})' for u in w)} | {load:.0f} |"
                    for i, (w, load) in enumerate(zip(p.assignment, p.loads, strict=True))
                ),
                "",
            ]
    args.out.write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
