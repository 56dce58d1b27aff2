"""The nightly's web page: a static site built from result records and the history (`harness report --html`).

Why static: the nightly runs offline and GitHub Pages (or any file server, or a file:// URL) hosts it; nothing
is fetched at view time (a Content-Security-Policy in every page forbids it). Pages are rendered with jinja2
(autoescaping: a worker log or a record is data, never markup); charts are inline SVG laid out here, in plain
numbers, so a test can check them without a browser. The site directory is the harness's own: it refuses a
non-empty directory it did not make, writes each file atomically, and keeps the pages of earlier nights
(trend points link to them).

Layout: `index.html` (tonight's summary: counts, new failures, fixed, still failing since when, errors by stage,
steps; then the model × night grid of the last GRID_NIGHTS nights, failing first, with filters and sortable
columns), `nights.html` (every night: counts, duration, GPU-hours, environment, what changed; trends),
`nights/<run>.html` (that night's overview), `runs/<run>/<model>.html` (what changed since the last pass,
trend charts, the 24 stats, timing percentiles, weight check, environment, artifact hashes, the worker log's
tail), and `report.md`, `junit.xml`, `results.csv`. What changed comes from harness/records/changes.py, which a
notifier asks too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from harness.core.errors import UsageError
from harness.core.files import atomic_write_bytes, is_component, own_directory
from harness.model.timing import TimingRecord
from harness.publish import charts, overview
from harness.publish.overview import GRID_NIGHTS
from harness.records import changes
from harness.records import history as hist
from harness.records.environment import FIELDS, LABELS
from harness.records.results import RESULT, HistoryEntry, Result

MARK = ".harness-site"
LOG_LINES = 80  # the worker log's tail on a model page
LOG_BYTES = 64 * 1024  # read at most this much of a log's end: a log may be gigabytes


def page_of(run_id: str, model: str) -> str:
    """A model's page of one run, relative to the site root; both names must be plain path components."""
    for what, name in (("run id", run_id), ("model", model)):
        if not isinstance(name, str) or not is_component(name):
            raise UsageError(f"{what} {name!r} is not a plain file name", hint="it names a page of the site")
    return f"runs/{run_id}/{model}.html"


