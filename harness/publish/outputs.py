"""Everything a night leaves for people and CI, each rendered once from the night's view and written where asked.

Why one place: `harness run` and `harness report` (`--outputs`, `--out`, `--history`, `--html`) publish the same
night; the view is built once (publish/view.py), report.md, junit.xml and results.csv are rendered once and the
same bytes are written to every directory that asks for them, the history is written back once, the plots are
drawn once. The markdown also goes to $GITHUB_STEP_SUMMARY when it is set.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.core.files import atomic_write_bytes
from harness.publish import report, view
from harness.publish.view import Night
from harness.records import history as hist
from harness.records.results import Result

PLOTS = "\n![AP per run](ap_per_run.png)\n\n![AP vs fps](ap_vs_fps.png)\n"


@dataclass(frozen=True)
class Published:
    """What was published: the night's view, the markdown (as printed), and every file written (name -> path)."""

    night: Night
    text: str
    written: dict[str, Path] = field(default_factory=dict)


def publish(
    records: Sequence[Result],
    *,
    history: Path | None = None,
    run_dirs: Sequence[Path] = (),
    outputs: Path | None = None,
    out: Path | None = None,
    site: Path | None = None,
    keep: int | None = None,
) -> Published:
    """Build the night's view (with `history`: tonight's results merged into it, and written back), then write
    report.md, junit.xml and results.csv into `outputs` (with a history also the plots, linked from report.md),
    the tables to `out`, and the web page into `site` (`keep`: the nights whose record pages it keeps). The text
    returned (and appended to $GITHUB_STEP_SUMMARY) is the report as written into `outputs`."""
    from harness.publish import site as pages

    if site is not None:  # refuse a directory that is not ours before anything is written anywhere
        pages.claim(site)
    night = view.of(records, hist.load(history) if history is not None else None, run_dirs)
    if history is not None:
        hist.write(history, night.history)
    table = report.table_text(night)
    rendered = report.files(night, table)
    text = rendered["report.md"].decode()
    written: dict[str, Path] = {}
    if outputs is not None:
        text += PLOTS if night.judged else ""  # the plots are drawn beside it: report.md links them
        written |= _outputs(night, {**rendered, "report.md": text.encode()}, outputs)
    if out is not None:
        atomic_write_bytes(out, table.encode())
        written["out"] = out
    if site is not None:
        written |= {f"site/{k}": v for k, v in pages.write(night, site, rendered, run_dirs, keep=keep).items()}
    if summary := os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(summary, "a") as f:
            f.write(text)
    return Published(night, text, written)


def _outputs(night: Night, rendered: dict[str, bytes], out_dir: Path) -> dict[str, Path]:
    """report.md, junit.xml, results.csv (and with a history the plots) into `out_dir`."""
    from harness.publish import plots

    out_dir.mkdir(parents=True, exist_ok=True)
    written = plots.draw(night, out_dir) if night.judged else {}
    for name, data in rendered.items():
        written[name] = out_dir / name
        atomic_write_bytes(written[name], data)
    return written
