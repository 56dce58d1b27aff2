"""The nightly's web page: a static site rendered from a night's view (`harness report --html`).

Why static: the nightly runs offline and GitHub Pages (or any file server, or a file:// URL) hosts it; nothing
is fetched from elsewhere at view time (a Content-Security-Policy in every page allows the site's own stylesheet
and script only). Pages are rendered with jinja2 (autoescaping: a worker log or a record is data, never markup);
charts are inline SVG laid out in charts.py, in plain numbers, so a test can check them without a browser. The
site directory is the harness's own: it refuses a non-empty directory it did not make and writes each file
atomically. Everything shown comes from publish/view.py's `Night`; this module only lays it out and writes it.

Layout, and why its size is bounded (a year of nightly runs of 355 models stays far under GitHub Pages' 1 GB):
- `index.html`: tonight's summary (counts, new failures, fixed, slower, still failing since when, errors by stage,
  steps), then the model × night grid of the last 30 nights (judgement.GRID_NIGHTS), failing first, with filters
  and sortable columns; rewritten every night;
- `models/<model>.html`: the model's page: tonight's verdicts, what changed since it last passed, its speed,
  trend charts over its nights; rewritten every night (one per model, whatever the number of nights);
- `runs/<run>/<model>.html`: that night's record of the model (stats, timing, weight check, environment,
  artifacts, the worker log's tail); kept for the last `keep` nights (KEEP by default), older ones deleted;
- `nights/<run>.html`: that night's summary alone (a few kB), kept for every night; `nights.html` lists them;
- `assets/`: the stylesheet and the script every page shares; `report.md`, `junit.xml`, `results.csv`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

from harness.core.errors import UsageError
from harness.core.files import atomic_write_bytes, is_component, own_directory
from harness.model.timing import TimingRecord
from harness.publish import charts, report, view
from harness.publish.notes import overrides_text, timing_note
from harness.publish.view import ModelNight, Night
from harness.records.environment import FIELDS
from harness.records.results import RESULT, HistoryEntry, Result

MARK = ".harness-site"
VERSION = 2  # the pages' layout: a night page of another version is written again from the history
KEEP = 30  # nights whose records of each model the site keeps (the grid's nights)
LOG_LINES = 80  # the worker log's tail on a record page
LOG_BYTES = 64 * 1024  # read at most this much of a log's end: a log may be gigabytes
PHONE_NIGHTS = 6  # the grid's nights a phone shows (the others are hidden on a narrow screen)
STATUSES = ["pass", "fail", "error", "carried"]
ASSETS = ("site.css", "site.js")

Link = Callable[[str, str], str | None]  # (run id, model) -> the record page, relative to the site root


def _component(what: str, name: object) -> str:
    if not isinstance(name, str) or not is_component(name):
        raise UsageError(f"{what} {name!r} is not a plain file name", hint="it names a page of the site")
    return name


def page_of(run_id: str, model: str) -> str:
    """A night's record of a model, relative to the site root; both names must be plain path components."""
    return f"runs/{_component('run id', run_id)}/{_component('model', model)}.html"


def model_page(model: str) -> str:
    """A model's page, relative to the site root."""
    return f"models/{_component('model', model)}.html"


def night_page(run_id: str) -> str:
    """A night's summary, relative to the site root."""
    return f"nights/{_component('run id', run_id)}.html"


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


@functools.cache
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
    env.filters["device_hours"] = charts.hours_label
    env.filters["model_page"] = model_page
    env.globals["version"] = VERSION
    return env


def safe_url(url: object) -> str | None:
    """Only http(s) URLs become links: a record's `javascript:` or `data:` URL is shown as text."""
    return url if isinstance(url, str) and url.lower().startswith(("http://", "https://")) else None


