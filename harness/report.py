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