def night_page(run_id: str) -> str:
    """A night's overview, relative to the site root (beside, not among, the model pages: a model may be called
    `index`)."""
    page_of(run_id, "index")  # the run id must be a plain path component
    return f"nights/{run_id}.html"


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
    env.filters["coco"] = lambda v: "–" if v is None or v < 0 else f"{v:.3f}"
    env.filters["short"] = lambda v, n=12: "-" if v is None else str(v)[:n]
    env.filters["hours"] = lambda s: "-" if s is None else f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"
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

    `history` (harness/records/history.py entries, tonight's included or not) gives the grid, the trends, the
    nights and what changed; without it every model has one night. Pages of other runs already in `out` are kept
    and linked. The environment of tonight's records comes from the run directories' run.json."""
    from harness.publish import report

    claim(out)
    env = _environment()
    metas = hist.run_records(run_dirs)
    tonight = [hist.entry(r, metas.get(r.run_id)) for r in records if r.carried is None]  # carried: not run
    keys = {(e.run_id, e.model) for e in tonight}
    merged = [e for e in (history or []) if (e.run_id, e.model) not in keys] + tonight
    merged.sort(key=lambda e: (e.finished or "", e.model))
    run_id = changes.runs(tonight)[-1] if tonight else records[-1].run_id
    summary = changes.tonight(merged, run_id)
    every = changes.runs(merged)
    every += [] if run_id in every else [run_id]
    columns = every[: every.index(run_id) + 1][-GRID_NIGHTS:]  # tonight and the nights before it
    pages = {page_of(r.run_id, r.model) for r in records}
    pages |= {p.relative_to(out).as_posix() for p in out.glob("runs/*/*.html")}
    marks = {r.model: "new" for r in summary.new} | {f.model: "fixed" for f in summary.fixed}
    grouped = changes.by_model(merged)
    rows, details = [], []
    for rec in records:
        upto = rec.carried.run_id if rec.carried is not None else rec.run_id  # carried: its nights until then
        nights = changes.series(grouped.get(rec.model, []), rec.model, upto)
        links = {r: p if (p := page_of(r, rec.model)) in pages else None for r in columns}
        row = overview.row(rec, nights, columns, page_of(rec.run_id, rec.model), links, marks.get(rec.model, ""))
        rows.append(row)

        def link(run: str, model: str = rec.model) -> str | None:
            return f"../../{page}" if (page := page_of(run, model)) in pages else None

        details.append((rec, row, charts.trends(rec, nights, link), nights))
    night_list = changes.nights(merged)
    written = {
        "index": out / "index.html",
        "night": out / night_page(run_id),
        "nights": out / "nights.html",
        "markdown": out / "report.md",
        "junit": out / "junit.xml",
        "csv": out / "results.csv",
    }
    context = _overview(records, overview.ordered(rows), summary, columns, night_list, merged)
    _write(written["index"], env.get_template("index.html").render(**context, root=""))
    _write(written["night"], env.get_template("index.html").render(**context, root="../"))
    _write(written["nights"], _nights_page(env, night_list, out, run_id))
    for rec, row, trend, nights in details:
        path = out / page_of(rec.run_id, rec.model)
        _write(path, _model_page(env, rec, row, trend, nights, run_dirs))
        written[rec.model] = path
    atomic_write_bytes(written["markdown"], report.markdown(records).encode())
    report.junit(records, written["junit"])
    report.csv(records, written["csv"])
    return written


def _overview(records, rows, summary: changes.Summary, columns, night_list, merged) -> dict:
    """What the overview shows: tonight's summary, the grid, the families, the notes."""
    from harness.publish import report

    families = Counter(r.family for r in rows)
    failing = Counter(r.family for r in rows if r.status not in ("pass", "carried"))
    night = next((n for n in night_list if n.run_id == summary.run_id), None)
    return {
        "rows": rows,
        "summary": summary,
        "counts": {**summary.counts, "carried": sum(r.carried is not None for r in records)},  # carried: apart
        "night": night,
        "families": [(f, n, failing.get(f, 0)) for f, n in sorted(families.items(), key=lambda x: x[0].lower())],
        "columns": columns,
        "runs": sorted({r.run_id for r in records}),
        "statuses": ["pass", "fail", "error", "carried"],
        "stacks": sorted({r.stack for r in rows}),
        "regressions": hist.regressions(merged, records),
        "notices": sorted({r.notice for r in records if r.notice}),  # a rehearsal says so at the top
        "notes": report.notes(records),
        "labels": LABELS,
    }


def _nights_page(env, night_list: list[changes.Night], out: Path, tonight: str) -> str:
    """Every night with its counts, duration, GPU-hours, environment, changes and the link to its overview."""

    def link(run: str) -> str | None:
        page = night_page(run)
        return page if run == tonight or (out / page).is_file() else None

    return env.get_template("nights.html").render(
        nights=list(reversed(night_list)),
        links={n.run_id: link(n.run_id) for n in night_list},
        charts=charts.night_trends(night_list, link),
        fields=FIELDS,
        root="",
    )


def _model_page(
    env, rec: Result, row: overview.Row, trend: list[charts.Chart], nights: list[HistoryEntry], run_dirs
) -> str:
    """One model's page of one run: verdicts, what changed, trends, stats, timing, weight check, environment,
    log."""
    from harness.publish import report

    return env.get_template("model.html").render(
        rec=rec,
        row=row,
        charts=trend,
        regression=changes.regression_in(nights),
        steps=list(reversed(changes.steps_in(nights)))[:10],
        night_env=nights[-1].env if nights else None,
        fields=FIELDS,
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
