"""The nightly's web page: a static site built from result records and the history (`harness report --html`).

Why static: the nightly runs offline and GitHub Pages (or any file server, or a file:// URL) hosts it; nothing
is fetched at view time (a Content-Security-Policy in every page forbids it). Pages are rendered with jinja2
(autoescaping: a worker log or a record is data, never markup); charts are inline SVG laid out here, in plain
numbers, so a test can check them without a browser. The site directory is the harness's own: it refuses a
non-empty directory it did not make, writes each file atomically, and keeps the pages of earlier nights
(trend points link to them).

Layout: `index.html` (every model and family of the run: status, measured vs documented with Δ, fps, last
pass, streak; filters), `runs/<run>/<model>.html` (trend charts, the 24 stats, timing percentiles, weight
check, environment, artifact hashes, the worker log's tail), and `report.md`, `junit.xml`, `results.csv`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.core.errors import UsageError
from harness.core.files import atomic_write_bytes, is_component, own_directory
from harness.model.timing import TimingRecord
from harness.records import history as hist
from harness.records.results import RESULT, Conditions, HistoryEntry, Result

MARK = ".harness-site"
LOG_LINES = 80  # the worker log's tail on a model page
LOG_BYTES = 64 * 1024  # read at most this much of a log's end: a log may be gigabytes


@dataclass(frozen=True)
class Point:
    """One night on a trend chart, in pixels, with what its tooltip says and the page it links to."""

    x: float
    y: float
    run_id: str
    value: float
    status: str
    href: str | None


@dataclass(frozen=True)
class Chart:
    """A trend chart laid out: the SVG template only draws these numbers."""

    title: str
    width: int
    height: int
    points: list[Point]
    path: str  # the polyline through the points
    documented: float | None = None
    doc_y: float | None = None  # the documented value's line
    band: tuple[float, float] | None = None  # (top, height) of documented ± tolerance
    ticks: list[tuple[float, str]] = field(default_factory=list)  # (y, label)
    x_labels: list[tuple[float, str]] = field(default_factory=list)
    unit: str = ""


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
class Row:
    """One model on the overview."""

    model: str
    family: str
    stack: str
    status: str
    cells: list[Cell]
    fps: float | None
    last_pass: str | None
    streak: int
    since: str | None
    href: str
    device: str


# Chart geometry (pixels): plot area inside the margins.
WIDTH, HEIGHT = 560, 200
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 24, 36


def _nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    """About `n` round values between lo and hi (1, 2 or 5 times a power of ten apart)."""
    span = hi - lo or abs(hi) or 1.0
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def chart(
    title: str,
    series: Sequence[tuple[str, float, str, str | None]],
    *,
    documented: float | None = None,
    tolerance: float | None = None,
    unit: str = "",
) -> Chart:
    """Lay out one trend: `series` is (run id, value, status, link) per night, oldest first (finite values)."""
    documented = documented if _finite(documented) else None
    tolerance = tolerance if _finite(tolerance) else None
    values = [v for _, v, _, _ in series]
    bounds = values + ([documented - (tolerance or 0), documented + (tolerance or 0)] if documented is not None else [])
    lo, hi = (min(bounds), max(bounds)) if bounds else (0.0, 1.0)
    pad = (hi - lo) * 0.08 or max(abs(hi) * 0.05, 0.5)
    lo, hi = lo - pad, hi + pad
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def y_of(v: float) -> float:
        return round(TOP + (hi - v) / (hi - lo) * plot_h, 2)

    def x_of(i: int) -> float:
        return round(LEFT + (plot_w / 2 if len(series) == 1 else i * plot_w / (len(series) - 1)), 2)

    points = [Point(x_of(i), y_of(v), run, v, status, href) for i, (run, v, status, href) in enumerate(series)]
    band = None
    if documented is not None and tolerance:
        band = (y_of(documented + tolerance), round(y_of(documented - tolerance) - y_of(documented + tolerance), 2))
    x_labels = [(p.x, p.run_id) for p in (points[:1] + points[-1:] if len(points) > 1 else points)]
    return Chart(
        title=title,
        width=WIDTH,
        height=HEIGHT,
        points=points,
        path=" ".join(f"{p.x},{p.y}" for p in points),
        documented=documented,
        doc_y=y_of(documented) if documented is not None else None,
        band=band,
        ticks=[(y_of(t), f"{t:g}") for t in _nice_ticks(lo, hi)],
        x_labels=x_labels,
        unit=unit,
    )


def page_of(run_id: str, model: str) -> str:
    """A model's page of one run, relative to the site root; both names must be plain path components."""
    for what, name in (("run id", run_id), ("model", model)):
        if not isinstance(name, str) or not is_component(name):
            raise UsageError(f"{what} {name!r} is not a plain file name", hint="it names a page of the site")
    return f"runs/{run_id}/{model}.html"


