"""A night as text: the markdown report (each model in its README table's own layout with the documented values,
then what was measured; with a history, tonight's transitions and the last runs), JUnit XML and the CSV.

Pure renderers of the night's view (publish/view.py), so `harness report RUN_DIR` re-renders a run anywhere and
every output says what the page says. A record carries its table's layout (columns, which hold metrics, links
and speeds) and the model's labels.
"""

from __future__ import annotations

import re

from tabulate import tabulate

from harness.model.timing import TimingRecord
from harness.publish.notes import carried_note, overrides_text, status_text
from harness.publish.view import Night
from harness.records.alerts import Alert, Number
from harness.records.results import Result
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


def tables(records: list[Result]) -> list[str]:
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
    return lines[:-1]


def table_text(night: Night) -> str:
    """The tables and the notes: what `harness report RUN` prints without a history, and `--out` writes."""
    lines = tables(night.records)
    if night.notes:
        lines += [""] + [f"- {md_cell(n)}" for n in night.notes]
    return "\n".join(lines) + "\n"


def markdown(night: Night, table: str | None = None) -> str:
    """The report: the tables and the notes (`table`, when already rendered), and with a history tonight's
    transitions and the last runs."""
    text = table_text(night) if table is None else table
    return text + "\n" + tonight(night) + "\n" + last_runs(night) if night.judged else text


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


def junit(night: Night) -> bytes:
    """JUnit XML (junitparser): one test case per model × documented metric; failures carry the reason."""
    from junitparser import JUnitXml, TestSuite

    suite = TestSuite("res2net-zoo")
    for rec in night.records:
        names = list(rec.metrics) or list(rec.documented) or ["box_ap"]
        for name in names:  # append, then count once: add_testcase recounts the suite each time (quadratic)
            suite.append(_case(rec, name, float((rec.durations.total or 0) / max(len(names), 1))))
    suite.update_statistics()
    xml = JUnitXml()
    xml.add_testsuite(suite)
    import io

    buf = io.BytesIO()
    xml.write(buf, pretty=True)
    return buf.getvalue()


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


def csv(night: Night) -> bytes:
    """results.csv with the standard library's csv module: reports need no pandas."""
    import csv as std
    import io

    table = rows(night.records)
    buf = io.StringIO()
    writer = std.DictWriter(buf, fieldnames=list(table[0]) if table else ["model"], lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: csv_cell(v) for k, v in r.items()} for r in table)
    return buf.getvalue().encode()


def files(night: Night, table: str | None = None) -> dict[str, bytes]:
    """The night's text outputs, each rendered once: report.md (from `table`, when already rendered), junit.xml,
    results.csv."""
    return {"report.md": markdown(night, table).encode(), "junit.xml": junit(night), "results.csv": csv(night)}


# ---- tonight's transitions, as the page and the alerts have them -------------------------------------------

SMALL = 12  # a zoo this small lists every model's last runs; a larger one those that changed or fail


def number(n: Number) -> str:
    """`box_ap 41.20 (documented 42.4 ± 0.3, Δ -1.20)`."""
    if n.tonight is None:
        return f"{n.metric} not measured"
    tol = f" ± {n.tolerance:g}" if n.tolerance is not None else ""
    doc = (
        f"documented {n.documented:g}{tol}, Δ {n.delta:+.2f}"
        if n.documented is not None and n.delta is not None
        else ""
    )
    return f"{n.metric} {n.tonight:.2f}" + (f" ({doc})" if doc else "")


def environment(alert: Alert) -> str:
    """What changed since the last good night, each change with its compare link (markdown)."""
    if not alert.last_good:
        return "no earlier passing night to compare with"
    if not alert.compared:
        return f"the environment of {alert.last_good} is not recorded"
    if not alert.environment:
        return f"same environment as {alert.last_good} ({', '.join(alert.compared)})"
    shown = [c.text() + (f" ({md_link('compare', c.link)})" if c.link else "") for c in alert.environment]
    return f"after {'; '.join(md_cell(x) for x in shown)}"


def alert_line(alert: Alert) -> str:
    """One alert in one markdown line: the transition, the numbers against tolerance, what changed."""
    if alert.kind == "speed" and alert.speed is not None:
        st = alert.speed
        what = (
            f"fps {st.level.fps:.3g} → {st.after:.3g} ({st.change:+.0%}) since {st.since} ({st.nights} nights; "
            f"its level ± noise {st.level.noise:.2g} over the nights before, {st.device_name or 'same device'}, "
            f"{st.backend or '?'} backend)"
        )
    elif alert.error:
        what = f"{alert.error}"
    else:
        what = ", ".join(number(n) for n in alert.numbers if n.status != "pass") or alert.status
    since = "" if alert.new else f", {alert.nights} nights, last pass {alert.last_good or 'never'}"
    return f"**{md_cell(alert.model)}**: {alert.transition}{since}: {md_cell(what)}; {environment(alert)}"


def tonight(night: Night) -> str:
    """Tonight's transitions: new failures and errors, fixed, slower, still failing, carried over."""
    s = night.summary
    new = [a for a in night.alerts if a.new and a.kind == "failure"]
    slower = [a for a in night.alerts if a.new and a.kind == "speed"]
    still = [a for a in night.alerts if not a.new and a.kind == "failure"]
    lines = [f"## Tonight: {md_cell(night.run_id)}", ""]
    lines += [f"- new failures ({len(new)})" + (":" if new else "")] + [f"  - {alert_line(a)}" for a in new]
    lines += [f"- fixed ({len(s.fixed)})" + (":" if s.fixed else "")]
    lines += [f"  - {md_cell(f.model)}: passes again after {f.nights} nights (since {f.since})" for f in s.fixed]
    lines += [f"- slower ({len(slower)})" + (":" if slower else "")] + [f"  - {alert_line(a)}" for a in slower]
    lines += [f"- still failing ({len(still)})" + (":" if still else "")] + [f"  - {alert_line(a)}" for a in still]
    if night.carried:
        lines.append(f"- carried over ({len(night.carried)}): unchanged since their last pass, not run tonight")
    return "\n".join(lines) + "\n"


def last_runs(night: Night, last: int = 5) -> str:
    """Each model's last runs per documented metric (in a large zoo only the models that changed or fail)."""
    tags = night.marks
    shown = [
        m for m in night.models if len(night.models) <= SMALL or m.model in tags or m.rec.status in ("fail", "error")
    ]
    table = []
    for m in sorted(shown, key=lambda m: m.rec.zoo_index):
        for name in m.rec.documented:
            cells = []
            for e in m.nights[-last:]:
                fps = f", {e.fps:.2f} fps" if e.fps else ""
                cells.append(f"{e.run_id}: {_num(e.measured(name), 2)} {e.status}{fps}")
            table.append([md_cell(m.model), name, "<br>".join(cells) or "-"])
    which = "" if len(night.models) <= SMALL else " of the models that changed tonight or fail"
    head = f"## Last {last} runs{which}\n\n"
    if not table:
        return head + "- none\n"
    headers = ["model", "metric", "runs (oldest first)"]
    return head + tabulate(table, headers=headers, tablefmt="github", disable_numparse=True) + "\n"
