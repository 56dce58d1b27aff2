"""The markdown tables: each model in its README table's own layout with the documented values, then what
was measured.

Rendered from result records alone (tabulate), so `harness report RUN_DIR` re-renders a run anywhere. A
record carries its table's layout (columns, which hold metrics, links and speeds) and the model's labels.
"""

from __future__ import annotations

import re
from pathlib import Path

from tabulate import tabulate

from harness.core.files import atomic_write_bytes
from harness.model.timing import TimingRecord
from harness.records.results import HistoryEntry, Result
from harness.zoo.kinds import KINDS
from harness.zoo.manifest import V1_TABLE, Table

SEED = V1_TABLE["columns"]  # the seed README's columns (configs/res2net/README.md)
SEED_TABLE = Table.model_validate(V1_TABLE)

# Record text is input like any other (a message, a label, a name from a zoo file): each output escapes it for
# its own syntax. XML 1.0 cannot carry most C0 controls at all, even escaped; markdown's table cells end at
# `|` and rows at a newline; a spreadsheet runs a CSV cell starting with = + - @ (or a tab / CR before them)
# as a formula (OWASP, "CSV Injection": prefix such cells with a `'`).
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
_CONTROL = re.compile("[\x00-\x1f\x7f]")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def xml_text(text: str) -> str:
    """`text` as XML 1.0 can carry it: forbidden characters shown as `\\xNN` (nothing is silently lost)."""
    return _XML_BAD.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def md_cell(text: object) -> str:
    """One markdown table cell (or list item) on one line: newlines and controls become spaces, `|` escaped."""
    return _CONTROL.sub(" ", str(text)).replace("|", "\\|")


