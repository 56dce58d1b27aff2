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
) -> Rendered:
    """What `harness report` does: read the results (refusing a record whose predictions changed), write the
    requested outputs, and return the markdown."""
    from harness.core.files import atomic_write_bytes
    from harness.publish.report import markdown, publish
    from harness.records.results import read, shard_disagreement

    runs = list(runs)
    records = read(runs, check_predictions=True)
    if html:  # refuse a directory that is not ours before anything is written anywhere
        from harness.publish import site

        site.claim(html)
    if warning := shard_disagreement(runs):
        log.warning("%s", warning)
    if outputs or history:
        text = publish(records, outputs or runs[0], history_path=history, run_dirs=runs)["text"]
    else:
        text = markdown(records)
    if out:
        atomic_write_bytes(out, markdown(records).encode())
    if not html:
        return Rendered(text)
    from harness.records import history as hist

    past = hist.load(history) if history else []
    pages = site.build(records, html, history=past, run_dirs=runs)
    return Rendered(text, Path(pages["index"]))


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
    done = render(args.runs, out=args.out, html=args.html, outputs=args.outputs, history=args.history)
    print(done.text, end="")
    if done.site:
        print(f"site: {done.site}", file=sys.stderr)
    return ExitCode.OK
