"""`harness run`: the nightly — every model (or a shard) verified into one run directory, then the reports."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.commands import options

if TYPE_CHECKING:
    from harness.model.inputs import Options
    from harness.nightly.runner import Shard
    from harness.nightly.selection import Decision
    from harness.records.results import Result

NAME = "run"
HELP = "the nightly: verify every model (or a shard) into one run directory, then publish the reports"
log = logging.getLogger("harness")


def add_parser(sub: options.Subparsers, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = options.command(
        sub,
        common,
        NAME,
        HELP,
        parents=[options.inputs(), options.timing("dygraph")],
        description="Verifies each selected model in its own worker (a crash, OOM or timeout is that model's "
        "error, the run goes on), writes results as each model finishes, then report.md, junit.xml, "
        "results.csv, history and plots. Exit 3 if any error, else 1 if any fail, else 0.",
        epilog="examples:\n"
        "  harness run --device gpu --gpus all --out runs/nightly --timeout 7200\n"
        "  harness run --out runs/nightly --resume                # after a killed run: finished models kept\n"
        "  harness run --shard 2/3 --run-id $GITHUB_RUN_ID --out runs/shard-2   # one of 3 machines\n"
        "  harness report runs/shard-* --outputs runs/merged --history reports/history.jsonl",
    )
    options.common_eval(p, many=True)
    p.add_argument("--resume", action="store_true", help="keep every model that already has a complete result")
    p.add_argument(
        "--shard",
        metavar="I/N",
        help="take shard I of N (1-based; default: $HARNESS_SHARD, "
        "$HARNESS_SHARD_INDEX or $JOB_COMPLETION_INDEX with $HARNESS_SHARD_TOTAL, else 1/1)",
    )
    p.add_argument(
        "--gpus",
        metavar="LIST",
        help="the work queue's GPUs, one unit (model or slice) on each at once: 0,1,2,3 or all",
    )
    p.add_argument(
        "--parallel",
        metavar="K|auto",
        default="1",
        help="cut each model into K slices of the images (units of the queue), or `auto`: the planner "
        "picks each model's slices from the history (see `harness plan`); default: 1",
    )
    p.add_argument("--run-id", metavar="ID", help="id recorded in every result (shards of one nightly share it)")
    p.add_argument(
        "--history",
        type=Path,
        metavar="PATH",
        help="history store to read estimates from and append to (default: $HARNESS_HISTORY, else "
        "<run dir>/history.jsonl; sharded runs append nothing: the merging `harness report` does)",
    )
    p.add_argument("--no-timing", dest="timing", action="store_false", help="skip the fps measurement")
    options.changed_since(p)
    p.set_defaults(func=main)
    return p


@dataclass(frozen=True)
class Ran:
    """A finished run: its records in zoo order, where they are, the history appended to (None: sharded)."""

    records: list[Result]
    run_dir: Path
    history: Path | None
    text: str  # the markdown report, as printed
    decisions: list[Decision] | None = None  # --changed-since: each model's choice with its reasons


def history_path(explicit: Path | None, run_dir: Path) -> Path:
    """`--history`, else $HARNESS_HISTORY, else the run directory's own `history.jsonl`: a run writes into the
    repository's reports/ (or any shared store) only when asked to."""
    from harness.records.history import default_path

    return explicit if explicit is not None else default_path(run_dir / "history.jsonl")


def run(
    models: list[str],
    *,
    zoo: str | Path | None,
    options: Options,
    out: str | Path | None,
    resume: bool = False,
    shard: Shard | None = None,
    gpus: str | None = None,
    history: Path | None = None,
    changed_since: str | None = None,
    impact_map: Path | None = None,
    rotate: int | None = None,
) -> Ran:
    """`harness run`: the selected models (empty: all) of this shard through the work queue into `out` (default:
    a new `runs/<UTC time>`), then report.md, junit.xml, results.csv and, unless sharded, the history.
    `changed_since` (a night or a PaddleDetection tree id, with `impact_map`): only the models whose inputs changed
    run; the others are carried over (changed.py), written as such by the first shard."""
    from harness.commands.options import default_run_dir, load
    from harness.nightly import runner
    from harness.publish.outputs import publish
    from harness.records import history as hist

    the_zoo, zoo_path, lock = load(zoo)
    if changed_since is None and (impact_map is not None or rotate is not None):
        from harness.core.errors import UsageError

        raise UsageError("--impact-map and --rotate go with --changed-since NIGHT|TREE")
    the_zoo.select(models)  # unknown names are a usage error before anything runs
    shard = shard or runner.Shard.from_env()
    run_dir = Path(out) if out else default_run_dir()
    opts = dataclasses.replace(options, run_id=options.run_id or run_dir.name)
    if the_zoo.notice:
        log.warning("%s", the_zoo.notice)
    store = history_path(history, run_dir)
    path = None if shard.total > 1 else store
    past = hist.load(store)
    decisions, carried = None, []
    if changed_since is not None:
        from harness.model.inputs import resolve_device
        from harness.nightly import changed
        from harness.records.results import write

        device = resolve_device(opts.device)
        decisions = changed.decide(
            the_zoo,
            zoo_path,
            opts,
            past,
            changed_since,
            impact_map,
            rotate=rotate,
            device=device,
            models=models,
            lock=lock,
        )
        models = [d.model for d in decisions if d.run]
        stack = the_zoo.source(opts.stack)[0]
        bases = {e.model: e for e in past if e.status == "pass"}  # the history is in time order: the last wins
        for d in decisions:
            if not d.run and shard.index == 1:
                base = next((e for e in past if e.model == d.model and e.run_id == d.since), bases.get(d.model))
                carried.append(changed.carried_record(the_zoo, d.model, opts.run_id or "", stack, d, base))
                write(run_dir, carried[-1])
        if not models:
            records = sorted(carried, key=lambda r: r.zoo_index)
            text = publish(records, history=path, run_dirs=[run_dir], outputs=run_dir).text if records else ""
            return Ran(records, run_dir, path, text, decisions)
    records = runner.run(
        the_zoo,
        zoo_path,
        lock,
        models or None,
        opts,
        run_dir,
        resume=resume,
        shard=shard,
        gpus=runner.gpu_list(gpus),
        history=past,
    )
    records = sorted(records + carried, key=lambda r: (r.zoo_index, r.model))
    text = publish(records, history=path, run_dirs=[run_dir], outputs=run_dir).text
    return Ran(records, run_dir, path, text, decisions)


def main(args: argparse.Namespace) -> int:
    from harness.nightly import runner

    opts = options.build_options(args, timing=args.timing, backends=("dygraph",))
    opts = dataclasses.replace(opts, run_id=args.run_id, parallel=options.parallel_value(args.parallel))
    shard = runner.Shard.parse(args.shard) if args.shard else None
    ran = run(
        args.models,
        zoo=args.zoo,
        options=opts,
        out=args.out,
        resume=args.resume,
        shard=shard,
        gpus=args.gpus,
        history=args.history,
        changed_since=args.changed_since,
        impact_map=args.impact_map,
        rotate=args.rotate,
    )
    for d in ran.decisions or []:
        print(d.line())
    print(ran.text, end="")
    where = ", plots; history: " + str(ran.history) if ran.history else ""
    print(f"run: {ran.run_dir} (report.md, junit.xml, results.csv{where})")
    return runner.exit_code(ran.records)