def csv_cell(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: a string that would start a formula gets a leading `'`."""
    return f"'{value}" if isinstance(value, str) and value.startswith(_FORMULA) else value


def md_link(label: str, url: object) -> str:
    """`[label](url)` for an http(s) URL with nothing that ends a markdown link; anything else is not linked."""
    if isinstance(url, str) and re.fullmatch(r"https?://[^\s()<>\[\]|]+", url):
        return f"[{label}]({url})"
    return "-"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _fps(value: float | None) -> str:
    """Three significant digits: a Mask R-CNN on a CPU runs at 0.04 fps, which one decimal would show as 0.0."""
    return "-" if value is None else f"{value:.3g}"


def layout(rec: Result) -> tuple[Table, dict[str, str | int | float]]:
    """(table layout, labels) of a record; a record without a layout is shown in the seed's."""
    return rec.table.layout or SEED_TABLE, rec.table.labels


def _size(size: list[int]) -> str:
    """[320, 533] -> `320x533` (the eval Resize target, h×w)."""
    return "x".join(str(x) for x in size)


def _short(metric: str) -> str:
    """`box_ap` -> `box`, `mask_ap` -> `mask`, others as they are (`box_ap50`)."""
    return metric.removesuffix("_ap")


def measured_headers(table: Table) -> list[str]:
    """`Box AP` -> `measured box AP` (the seed's spelling); `AP val` stays `measured AP val`."""

    def lower(col: str) -> str:
        return col[:1].lower() + col[1:] if col[1:2].islower() else col

    return [f"measured {lower(col)}" for col in table.metrics] + ["Δ", "status"]


def row(rec: Result) -> list[str]:
    table, labels = layout(rec)
    cells = []
    for col in table.columns:
        if col in table.metrics:
            cells.append(_num(rec.documented.get(table.metrics[col])))
        elif col == table.weights:
            cells.append(md_link("model", rec.table.weights_url))
        elif col == table.config:
            cells.append(md_link("config", rec.table.config_url))
        elif col in table.fps and col not in labels:
            cells.append(_fps(rec.fps))  # a speed the README leaves empty: the harness's measurement
        else:
            cells.append(md_cell(labels.get(col, "-")))
    verdicts = [rec.verdict(m) for m in table.metrics.values()]
    deltas = [f"{_short(v.metric)} {v.delta:+.1f}" for v in verdicts if v is not None and v.delta is not None]
    measured = [_num(rec.measured(m), 2) for m in table.metrics.values()]
    return cells + measured + [" / ".join(deltas) or "-", md_cell(status_text(rec))]


def status_text(rec: Result) -> str:
    """A record's status for people: a carried-over model says so, with the night it stands for."""
    if rec.carried is not None:
        return f"carried over from {rec.carried.run_id}"
    return rec.status


def carried_note(rec: Result) -> str | None:
    """`unchanged since NIGHT (inputs DIGEST)`: why a model did not run tonight, never a pass of tonight."""
    c = rec.carried
    return None if c is None else f"unchanged since {c.run_id} (inputs {c.digest[:12]}): carried over, not run tonight"


def notes(records: list[Result]) -> list[str]:
    """What a reader must know to read the numbers: subsets, reduced sizes, devices, errors."""
    out = sorted({rec.notice for rec in records if rec.notice})
    carried = [r for r in records if r.carried is not None]
    if carried:
        out.append(
            f"{len(records) - len(carried)} models ran tonight, {len(carried)} carried over (their inputs are "
            "unchanged since their last pass: not passes of tonight)"
        )
    for rec in records:
        out += [f"{rec.model}: {n}" for n in _model_notes(rec)]
    records = [r for r in records if r.carried is None]  # what the ones that ran were measured on
    envs = sorted(
        {
            f"{r.device or '?'} ({r.device_name or '?'}){_threads(r)}, paddle {r.paddle or '?'}, "
            f"PaddleDetection {(r.ppdet.commit if r.ppdet else None) or '?'}"
            for r in records
        }
    )
    return out + [f"measured on {e}" for e in envs]


def _model_notes(rec: Result) -> list[str]:
    out = [note] if (note := carried_note(rec)) else []
    out += _geometry_notes(rec)
    if rec.ppdet is not None and rec.ppdet.dirty:
        shown = ", ".join(rec.ppdet.untracked[:3])
        extra = f" and untracked importable files ({shown})" if shown else ""
        out.append(f"PaddleDetection checkout with uncommitted changes{extra}: not the pinned source.")
    if rec.overrides:
        out.append(
            f"modified evaluation ({overrides_text(rec.overrides)}): not the config's own settings, "
            "the AP is not comparable with the documented one."
        )
    if rec.status == "error" and rec.error is not None:
        out.append(f"error in {rec.error.stage}: {rec.error.message.splitlines()[0] if rec.error.message else ''}")
    timing = rec.timing
    if timing is not None and timing.error:
        out.append(f"timing failed: {timing.error.splitlines()[0]}")
    elif timing is not None and timing.backend:
        b = timing.backends[timing.backend]
        size = timing.eval_size or rec.reduced_eval_size
        out.append(
            f"Inf time (fps) = {timing.backend} backend on {timing.device} "
            f"({timing.device_name}), batch 1, {b.config.get('precision', 'fp32')}, "
            f"{_size(size) if size else 'the config size'}, {b.iterations} timed images "
            f"(p50 {b.latency_ms['end_to_end'].p50:.0f} ms end to end; preprocess, model and "
            "postprocess included)"
        )
    return out


def _geometry_notes(rec: Result) -> list[str]:
    """The images and the size the model was evaluated on, when they are not the documented ones."""
    out = []
    ds, geo = rec.dataset, rec.geometry
    if ds is not None and ds.subset is not None:
        out.append(
            f"subset of {ds.subset.n} images (seed {ds.subset.seed}); AP on a "
            "subset is not comparable with the documented full-val2017 number."
        )
    if rec.reduced_eval_size:
        own = f" (the config's: {_size(geo.config)})" if geo is not None and geo.config else ""
        out.append(
            f"evaluated at {_size(rec.reduced_eval_size)}{own}: reduced for a smoke test, the AP is "
            "not comparable with the documented one."
        )
    elif geo is not None and geo.unscaled:
        out.append(f"--eval-size did not apply ({geo.unscaled}).")
    elif geo is not None and geo.changed_by == "input_size" and geo.eval and geo.config:
        out.append(f"evaluated at the documented input size {_size(geo.eval)} (the config's: {_size(geo.config)}).")
    return out


def _threads(rec: Result) -> str:
    """CPU threads of the eval: on a CPU they change the predictions (1 thread matches tools/eval.py)."""
    threads = rec.threads
    return f" with {threads} CPU thread{'s' if threads != 1 else ''}" if threads else ""


def overrides_text(overrides: dict, prefix: str = "") -> str:
    """`{"a": {"b": 1}}` -> `-o a.b=1`, as the user typed it."""
    parts = []
    for key, value in overrides.items():
        if isinstance(value, dict) and value:
            parts.append(overrides_text(value, f"{prefix}{key}."))
        else:
            parts.append(f"-o {prefix}{key}={value}")
    return " ".join(parts)


def markdown(records: list[Result]) -> str:
    """One table per README table the records come from (a single table is printed without a heading)."""
    groups: dict[str, list[Result]] = {}
    for rec in records:
        groups.setdefault(rec.table.name or "zoo", []).append(rec)
    lines: list[str] = []
    for name, recs in groups.items():
        table = layout(recs[0])[0]
        if len(groups) > 1:
            lines += [f"### {md_cell(name)}", ""]
        lines.append(
            tabulate(
                [row(r) for r in recs],
                headers=[md_cell(c) for c in table.columns + measured_headers(table)],
                tablefmt="github",
                disable_numparse=True,
            )
        )
        lines.append("")
    lines.pop()
    if extra := notes(records):
        lines += [""] + [f"- {md_cell(n)}" for n in extra]
    return "\n".join(lines) + "\n"


def timing_lines(timing: TimingRecord) -> list[str]:
    """A timing record for people: fps and latency percentiles per stage and backend, memory, fallbacks."""
    lines = [
        f"device: {timing.device} ({timing.device_name}), paddle {timing.paddle}, "
        f"{len(timing.sample_ids)} distinct images, eval size {timing.eval_size or 'config'}"
    ]
    rows = []
    for name, b in timing.backends.items():
        for stage, lat in b.latency_ms.items():
            last = stage == "end_to_end"
            peak = b.peak_memory.mb if b.peak_memory is not None else None
            rows.append(
                [
                    name,
                    stage,
                    *(f"{x:.1f}" for x in (lat.p50, lat.p90, lat.p99, lat.mean)),
                    f"{b.fps:.2f}" if last and b.fps is not None else "",
                    f"{peak:.0f}" if last and peak is not None else "",
                ]
            )
        for f in b.config.get("fallbacks") or []:
            lines.append(f"{name}: fell back from { ({k: v for k, v in f.items() if k != 'error'}) }: {f['error']}")
    table = tabulate(
        rows,
        headers=["backend", "stage", "p50 ms", "p90 ms", "p99 ms", "mean ms", "fps", "peak MB"],
        tablefmt="github",
        disable_numparse=True,
    )
    lines.insert(1, table)
    fid = timing.fidelity
    backends = (fid.__pydantic_extra__ or {}) if fid is not None else {}
    for name, f in backends.items():
        assert fid is not None
        deltas = ", ".join(
            f"{m} Δ {v.delta:+.2f}" for m, v in (f.__pydantic_extra__ or {}).items() if v.delta is not None
        )
        lines.append(
            f"deploy fidelity ({name} vs dygraph, {fid.images} images): {deltas}, "
            f"boxes reproduced {(f.box_match_rate or 0):.1%}"
        )
    return lines


def junit(records: list[Result], path) -> None:
    """JUnit XML (junitparser): one test case per model × documented metric; failures carry the reason."""
    from junitparser import JUnitXml, TestSuite

    suite = TestSuite("res2net-zoo")
    for rec in records:
        names = list(rec.metrics) or list(rec.documented) or ["box_ap"]
        for name in names:
            suite.add_testcase(_case(rec, name, float((rec.durations.total or 0) / max(len(names), 1))))
    xml = JUnitXml()
    xml.add_testsuite(suite)
    import io

    buf = io.BytesIO()
    xml.write(buf, pretty=True)
    atomic_write_bytes(Path(path), buf.getvalue())  # all or nothing, with the umask's mode


def _case(rec: Result, name: str, seconds: float):
    """One model × metric as a JUnit test case: an error (not measured), a failure (outside tolerance), or a pass."""
    from junitparser import Error, Failure, Skipped, TestCase

    case = TestCase(xml_text(name), classname=xml_text(rec.model))
    m = rec.verdict(name)
    if rec.carried is not None:
        case.result = [Skipped(xml_text(carried_note(rec) or ""))]
    elif rec.status == "error" and (m is None or m.status == "error"):
        msg = xml_text((rec.error.message if rec.error else None) or (m.reason if m else None) or "error")
        case.result = [Error((msg.splitlines() or ["error"])[0], "error")]
        case.system_out = msg
    elif m is not None and m.status == "fail":
        case.result = [Failure(xml_text(m.reason.replace(" (Δ", "; Δ").rstrip(")")), "fail")]
    elif m is not None and m.status == "error":
        case.result = [Error(xml_text(m.reason), "error")]
    case.time = seconds
    return case


def rows(records: list[Result]) -> list[dict]:
    """Flat rows (one per model) for CSV and other tables."""
    out = []
    for rec in records:
        timing, ds = rec.timing, rec.dataset
        row: dict[str, object] = {
            "run_id": rec.run_id,
            "model": rec.model,
            "status": rec.status,
            "fps": rec.fps,
            "fps_backend": timing.backend if timing else None,
            "device": rec.device,
            "device_name": rec.device_name,
            "threads": rec.threads,
            "overrides": overrides_text(rec.overrides) if rec.overrides else None,
            "paddle": rec.paddle,
            "ppdet_commit": rec.ppdet.commit if rec.ppdet else None,
            "num_images": ds.num_images if ds else None,
            "subset": ds.subset.n if ds and ds.subset else None,
            "eval_size": rec.reduced_eval_size[0] if rec.reduced_eval_size else None,
            "error": (rec.error.message.split("\n")[0] or None) if rec.error else None,
            "carried_from": rec.carried.run_id if rec.carried else None,
            "carried_digest": rec.carried.digest if rec.carried else None,
        }
        # one group of columns per kind of the kinds table (per judged number of a kind judged on several)
        for name in (m for k in KINDS.values() for m in k.csv_metrics):
            m = rec.verdict(name)
            for field in ("measured", "documented", "delta", "tolerance", "status"):
                row[f"{name}_{field}"] = getattr(m, field) if m is not None else None
        out.append(row)
    return out


def csv(records: list[Result], path) -> None:
    """results.csv with the standard library's csv module: reports need no pandas (the site writes it too)."""
    import csv as std
    import io

    table = rows(records)
    buf = io.StringIO()
    writer = std.DictWriter(buf, fieldnames=list(table[0]) if table else ["model"], lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: csv_cell(v) for k, v in r.items()} for r in table)
    atomic_write_bytes(Path(path), buf.getvalue().encode())


