"""The markdown table: the seed README's columns with the documented values, then what was measured.

Rendered from result records alone (tabulate), so `harness report RUN_DIR` re-renders a run anywhere.
"""

from __future__ import annotations

from tabulate import tabulate

SEED = ["Backbone", "Type", "Image/gpu", "Lr schd", "Inf time (fps)", "Box AP", "Mask AP", "Download", "Configs"]
MEASURED = ["measured box AP", "measured mask AP", "Δ", "status"]


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _metric(rec: dict, name: str) -> dict:
    return (rec.get("metrics") or {}).get(name) or {}


def row(rec: dict) -> list[str]:
    t = rec.get("table", {})
    doc = rec.get("documented", {})
    fps = (rec.get("timing") or {}).get("fps")
    deltas = []
    for name, label in (("box_ap", "box"), ("mask_ap", "mask")):
        d = _metric(rec, name).get("delta")
        if d is not None:
            deltas.append(f"{label} {d:+.1f}")
    return [
        t.get("backbone", "?"), t.get("type", "?"), str(t.get("images_per_gpu", "?")), t.get("schedule", "?"),
        _num(fps), _num(doc.get("box_ap")), _num(doc.get("mask_ap")),
        f"[model]({t['weights_url']})" if t.get("weights_url") else "-",
        f"[config]({t['config_url']})" if t.get("config_url") else "-",
        _num(_metric(rec, "box_ap").get("measured"), 2), _num(_metric(rec, "mask_ap").get("measured"), 2),
        " / ".join(deltas) or "-", rec.get("status", "?"),
    ]


def notes(records: list[dict]) -> list[str]:
    """What a reader must know to read the numbers: subsets, reduced sizes, devices, errors."""
    out = sorted({rec["notice"] for rec in records if rec.get("notice")})
    for rec in records:
        name = rec["model"]
        ds = rec.get("dataset") or {}
        if ds.get("subset"):
            out.append(f"{name}: subset of {ds['subset']['n']} images (seed {ds['subset']['seed']}); AP on a "
                       "subset is not comparable with the documented full-val2017 number.")
        if ds.get("eval_size"):
            out.append(f"{name}: evaluated at {ds['eval_size'][0]} px short side (documented: 800).")
        if rec.get("status") == "error" and rec.get("error"):
            out.append(f"{name}: error in {rec['error'].get('stage', '?')}: "
                       f"{rec['error'].get('message', '').splitlines()[0]}")
        timing = rec.get("timing") or {}
        if timing.get("error"):
            out.append(f"{name}: timing failed: {timing['error'].splitlines()[0]}")
        elif timing.get("backend"):
            b = timing["backends"][timing["backend"]]
            size = timing.get("eval_size") or ds.get("eval_size")
            out.append(f"{name}: Inf time (fps) = {timing['backend']} backend on {timing.get('device')} "
                       f"({timing.get('device_name')}), batch 1, {b['config'].get('precision', 'fp32')}, "
                       f"{size[0] if size else 800} px, {b['iterations']} timed images "
                       f"(p50 {b['latency_ms']['end_to_end']['p50']:.0f} ms end to end; preprocess, model and "
                       "postprocess included)")
    envs = sorted({f"{r.get('device', '?')} ({r.get('device_name', '?')}), paddle {r.get('paddle', '?')}, "
                   f"PaddleDetection {(r.get('ppdet') or {}).get('commit') or '?'}" for r in records})
    out += [f"measured on {e}" for e in envs]
    return out


def markdown(records: list[dict]) -> str:
    table = tabulate([row(r) for r in records], headers=SEED + MEASURED, tablefmt="github", disable_numparse=True)
    lines = [table]
    if extra := notes(records):
        lines += [""] + [f"- {n}" for n in extra]
    return "\n".join(lines) + "\n"


def timing_lines(timing: dict) -> list[str]:
    """A timing record for people: fps and latency percentiles per stage and backend, memory, fallbacks."""
    lines = [f"device: {timing.get('device')} ({timing.get('device_name')}), paddle {timing.get('paddle')}, "
             f"{len(timing.get('sample_ids', []))} distinct images, eval size {timing.get('eval_size') or 'config'}"]
    rows = []
    for name, b in timing.get("backends", {}).items():
        for stage, lat in b["latency_ms"].items():
            rows.append([name, stage, f"{lat['p50']:.1f}", f"{lat['p90']:.1f}", f"{lat['p99']:.1f}",
                         f"{lat['mean']:.1f}", f"{b['fps']:.2f}" if stage == "end_to_end" else "",
                         f"{b['peak_memory']['mb']:.0f}" if stage == "end_to_end" else ""])
        for f in b["config"].get("fallbacks") or []:
            lines.append(f"{name}: fell back from {({k: v for k, v in f.items() if k != 'error'})}: {f['error']}")
    table = tabulate(rows, headers=["backend", "stage", "p50 ms", "p90 ms", "p99 ms", "mean ms", "fps", "peak MB"],
                     tablefmt="github", disable_numparse=True)
    lines.insert(1, table)
    fid = timing.get("fidelity")
    if fid:
        for name, f in fid.items():
            if isinstance(f, dict) and "box_match_rate" in f:
                deltas = ", ".join(f"{m} Δ {v['delta']:+.2f}" for m, v in f.items() if isinstance(v, dict))
                lines.append(f"deploy fidelity ({name} vs dygraph, {fid['images']} images): {deltas}, "
                             f"boxes reproduced {f['box_match_rate']:.1%}")
    return lines
