"""`harness plan`: the nightly's schedule for G GPUs (units, makespan, lower bound) from the history's
durations, without running a model: what `harness run --gpus ... --parallel auto` would do."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.commands import options
from harness.core.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from harness.nightly.schedule import Estimate, Plan
    from harness.records.results import HistoryEntry
    from harness.zoo.manifest import Zoo

NAME = "plan"
HELP = "the nightly's schedule for G GPUs: units, makespan, lower bound (no model runs)"


def add_parser(sub: options.Subparsers, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = options.command(
        sub,
        common,
        NAME,
        HELP,
        description="Estimates each model's work (its last run in the history under the same conditions, else "
        "its README's fps, else a default), cuts models into slices where that shortens the night, and "
        "schedules the units longest first onto the GPU free first, as `harness run --gpus ... --parallel auto` "
        "does. Prints the makespan against the lower bound max(work / G, longest unit) and against one model "
        "per GPU.",
        epilog="examples:\n  harness plan --gpus 8\n"
        "  harness plan --zoo zoos/paddledetection.yaml --gpus 1 8 64 --out reports/plan-nightly.md\n"
        "  harness plan --gpus 8 --json | jq .plans[0].assignment\n"
        "  harness plan --gpus 8 --changed-since 20261130-020000 --impact-map impact/current.json --rotate 7",
    )
    p.add_argument("--gpus", type=int, nargs="+", default=[8], metavar="G", help="GPU counts to plan for (8)")
    p.add_argument("--images", type=int, default=5000, help="images per model (default: val2017's 5000)")
    kinds = [d for d in options.devices() if d != "auto"]
    p.add_argument("--device", choices=kinds, default="gpu", help="history entries of this device")
    p.add_argument(
        "--eval-size",
        type=int,
        metavar="PX",
        help="history entries of runs at this eval size (as `harness run --eval-size`; default: full size)",
    )
    p.add_argument("--parallel", default="auto", metavar="K|auto", help="slices per model (default: auto)")
    p.add_argument(
        "--history",
        type=Path,
        metavar="PATH",
        help="durations of earlier runs (default: $HARNESS_HISTORY or reports/history.jsonl)",
    )
    p.add_argument("--json", action="store_true", help="print the plans (and the selection) as JSON")
    p.add_argument(
        "--ppdet-root", type=Path, metavar="DIR", help="tonight's PaddleDetection checkout (default: the pin)"
    )
    options.changed_since(p)
    p.add_argument("--out", type=Path, metavar="FILE", help="also write the markdown to FILE")
    p.set_defaults(func=main)
    return p


@dataclass(frozen=True)
class Planned:
    """Each model's estimate, the plan for each GPU count, and one-model-per-GPU for comparison."""

    estimates: list[Estimate]
    plans: dict[int, Plan]
    baseline: dict[int, Plan]


def plan(
    zoo: Zoo,
    gpus: list[int],
    *,
    images: int = 5000,
    device: str = "gpu",
    parallel: int | str = "auto",
    history: list[HistoryEntry] | None = None,
    eval_size: int | None = None,
) -> Planned:
    """The schedules of the zoo's models for each of `gpus` workers, from `history`'s durations on `device` at
    `eval_size` (None: full size)."""
    from harness.nightly import schedule

    if any(g < 1 for g in gpus) or images < 1:
        raise UsageError("plan: --gpus and --images must be 1 or more")
    estimates = [
        schedule.estimate(zoo, m, images, history or [], device=device, eval_size=eval_size) for m in zoo.models
    ]
    return Planned(
        estimates,
        {g: schedule.plan(estimates, g, parallel=parallel) for g in gpus},
        {g: schedule.plan(estimates, g, parallel=1) for g in gpus},
    )


def main(args: argparse.Namespace) -> int:
    from harness.core.files import atomic_write_bytes
    from harness.nightly import schedule
    from harness.records import history

    zoo, _ = options.zoo(args)
    path = args.zoo_path
    parallel = options.parallel_value(args.parallel)
    past = history.load(args.history or history.default_path())
    decisions = None
    if args.changed_since is not None:
        from harness.model.inputs import Options
        from harness.nightly import changed

        opts = Options(stack=getattr(args, "stack", None), ppdet_root=args.ppdet_root)
        decisions = changed.decide(
            zoo, path, opts, past, args.changed_since, args.impact_map, rotate=args.rotate, device=args.device
        )
        zoo = zoo.model_copy(update={"models": zoo.select([d.model for d in decisions if d.run])})
    elif args.impact_map is not None or args.rotate is not None:
        raise UsageError("--impact-map and --rotate go with --changed-since NIGHT|TREE")
    done = plan(
        zoo,
        args.gpus,
        images=args.images,
        device=args.device,
        parallel=parallel,
        history=past,
        eval_size=args.eval_size,
    )
    text = schedule.markdown(path.name, done.estimates, done.plans, done.baseline, device=args.device)
    if args.json:
        doc = {
            "zoo": str(path),
            "images": args.images,
            "estimates": [vars(e) for e in done.estimates],
            "plans": [p.as_json() for p in done.plans.values()],
        }
        if decisions is not None:
            doc["selection"] = [d.as_json() for d in decisions]
        print(json.dumps(doc, indent=2))
    else:
        print("".join(d.line() + "\n" for d in decisions or []), end="")
        print(text, end="")
    if args.out:
        atomic_write_bytes(args.out, text.encode())
    return ExitCode.OK
