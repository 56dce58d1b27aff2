"""`harness report RUN_DIR...`: the reports of one or more run directories (shards merge), from their result
files alone: no model runs, no paddle. `report()` is also the library's `harness.report`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.commands import options
from harness.core.errors import ExitCode

NAME = "report"
HELP = "render the reports of one or more run directories (shards merge) from their result files"
log = logging.getLogger("harness")


def add_parser(sub: options.Subparsers, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = options.command(
        sub,
        common,
        NAME,
        HELP,
        epilog="examples:\n  harness report runs/20261125-101500\n  harness report runs/a runs/b --out report.md\n"
        "  harness report runs/shard-* --outputs runs/merged --history reports/history.jsonl\n"
        "  harness report runs/shard-* --history reports/history.jsonl --html site/   (open site/index.html)",
    )
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="directories written by verify or run")
    p.add_argument("--out", type=Path, metavar="FILE", help="also write the markdown table to FILE")
    p.add_argument(
        "--html",
        type=Path,
        metavar="DIR",
        help="write the web page (a static site: overview, one page per model with trends and logs) into DIR; "
        "with --history its trends span the earlier nights",
    )
    p.add_argument(
        "--outputs",
        type=Path,
        metavar="DIR",
        help="write report.md, junit.xml and results.csv (and with --history: plots) into DIR",
    )
    p.add_argument("--history", type=Path, metavar="PATH", help="append these results to a history store")
    p.add_argument(
        "--keep-nights",
        type=int,
        metavar="K",
        help="with --html: keep each model's record pages of the last K nights (default 30; every night's summary "
        "is kept): a year of nightly runs of 355 models stays under 300 MB",
    )
    p.set_defaults(func=main)
    return p


@dataclass(frozen=True)
class Rendered:
    """The markdown report, and the site's index page when one was written."""

    text: str
    site: Path | None = None


def render(
    runs: Sequence[Path],
    *,
    out: Path | None = None,
    html: Path | None = None,
    outputs: Path | None = None,
    history: Path | None = None,
    keep: int | None = None,
) -> Rendered:
    """What `harness report` does: read the results (refusing a record whose predictions changed), build the
    night's view once, write the requested outputs, and return the markdown. With --history and no --outputs,
    report.md, junit.xml, results.csv and the plots go into the first run directory (as `harness run` leaves them)."""
    from harness.publish.outputs import publish
    from harness.records.results import read, shard_disagreement

    runs = list(runs)
    if keep is not None and keep < 1:
        from harness.core.errors import UsageError

        raise UsageError(f"--keep-nights {keep}: at least tonight's records are kept", hint="give 1 or more")
    records = read(runs, check_predictions=True)
    if warning := shard_disagreement(runs):
        log.warning("%s", warning)
    done = publish(
        records,
        history=history,
        run_dirs=runs,
        outputs=outputs or (runs[0] if history else None),
        out=out,
        site=html,
        keep=keep,
    )
    return Rendered(done.text, html / "index.html" if html else None)


def report(
    runs: Sequence[str | Path],
    *,
    out: str | Path | None = None,
    html: str | Path | None = None,
    outputs: str | Path | None = None,
    history: str | Path | None = None,
) -> str:
    """The markdown report of these run directories (or result files), as `harness report` prints it; with
    `out` also written there, with `outputs` report.md, junit.xml and results.csv written into that directory,
    with `history` the results appended to that history store, with `html` the web page written there."""

    def path(p: str | Path | None) -> Path | None:
        return Path(p) if p is not None else None

    return render(
        [Path(r) for r in runs], out=path(out), html=path(html), outputs=path(outputs), history=path(history)
    ).text


def main(args: argparse.Namespace) -> int:
    done = render(
        args.runs, out=args.out, html=args.html, outputs=args.outputs, history=args.history, keep=args.keep_nights
    )
    print(done.text, end="")
    if done.site:
        print(f"site: {done.site}", file=sys.stderr)
    return ExitCode.OK
