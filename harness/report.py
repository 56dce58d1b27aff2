"""The markdown tables: each model in its README table's own layout with the documented values, then what
was measured.

Rendered from result records alone (tabulate), so `harness report RUN_DIR` re-renders a run anywhere. A
record carries its table's layout (columns, which hold metrics, links and speeds) and the model's labels.
"""

from __future__ import annotations

import re
from pathlib import Path

from tabulate import tabulate

from harness.files import atomic_write_bytes
from harness.manifest import V1_LABELS, V1_TABLE

SEED = V1_TABLE["columns"]  # the seed README's columns (configs/res2net/README.md)

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


def _metric(rec: dict, name: str) -> dict:
    return (rec.get("metrics") or {}).get(name) or {}


def layout(rec: dict) -> tuple[dict, dict]:
    """(table layout, labels) of a record; records written before layouts existed have the seed's."""
    t = rec.get("table") or {}
    if "layout" in t:
        return t["layout"], t.get("labels") or {}
    return V1_TABLE, {title: t[key] for key, title in V1_LABELS.items() if key in t}


def _size(size: list[int]) -> str:
    """[320, 533] -> `320x533` (the eval Resize target, h×w)."""
    return "x".join(str(x) for x in size)


def _short(metric: str) -> str:
    """`box_ap` -> `box`, `mask_ap` -> `mask`, others as they are (`box_ap50`)."""
    return metric.removesuffix("_ap")


def measured_headers(table: dict) -> list[str]:
    """`Box AP` -> `measured box AP` (the seed's spelling); `AP val` stays `measured AP val`."""

    def lower(col: str) -> str:
        return col[:1].lower() + col[1:] if col[1:2].islower() else col

    return [f"measured {lower(col)}" for col in table["metrics"]] + ["Δ", "status"]


def row(rec: dict) -> list[str]:
    table, labels = layout(rec)
    t = rec.get("table") or {}
    doc = rec.get("documented") or {}
    fps = (rec.get("timing") or {}).get("fps")
    cells = []
    for col in table["columns"]:
        if col in table["metrics"]:
            cells.append(_num(doc.get(table["metrics"][col])))
        elif col == table.get("weights"):
            cells.append(md_link("model", t.get("weights_url")))
        elif col == table.get("config"):
            cells.append(md_link("config", t.get("config_url")))
        elif col in table.get("fps", []) and col not in labels:
            cells.append(_fps(fps))  # a speed the README leaves empty: the harness's measurement
        else:
            cells.append(md_cell(labels.get(col, "-")))
    deltas = [
        f"{_short(m)} {d:+.1f}" for m in table["metrics"].values() if (d := _metric(rec, m).get("delta")) is not None
    ]
    measured = [_num(_metric(rec, m).get("measured"), 2) for m in table["metrics"].values()]
    return cells + measured + [" / ".join(deltas) or "-", md_cell(rec.get("status", "?"))]


def notes(records: list[dict]) -> list[str]:
    """What a reader must know to read the numbers: subsets, reduced sizes, devices, errors."""
    out = sorted({rec["notice"] for rec in records if rec.get("notice")})
    for rec in records:
        name = rec["model"]
        ds = rec.get("dataset") or {}
        if ds.get("subset"):
            out.append(
                f"{name}: subset of {ds['subset']['n']} images (seed {ds['subset']['seed']}); AP on a "
                "subset is not comparable with the documented full-val2017 number."
            )
        geo = rec.get("geometry") or {}
        if ds.get("eval_size"):
            own = f" (the config's: {_size(geo['config'])})" if geo.get("config") else ""
            out.append(
                f"{name}: evaluated at {_size(ds['eval_size'])}{own}: reduced for a smoke test, the AP is "
                "not comparable with the documented one."
            )
        elif geo.get("unscaled"):
            out.append(f"{name}: --eval-size did not apply ({geo['unscaled']}).")
        elif geo.get("changed_by") == "input_size":
            out.append(
                f"{name}: evaluated at the documented input size {_size(geo['eval'])} (the config's: "
                f"{_size(geo['config'])})."
            )
        ppdet = rec.get("ppdet") or {}
        if ppdet.get("dirty"):
            shown = ", ".join((ppdet.get("untracked") or [])[:3])
            extra = f" and untracked importable files ({shown})" if shown else ""
            out.append(f"{name}: PaddleDetection checkout with uncommitted changes{extra}: not the pinned source.")
        if rec.get("overrides"):
            out.append(
                f"{name}: modified evaluation ({overrides_text(rec['overrides'])}): not the config's own settings, "
                "the AP is not comparable with the documented one."
            )
        if rec.get("status") == "error" and rec.get("error"):
            out.append(
                f"{name}: error in {rec['error'].get('stage', '?')}: {rec['error'].get('message', '').splitlines()[0]}"
            )
        timing = rec.get("timing") or {}
        if timing.get("error"):
            out.append(f"{name}: timing failed: {timing['error'].splitlines()[0]}")
        elif timing.get("backend"):
            b = timing["backends"][timing["backend"]]
            size = timing.get("eval_size") or ds.get("eval_size")
            out.append(
                f"{name}: Inf time (fps) = {timing['backend']} backend on {timing.get('device')} "
                f"({timing.get('device_name')}), batch 1, {b['config'].get('precision', 'fp32')}, "
                f"{_size(size) if size else 'the config size'}, {b['iterations']} timed images "
                f"(p50 {b['latency_ms']['end_to_end']['p50']:.0f} ms end to end; preprocess, model and "
                "postprocess included)"
            )
    envs = sorted(
        {
            f"{r.get('device', '?')} ({r.get('device_name', '?')}){_threads(r)}, paddle {r.get('paddle', '?')}, "
            f"PaddleDetection {(r.get('ppdet') or {}).get('commit') or '?'}"
            for r in records
        }
    )
    out += [f"measured on {e}" for e in envs]
    return out