def history_markdown(history: list[HistoryEntry], records: list[Result], regressions: list[str], last: int = 5) -> str:
    from harness.records.history import recent

    lines = ["## Regressions against the last passing run", ""]
    lines += [f"- {r}" for r in regressions] or ["- none"]
    lines += ["", f"## Last {last} runs", ""]
    table = []
    for rec in records:
        runs = recent(history, rec.model, last)
        for name in rec.documented:
            cells = []
            for e in runs:
                value = _num(e.measured(name), 2)
                fps = f", {e.fps:.2f} fps" if e.fps else ""
                cells.append(f"{e.run_id}: {value} {e.status}{fps}")
            table.append([rec.model, name, "<br>".join(cells) or "-"])
    lines.append(
        tabulate(table, headers=["model", "metric", "runs (oldest first)"], tablefmt="github", disable_numparse=True)
    )
    return "\n".join(lines) + "\n"


def publish(records: list[Result], out_dir, *, history_path=None, run_dirs=()) -> dict:
    """Everything a run leaves for people and CI: report.md, junit.xml, results.csv, and with a history
    store also the history sections and the plots (the history keeps each night's environment, read from the
    run directories' run.json). Also appends the markdown to $GITHUB_STEP_SUMMARY."""
    import os

    from harness.publish import plots
    from harness.records import history as hist

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = markdown(records)
    written = {"junit": out_dir / "junit.xml", "csv": out_dir / "results.csv"}
    junit(records, written["junit"])
    csv(records, written["csv"])
    if history_path is not None:
        history = hist.append(Path(history_path), records, hist.run_records([Path(d) for d in run_dirs]))
        regressions = hist.regressions(history, records)
        text += "\n" + history_markdown(history, records, regressions)
        written["history"] = Path(history_path)
        written["plot_ap"] = out_dir / "ap_per_run.png"
        written["plot_fps"] = out_dir / "ap_vs_fps.png"
        plots.ap_per_run(history, written["plot_ap"])
        plots.ap_vs_fps(history, written["plot_fps"])
        text += "\n![AP per run](ap_per_run.png)\n\n![AP vs fps](ap_vs_fps.png)\n"
    written["markdown"] = out_dir / "report.md"
    atomic_write_bytes(written["markdown"], text.encode())
    if summary := os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(summary, "a") as f:
            f.write(text)
    return {"text": text, **{k: str(v) for k, v in written.items()}}