def build(
    records: list[Result],
    out: Path,
    *,
    history: Sequence[HistoryEntry] | None = None,
    run_dirs: Sequence[Path] = (),
    keep: int | None = None,
) -> dict[str, Path]:
    """The site of these records, as `harness report --html` writes it, for a caller holding records and a loaded
    history (the night's view is built here, tonight's results merged into the history)."""
    night = view.of(records, history, run_dirs)
    return write(night, out, report.files(night), run_dirs, keep=keep)


def write(
    night: Night, out: Path, files: dict[str, bytes], run_dirs: Sequence[Path] = (), *, keep: int | None = None
) -> dict[str, Path]:
    """Write the night's site into `out` (claimed first): the pages, the shared assets, `files` (report.md,
    junit.xml, results.csv, rendered once by the caller), then delete the records of nights older than the last
    `keep`. Returns the pages written (name -> path)."""
    for r in night.records:  # every page name is a plain file name, checked before anything is written
        page_of(r.run_id, r.model)
    claim(out)
    keep = KEEP if keep is None else keep
    if keep < 1:
        raise UsageError(f"--keep-nights {keep}: at least tonight's records are kept", hint="give 1 or more")
    for part in ("runs", "models", "nights", "assets"):  # the site writes and deletes only inside itself
        if (out / part).is_symlink():
            raise UsageError(f"--html {out}: {part}/ is a link", hint="remove the link: the site's folders are its own")
    env = _environment()
    pruned = prune(out, kept_nights(night, keep)) if night.judged else set()  # without a history: keep every night
    found = {p.relative_to(out).as_posix() for p in out.glob("runs/*/*.html")} - pruned
    pages = {tuple(p[len("runs/") : -len(".html")].split("/", 1)) for p in found}
    pages |= {(r.run_id, r.model) for r in night.records}

    def link(run: str, model: str) -> str | None:
        return f"runs/{run}/{model}.html" if (run, model) in pages else None  # names checked when written

    written = {name: out / "assets" / name for name in ASSETS}
    for name, path in written.items():
        atomic_write_bytes(path, resources.files("harness.publish").joinpath("templates", "assets", name).read_bytes())
    for name, data in files.items():
        written[name] = out / name
        atomic_write_bytes(written[name], data)
    written["index"] = _write(out / "index.html", _index(env, night, link))
    written["night"] = _write(out / night_page(night.run_id), _night(env, night, night.summary))
    _older_nights(env, night, out)
    written["nights"] = _write(out / "nights.html", _nights_page(env, night, out, keep))
    for m in night.models:
        written[m.model] = _write(out / model_page(m.model), _model_page(env, m, link))
        _write(out / page_of(m.rec.run_id, m.model), _record_page(env, m, run_dirs))
    return written


def kept_nights(night: Night, keep: int) -> set[str]:
    """The nights whose record pages the site keeps: the last `keep` of the history, tonight always."""
    return {n.run_id for n in night.nights[-keep:]} | {night.run_id}


def prune(out: Path, kept: set[str]) -> set[str]:
    """Delete the record pages of nights not kept (the site's own `runs/<run>/*.html`; a link is removed, never
    followed) and their directories once empty; returns the pages deleted, relative to the site root."""
    gone = set()
    for run in sorted((out / "runs").glob("*")):
        if run.name in kept or run.is_symlink() or not run.is_dir():
            continue
        for page in run.glob("*.html"):
            page.unlink()
            gone.add(page.relative_to(out).as_posix())
        if not any(run.iterdir()):
            run.rmdir()
    return gone


def _index(env, night: Night, link: Link) -> str:
    """The overview: tonight's summary and the grid."""
    rows = [m.row for m in night.models]
    return env.get_template("index.html").render(
        root="",
        rows=rows,
        summary=night.summary,
        counts=night.counts,
        this=night.this,
        families=night.families,
        columns=night.columns,
        runs=sorted({r.run_id for r in night.records}),
        statuses=STATUSES,
        stacks=sorted({r.stack for r in rows}),
        notices=night.notices,
        notes=night.page_notes,
        record=link,
        phone_nights=PHONE_NIGHTS,
    )