def _threads(rec: dict) -> str:
    """CPU threads of the eval: on a CPU they change the predictions (1 thread matches tools/eval.py)."""
    threads = rec.get("threads")
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


def markdown(records: list[dict]) -> str:
    """One table per README table the records come from (a single table is printed without a heading)."""
    groups: dict[str, list[dict]] = {}
    for rec in records:
        groups.setdefault((rec.get("table") or {}).get("name") or "zoo", []).append(rec)
    lines: list[str] = []
    for name, recs in groups.items():
        table = layout(recs[0])[0]
        if len(groups) > 1:
            lines += [f"### {md_cell(name)}", ""]
        lines.append(
            tabulate(
                [row(r) for r in recs],
                headers=[md_cell(c) for c in table["columns"] + measured_headers(table)],
                tablefmt="github",
                disable_numparse=True,
            )
        )
        lines.append("")
    lines.pop()
    if extra := notes(records):
        lines += [""] + [f"- {md_cell(n)}" for n in extra]
    return "\n".join(lines) + "\n"


def timing_lines(timing: dict) -> list[str]:
    """A timing record for people: fps and latency percentiles per stage and backend, memory, fallbacks."""
    lines = [
        f"device: {timing.get('device')} ({timing.get('device_name')}), paddle {timing.get('paddle')}, "
        f"{len(timing.get('sample_ids', []))} distinct images, eval size {timing.get('eval_size') or 'config'}"
    ]
    rows = []
    for name, b in timing.get("backends", {}).items():
        for stage, lat in b["latency_ms"].items():
            rows.append(
                [
                    name,
                    stage,
                    f"{lat['p50']:.1f}",
                    f"{lat['p90']:.1f}",
                    f"{lat['p99']:.1f}",
                    f"{lat['mean']:.1f}",
                    f"{b['fps']:.2f}" if stage == "end_to_end" else "",
                    f"{b['peak_memory']['mb']:.0f}" if stage == "end_to_end" else "",
                ]
            )
        for f in b["config"].get("fallbacks") or []:
            lines.append(f"{name}: fell back from { ({k: v for k, v in f.items() if k != 'error'}) }: {f['error']}")
    table = tabulate(
        rows,
        headers=["backend", "stage", "p50 ms", "p90 ms", "p99 ms", "mean ms", "fps", "peak MB"],
        tablefmt="github",
        disable_numparse=True,
    )
    lines.insert(1, table)
    fid = timing.get("fidelity")
    if fid:
        for name, f in fid.items():
            if isinstance(f, dict) and "box_match_rate" in f:
                deltas = ", ".join(f"{m} Δ {v['delta']:+.2f}" for m, v in f.items() if isinstance(v, dict))
                lines.append(
                    f"deploy fidelity ({name} vs dygraph, {fid['images']} images): {deltas}, "
                    f"boxes reproduced {f['box_match_rate']:.1%}"
                )
    return lines


