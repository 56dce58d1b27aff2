"""`harness export`: the zoo in another format (OpenMMLab's model-index), optionally with a run's results."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from harness.commands import options
from harness.core.errors import ExitCode

if TYPE_CHECKING:
    from harness.records.results import Result
    from harness.zoo.manifest import Zoo

NAME = "export"
HELP = "write the zoo in another format (OpenMMLab model-index), optionally with a run's results"


def _model_index(zoo: Zoo, out: Path, records: list[Result] | None) -> list[Path]:
    from harness.publish.modelindex import export

    return export(zoo, out, records)


# The formats this command writes: the name `--format` takes -> the writer (zoo, directory, records) -> paths.
FORMATS: dict[str, Callable[[Zoo, Path, list[Result] | None], list[Path]]] = {"model-index": _model_index}


def add_parser(sub: options.Subparsers, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = options.command(
        sub,
        common,
        NAME,
        HELP,
        epilog="examples:\n  harness export --format model-index --out build/model-index\n"
        "  harness export --format model-index --out build/mi --run runs/nightly   # adds measured AP and timing",
    )
    p.add_argument("--format", choices=list(FORMATS), default=next(iter(FORMATS)))
    p.add_argument("--out", type=Path, default=Path("model-index"), metavar="DIR", help="default: ./model-index")
    p.add_argument("--run", type=Path, nargs="*", metavar="RUN_DIR", help="results to include")
    p.set_defaults(func=main)
    return p


def export(zoo: Zoo, out: Path, runs: list[Path] | None = None, fmt: str = "model-index") -> list[Path]:
    """Write the zoo as `fmt` into `out` (with the results of `runs` when given); returns the files written."""
    from harness.records.results import read

    return FORMATS[fmt](zoo, out, read(runs) if runs else None)


def main(args: argparse.Namespace) -> int:
    zoo, _ = options.zoo(args)
    for path in export(zoo, args.out, args.run, args.format):
        print(path)
    return ExitCode.OK