def _comparable(a: Conditions, b: Conditions) -> bool:
    """Two nights' conditions (history.conditions) match; a night without timing (an error before it) matches
    either timing backend, so a model's errors count in its streak."""
    x, y = a.model_dump(), b.model_dump()
    return all(x[k] == y[k] or (k == "backend" and None in (x[k], y[k])) for k in x)


def _nights(history: list[HistoryEntry], rec: Result) -> list[HistoryEntry]:
    """The history of this model under this result's conditions (comparable nights), this run's entry last."""
    here = hist.entry(rec)
    same = [
        e
        for e in history
        if e.model == rec.model and _comparable(e.conditions, here.conditions) and e.run_id != here.run_id
    ]
    return [*same, here]


def _streak(nights: list[HistoryEntry]) -> tuple[int, str | None]:
    """How many nights in a row (ending tonight) had tonight's status, and the first of them."""
    n, since = 0, None
    for e in reversed(nights):
        if e.status != nights[-1].status:
            break
        n, since = n + 1, e.run_id
    return n, since


def overview_row(rec: Result, nights: list[HistoryEntry]) -> Row:
    cells = []
    for name, doc in rec.documented.items():
        m = rec.verdict(name)
        cells.append(
            Cell(
                name,
                m.measured if m else None,
                doc,
                m.delta if m else None,
                (m.tolerance if m else None) or 0.0,
                m.status if m else rec.status,
            )
        )
    passes = [e.run_id for e in nights if e.status == "pass"]
    streak, since = _streak(nights)
    return Row(
        model=rec.model,
        family=rec.table.name or "zoo",
        stack=rec.stack or "?",
        status=rec.status,
        cells=cells,
        fps=rec.fps,
        last_pass=passes[-1] if passes else None,
        streak=streak,
        since=since,
        href=page_of(rec.run_id, rec.model),
        device=rec.device or "?",
    )


def _finite(value: object) -> bool:
    """A number a chart can place: JSON lets NaN and Infinity through, a chart must not."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def trends(rec: Result, nights: list[HistoryEntry], exists) -> list[Chart]:
    """One chart per documented metric (documented value and tolerance band drawn) and one for fps."""

    def link(run_id: str) -> str | None:
        page = page_of(run_id, rec.model)
        return f"../../{page}" if exists(page) else None

    out = []
    for name, doc in rec.documented.items():
        series = [
            (e.run_id, float(value), e.status, link(e.run_id))
            for e in nights
            if (value := e.measured(name)) is not None and _finite(value)
        ]
        m = rec.verdict(name)
        out.append(chart(name, series, documented=doc, tolerance=m.tolerance if m else None, unit="AP"))
    fps = [(e.run_id, float(e.fps), e.status, link(e.run_id)) for e in nights if e.fps is not None and _finite(e.fps)]
    if fps:
        out.append(chart("fps", fps, unit="fps"))
    return out


def log_tail(run_dirs: Sequence[Path], rec: Result) -> str | None:
    """The end of the worker log of this record's run (the shard directory that holds its result)."""
    for d in run_dirs:
        model = d / rec.model
        if not (model / RESULT).is_file():
            continue
        log = model / "worker.log"
        if log.is_symlink():  # a run directory handed over (a CI artifact) must not publish another file
            continue
        try:
            with log.open("rb") as f:
                f.seek(max(0, log.stat().st_size - LOG_BYTES))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        return "\n".join(text.splitlines()[-LOG_LINES:])
    return rec.error.log_tail if rec.error else None