def junit(records: list[dict], path) -> None:
    """JUnit XML (junitparser): one test case per model × documented metric; failures carry the reason."""
    from junitparser import Error, Failure, JUnitXml, TestCase, TestSuite

    suite = TestSuite("res2net-zoo")
    for rec in records:
        metrics = rec.get("metrics") or {}
        names = list(metrics) or list((rec.get("documented") or {}).keys()) or ["box_ap"]
        for name in names:
            case = TestCase(xml_text(name), classname=xml_text(rec["model"]))
            m = metrics.get(name)
            if rec.get("status") == "error" and (m is None or m.get("status") == "error"):
                msg = xml_text((rec.get("error") or {}).get("message") or (m or {}).get("reason") or "error")
                case.result = [Error((msg.splitlines() or ["error"])[0], "error")]
                case.system_out = msg
            elif m and m["status"] == "fail":
                case.result = [Failure(xml_text(m["reason"].replace(" (Δ", "; Δ").rstrip(")")), "fail")]
            elif m and m["status"] == "error":
                case.result = [Error(xml_text(m["reason"]), "error")]
            case.time = float(((rec.get("durations") or {}).get("total") or 0) / max(len(names), 1))
            suite.add_testcase(case)
    xml = JUnitXml()
    xml.add_testsuite(suite)
    import io

    buf = io.BytesIO()
    xml.write(buf, pretty=True)
    atomic_write_bytes(Path(path), buf.getvalue())  # all or nothing, with the umask's mode


def rows(records: list[dict]) -> list[dict]:
    """Flat rows (one per model) for CSV and other tables."""
    out = []
    for rec in records:
        timing = rec.get("timing") or {}
        ds = rec.get("dataset") or {}
        row = {
            "run_id": rec.get("run_id"),
            "model": rec["model"],
            "status": rec["status"],
            "fps": timing.get("fps"),
            "fps_backend": timing.get("backend"),
            "device": rec.get("device"),
            "device_name": rec.get("device_name"),
            "threads": rec.get("threads"),
            "overrides": overrides_text(rec["overrides"]) if rec.get("overrides") else None,
            "paddle": rec.get("paddle"),
            "ppdet_commit": (rec.get("ppdet") or {}).get("commit"),
            "num_images": ds.get("num_images"),
            "subset": (ds.get("subset") or {}).get("n"),
            "eval_size": (ds.get("eval_size") or [None])[0],
            "error": ((rec.get("error") or {}).get("message") or "").split("\n")[0] or None,
        }
        for name in ("box_ap", "mask_ap"):
            m = (rec.get("metrics") or {}).get(name) or {}
            for field in ("measured", "documented", "delta", "tolerance", "status"):
                row[f"{name}_{field}"] = m.get(field)
        out.append(row)
    return out


def csv(records: list[dict], path) -> None:
    """results.csv with the standard library's csv module: reports need no pandas (the site writes it too)."""
    import csv as std
    import io

    table = rows(records)
    buf = io.StringIO()
    writer = std.DictWriter(buf, fieldnames=list(table[0]) if table else ["model"], lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: csv_cell(v) for k, v in r.items()} for r in table)
    atomic_write_bytes(Path(path), buf.getvalue().encode())


def history_markdown(history: list[dict], records: list[dict], regressions: list[str], last: int = 5) -> str:
    from harness.history import recent

    lines = ["## Regressions against the last passing run", ""]
    lines += [f"- {r}" for r in regressions] or ["- none"]
    lines += ["", f"## Last {last} runs", ""]
    table = []
    for rec in records:
        runs = recent(history, rec["model"], last)
        for name in rec.get("documented") or {}:
            cells = []
            for e in runs:
                m = e["metrics"].get(name) or {}
                value = _num(m.get("measured"), 2)
                fps = f", {e['fps']:.2f} fps" if e.get("fps") else ""
                cells.append(f"{e['run_id']}: {value} {e['status']}{fps}")
            table.append([rec["model"], name, "<br>".join(cells) or "-"])
    lines.append(
        tabulate(table, headers=["model", "metric", "runs (oldest first)"], tablefmt="github", disable_numparse=True)
    )
    return "\n".join(lines) + "\n"


def publish(records: list[dict], out_dir, *, history_path=None) -> dict:
    """Everything a run leaves for people and CI: report.md, junit.xml, results.csv, and with a history
    store also the history sections and the plots. Also appends the markdown to $GITHUB_STEP_SUMMARY."""
    import os

    from harness import history as hist
    from harness import plots

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = markdown(records)
    written = {"junit": out_dir / "junit.xml", "csv": out_dir / "results.csv"}
    junit(records, written["junit"])
    csv(records, written["csv"])
    if history_path is not None:
        history = hist.append(Path(history_path), records)
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