def _night(env, night: Night, summary, *, notes: bool = True) -> str:
    """A night's own page: its summary (tonight's with its notes and carried count; an older one from the
    history)."""
    this = next((n for n in night.nights if n.run_id == summary.run_id), None)
    tonight = summary.run_id == night.run_id
    return env.get_template("night.html").render(
        root="../",
        summary=summary,
        counts=night.counts if tonight else summary.counts,
        this=this,
        statuses=STATUSES,
        models=sum(summary.counts.values()) + (len(night.carried) if tonight else 0),
        notices=night.notices,
        notes=night.page_notes if tonight and notes else [],
    )


def _older_nights(env, night: Night, out: Path) -> None:
    """An earlier night's page of another layout (a site of an earlier harness kept a copy of the whole overview
    per night, 1.4 MB at 355 models) is written again as that night's summary, from the history."""
    for n in night.nights:
        path = out / night_page(n.run_id)
        if n.run_id != night.run_id and path.is_file() and not path.is_symlink() and _version(path) != VERSION:
            _write(path, _night(env, night, night.summary_of(n.run_id), notes=False))


def _version(path: Path) -> int | None:
    """The layout version a page was written with (its `generator` meta tag), None when it has none."""
    with path.open("rb") as f:
        head = f.read(600).decode("utf-8", "replace")
    marker = 'content="harness site '
    at = head.find(marker)
    digits = head[at + len(marker) :].split('"', 1)[0] if at >= 0 else ""
    return int(digits) if digits.isdigit() else None


def _nights_page(env, night: Night, out: Path, keep: int) -> str:
    """Every night with its counts, duration, device-hours, environment, changes and the link to its summary."""

    def link(run: str) -> str | None:
        page = night_page(run)
        return page if run == night.run_id or (out / page).is_file() else None

    return env.get_template("nights.html").render(
        nights=list(reversed(night.nights)),
        links={n.run_id: link(n.run_id) for n in night.nights},
        charts=charts.night_trends(night.nights, link),
        fields=FIELDS,
        root="",
        notices=night.notices,
        keep=keep,
    )


def _model_page(env, m: ModelNight, link: Link) -> str:
    """A model's page: verdicts, what changed, its speed, trends over its nights (dots link to kept records)."""

    def dot(run: str) -> str | None:
        return f"../{page}" if (page := link(run, m.model)) else None

    return env.get_template("model.html").render(
        rec=m.rec,
        row=m.row,
        charts=charts.trends(m.rec, m.nights, dot, m.fps_marks),
        regression=m.regression,
        speed=m.speed,
        steps=list(reversed(m.steps))[:10],
        record=link,
        notices=[m.rec.notice] if m.rec.notice else [],
        root="../",
    )


def _record_page(env, m: ModelNight, run_dirs: Sequence[Path]) -> str:
    """A night's record of a model: verdicts, stats, timing, weight check, environment, artifacts, log."""
    rec = m.rec
    return env.get_template("record.html").render(
        rec=rec,
        row=m.row,
        night_env=m.nights[-1].env if m.nights else None,
        fields=FIELDS,
        timing=_timing_rows(rec.timing),
        timing_note=timing_note(rec),
        durations=rec.durations.model_dump(exclude_none=True),
        log=log_tail(run_dirs, rec),
        overrides=overrides_text(rec.overrides) if rec.overrides else "",
        notices=[rec.notice] if rec.notice else [],
        root="../../",
    )


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


def _timing_rows(timing: TimingRecord | None) -> list[dict]:
    """Latency percentiles per backend and stage, as the record page's table shows them."""
    out = []
    for name, b in (timing.backends if timing else {}).items():
        for stage, lat in b.latency_ms.items():
            fps = b.fps if stage == "end_to_end" else None
            out.append({"backend": name, "stage": stage, **lat.model_dump(), "fps": fps})
    return out


def _write(path: Path, html: str) -> Path:
    atomic_write_bytes(path, html.encode())
    return path