def _environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("harness.publish", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = lambda v, d=2: "-" if v is None else f"{v:.{d}f}"
    env.filters["signed"] = lambda v: "-" if v is None else f"{v:+.2f}"
    env.filters["fps"] = lambda v: "-" if v is None else f"{v:.3g}"
    env.filters["safe_url"] = safe_url
    return env


def safe_url(url: object) -> str | None:
    """Only http(s) URLs become links: a record's `javascript:` or `data:` URL is shown as text."""
    return url if isinstance(url, str) and url.lower().startswith(("http://", "https://")) else None


def claim(out: Path) -> None:
    """The site directory is ours: refuse a non-empty directory the harness did not make (a typo such as
    `--html ~` must never write pages over a user's files)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--html {out}: not a directory", hint="name a new or empty directory, or an earlier site")
    own_directory(
        out,
        MARK,
        "written by `harness report --html`; the harness rewrites the pages in here\n",
        refusal=f"--html {out}: not empty and not a site the harness wrote",
        hint="name a new or empty directory, or the directory of an earlier `--html`",
    )


def build(
    records: list[Result],
    out: Path,
    *,
    history: list[HistoryEntry] | None = None,
    run_dirs: Sequence[Path] = (),
) -> dict[str, Path]:
    """Write the site for these records into `out`; returns the pages written (name -> path).

    `history` (harness/records/history.py entries, tonight's included or not) gives the trends, last passes and
    streaks; without it every model has one night. Pages of other runs already in `out` are kept and linked."""
    from harness.publish import report

    claim(out)
    env = _environment()
    history = history or []
    pages = {page_of(r.run_id, r.model) for r in records}

    def exists(page: str) -> bool:
        return page in pages or (out / page).is_file()

    rows, details = [], []
    for rec in records:
        nights = _nights(history, rec)
        rows.append(overview_row(rec, nights))
        details.append((rec, trends(rec, nights, exists)))
    written = {
        "index": out / "index.html",
        "markdown": out / "report.md",
        "junit": out / "junit.xml",
        "csv": out / "results.csv",
    }
    _write(written["index"], _index(env, records, rows, history))
    for rec, charts in details:
        path = out / page_of(rec.run_id, rec.model)
        _write(path, _model_page(env, rec, next(r for r in rows if r.model == rec.model), charts, run_dirs))
        written[rec.model] = path
    atomic_write_bytes(written["markdown"], report.markdown(records).encode())
    report.junit(records, written["junit"])
    report.csv(records, written["csv"])
    return written


def _index(env, records: list[Result], rows: list[Row], history: list[HistoryEntry]) -> str:
    """The overview page: a summary per family, every model's row, tonight's regressions and the notes."""
    from harness.publish import report

    families = Counter(r.family for r in rows)
    summary = [
        {"family": f, "models": n, **Counter(r.status for r in rows if r.family == f)} for f, n in families.items()
    ]
    return env.get_template("index.html").render(
        rows=rows,
        summary=summary,
        runs=sorted({r.run_id for r in records}),
        statuses=["pass", "fail", "error"],
        stacks=sorted({r.stack for r in rows}),
        regressions=hist.regressions(history, records) if history else [],
        notices=sorted({r.notice for r in records if r.notice}),  # a rehearsal says so at the top
        notes=report.notes(records),
        root="",
    )


def _model_page(env, rec: Result, row: Row, charts: list[Chart], run_dirs: Sequence[Path]) -> str:
    """One model's page of one run: verdicts, trends, stats, timing, weight check, environment, log."""
    from harness.publish import report

    return env.get_template("model.html").render(
        rec=rec,
        row=row,
        charts=charts,
        timing=_timing_rows(rec.timing),
        durations=rec.durations.model_dump(exclude_none=True),
        log=log_tail(run_dirs, rec),
        overrides=report.overrides_text(rec.overrides) if rec.overrides else "",
        root="../../",
    )


def _timing_rows(timing: TimingRecord | None) -> list[dict]:
    """Latency percentiles per backend and stage, as the model page's table shows them."""
    out = []
    for name, b in (timing.backends if timing else {}).items():
        for stage, lat in b.latency_ms.items():
            fps = b.fps if stage == "end_to_end" else None
            out.append({"backend": name, "stage": stage, **lat.model_dump(), "fps": fps})
    return out


def _write(path: Path, html: str) -> None:
    atomic_write_bytes(path, html.encode())
