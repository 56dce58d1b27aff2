"""The overview's rows: one per model, with its verdicts, its Δ, its streak and a cell per night of the grid.

Why a grid: a person who watches a nightly zoo asks "what is red, since when, and is it one night or many"; a
model × night grid answers at a glance for hundreds of models (asv's and PyTorch HUD's idea). Rows come failing
first, then by family (the model's architecture), then by name; a column sorts on a click (the page's script
reads each cell's `data-sort`).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.records.results import HistoryEntry, Result

ORDER = {"error": 0, "fail": 0, "pass": 1, "carried": 1}  # failing first


@dataclass(frozen=True)
class Cell:
    """One documented metric of one model on the overview."""

    metric: str
    measured: float | None
    documented: float
    delta: float | None
    tolerance: float
    status: str


@dataclass(frozen=True)
class NightCell:
    """A model in one night of the grid: its status ("none": no comparable night) and its tooltip (the page it
    links to is the site's to know)."""

    run_id: str
    status: str
    title: str


@dataclass(frozen=True)
class Row:
    """One model on the overview."""

    model: str
    family: str  # the architecture (FasterRCNN, PPYOLOE, DETR)
    table: str  # the README table the model's row is in
    stack: str
    status: str
    cells: list[Cell]
    delta: float | None  # the Δ (measured - documented) of the metric furthest outside its tolerance
    fps: float | None
    last_pass: str | None
    streak: int
    since: str | None
    device: str
    grid: list[NightCell]
    change: str = ""  # "new" (failing since tonight), "fixed" (passing again tonight), "slower" or ""


def family(rec: Result) -> str:
    """The model's family: its architecture as its config names it (the zoo file and the worker both record
    it); a record without one (written before records carried it) says so."""
    return rec.architecture or "unknown"


def cells(rec: Result) -> list[Cell]:
    out = []
    for name, doc in rec.documented.items():
        m = rec.verdict(name)
        out.append(
            Cell(
                name,
                m.measured if m else None,
                doc,
                m.delta if m else None,
                (m.tolerance if m else None) or 0.0,
                m.status if m else rec.status,
            )
        )
    return out


def worst_delta(metrics: list[Cell]) -> float | None:
    """The signed Δ of the metric furthest outside its tolerance (relative to it)."""
    found = [c for c in metrics if c.delta is not None]
    best = max(found, key=lambda c: abs(c.delta or 0.0) / (c.tolerance or 1.0), default=None)
    return best.delta if best is not None else None


def streak(nights: list[HistoryEntry]) -> tuple[int, str | None]:
    """How many nights in a row (ending tonight) had tonight's status, and the first of them."""
    n, since = 0, None
    for e in reversed(nights):
        if e.status != nights[-1].status:
            break
        n, since = n + 1, e.run_id
    return n, since


def _title(e: HistoryEntry) -> str:
    values = ", ".join(f"{k} {m.measured:.2f}" for k, m in e.metrics.items() if m.measured is not None)
    return f"{e.run_id}: {e.status}" + (f" ({values})" if values else "") + (f", {e.stage}" if e.stage else "")


def row(rec: Result, nights: list[HistoryEntry], columns: list[str], change: str) -> Row:
    """A model's row: `nights` its comparable nights (changes.series, its record's night last), `columns` the grid's
    run ids, `change` its tag tonight."""
    by_run = {e.run_id: e for e in nights}
    grid = []
    for run in columns:
        e = by_run.get(run)
        c = rec.carried if run == rec.run_id else None
        grid.append(
            NightCell(run, "carried", f"{run}: carried over from {c.run_id} (inputs {c.digest[:12]})")
            if c is not None
            else NightCell(run, e.status, _title(e))
            if e
            else NightCell(run, "none", f"{run}: not run (or under other conditions)")
        )
    passes = [e.run_id for e in nights if e.status == "pass"]
    n, since = streak(nights)
    metrics = cells(rec)
    return Row(
        model=rec.model,
        family=family(rec),
        table=rec.table.name or "zoo",
        stack=rec.stack or "?",
        status=rec.status,
        cells=metrics,
        delta=worst_delta(metrics),
        fps=rec.fps,
        last_pass=passes[-1] if passes else None,
        streak=n,
        since=since,
        device=rec.device or "?",
        grid=grid,
        change=change,
    )


def order(r: Row) -> tuple[int, str, str]:
    """The overview's order: failing first, then by family, then by name."""
    return (ORDER.get(r.status, 0), r.family.lower(), r.model)


def ordered(rows: list[Row]) -> list[Row]:
    """Failing first, then by family, then by name."""
    return sorted(rows, key=order)
