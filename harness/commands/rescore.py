"""`harness rescore RUN_DIR...`: every stat and verdict recomputed from the stored predictions (no model runs),
e.g. after a scorer change or to cross-check one scorer with the other."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness.commands import options

if TYPE_CHECKING:
    from harness.records.results import Result

NAME = "rescore"
HELP = "recompute every stat and verdict of a run from its stored predictions (no model is run)"


def add_parser(sub: options.Subparsers, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = options.command(
        sub,
        common,
        NAME,
        HELP,
        epilog="examples:\n  harness rescore runs/nightly\n  harness rescore runs/nightly --scorer pycocotools",
    )
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="directories written by verify or run")
    options.scorer(p)
    p.set_defaults(func=main)
    return p


def rescore(runs: Sequence[Path], scorer: str | None = None) -> list[Result]:
    """The rescored records of every run directory, in zoo order (each also rewritten in place)."""
    from harness.nightly.rescoring import rescore as rescore_run

    records = [rec for run in runs for rec in rescore_run(run, scorer)]
    return sorted(records, key=lambda r: (r.zoo_index, r.model))


def main(args: argparse.Namespace) -> int:
    from harness.nightly import runner
    from harness.publish import view
    from harness.publish.report import markdown

    records = rescore(args.runs, args.scorer)
    print(markdown(view.of(records)), end="")
    return runner.exit_code(records)
