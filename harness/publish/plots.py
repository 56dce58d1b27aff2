"""PNG plots of a night (matplotlib, headless): small multiples of the models that changed, and AP against fps.

Why small multiples and not one chart of every model: at 355 models one line per model is unreadable (the legend
covers the lines) and slow to draw. `ap_per_run.png` has one small panel per model that changed tonight (new
failures, fixed, slower, then still failing, at most MAX_PANELS), or of every model in a zoo of at most that
many; each panel draws the model's documented metrics over its nights, the documented values dashed. The full
series of every model live on its page. `ap_vs_fps.png` places every model of tonight once (its headline AP
against its fps, coloured by its verdict), the ones that changed named.
"""

from __future__ import annotations

import math
from pathlib import Path

from harness.publish.view import ModelNight, Night
from harness.zoo.kinds import KINDS

MAX_PANELS = 12
COLUMNS = 4
STATUS_COLOURS = {"pass": "#1a7f37", "fail": "#cf222e", "error": "#8250df", "carried": "#8c959f"}
ORDER = {"new": 0, "fixed": 1, "slower": 2}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def chosen(night: Night) -> list[ModelNight]:
    """The models the small multiples show: every model of a small zoo, else those that changed tonight (new,
    fixed, slower), then the longest failing, at most MAX_PANELS."""
    if len(night.models) <= MAX_PANELS:
        return sorted(night.models, key=lambda m: m.rec.zoo_index)
    tags = night.marks
    changed = sorted((m for m in night.models if m.model in tags), key=lambda m: (ORDER[tags[m.model]], m.model))
    failing = sorted(
        (m for m in night.models if m.model not in tags and m.regression is not None),
        key=lambda m: (-(m.regression.nights if m.regression else 0), m.model),
    )
    return (changed + failing)[:MAX_PANELS]


def ap_per_run(night: Night, path: Path) -> dict[str, list[str]]:
    """One panel per chosen model: its documented metrics per night, documented values dashed. Returns the
    metrics drawn per model (what a test checks without reading pixels)."""
    plt = _pyplot()
    models = chosen(night)
    rows = max(1, math.ceil(len(models) / COLUMNS))
    cols = min(COLUMNS, max(1, len(models)))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.08, top=1 - 0.35 / rows, hspace=0.55, wspace=0.3)
    drawn: dict[str, list[str]] = {}
    tags = night.marks
    for ax, m in zip((a for r in axes for a in r), models, strict=False):
        drawn[m.model] = _panel(ax, m, tags.get(m.model, ""))
    for ax in [a for r in axes for a in r][len(models) :]:
        ax.axis("off")
    if not models:
        axes[0][0].text(0.5, 0.5, "no model changed tonight", ha="center", va="center")
    fig.suptitle(f"{night.run_id}: AP per night (dashed: documented)", fontsize=10)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return drawn


def _panel(ax, m: ModelNight, tag: str) -> list[str]:
    """One model's panel: a line per documented metric over its nights."""
    drawn = []
    runs = [e.run_id for e in m.nights]
    for i, (metric, documented) in enumerate(m.rec.documented.items()):
        points = [(x, v) for x, e in enumerate(m.nights) if (v := e.measured(metric)) is not None and math.isfinite(v)]
        if not points:
            continue
        (line,) = ax.plot([x for x, _ in points], [v for _, v in points], marker="o", markersize=3, color=f"C{i}")
        ax.axhline(documented, color=line.get_color(), linestyle="--", linewidth=0.8)
        line.set_label(metric)
        drawn.append(metric)
    name = m.model if len(m.model) <= 38 else m.model[:37] + "…"
    ax.set_title(f"{name}{f' ({tag})' if tag else ''}", fontsize=8)
    ax.tick_params(labelsize=7)
    if runs:
        ax.set_xticks([0, len(runs) - 1] if len(runs) > 1 else [0], [runs[0], runs[-1]] if len(runs) > 1 else runs)
    ax.set_ylabel("AP (%)", fontsize=7)
    if drawn:
        ax.legend(fontsize=6, loc="best")
    return drawn


def headline(m: ModelNight) -> tuple[str, float] | None:
    """The model's first kind's headline AP tonight (box AP, else keypoint AP, ...), as (label, value)."""
    for kind in KINDS.values():
        if (v := m.rec.measured(kind.headline)) is not None and math.isfinite(v):
            return kind.label, v
    return None


def ap_vs_fps(night: Night, path: Path) -> list[str]:
    """Every model of tonight once: its headline AP against its fps (log scale), coloured by verdict; the models
    that changed tonight are named. Returns the names written on the chart."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    fig.subplots_adjust(left=0.09, right=0.97, bottom=0.11, top=0.93)
    tags, named = night.marks, []
    for status, colour in STATUS_COLOURS.items():
        pts = [(m, ap) for m in night.models if m.rec.status == status and (ap := headline(m)) and _timed(m)]
        if pts:
            ax.scatter([m.rec.fps for m, _ in pts], [a[1] for _, a in pts], s=14, c=colour, label=status, zorder=3)
    for m in night.models:
        ap = headline(m)
        if m.model in tags and ap is not None and _timed(m):
            ax.annotate(f"{m.model} ({tags[m.model]})", (m.rec.fps, ap[1]), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")  # fmt: skip
            named.append(m.model)
    ax.set_xscale("log")
    ax.set_xlabel("fps (images / s, batch 1, as measured; see the report's notes)")
    ax.set_ylabel("headline AP (%): box AP, else the model's first kind")
    ax.set_title(f"{night.run_id}: AP vs fps, one dot per model")
    if ax.collections:
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return named


def _timed(m: ModelNight) -> bool:
    fps = m.rec.fps
    return fps is not None and math.isfinite(fps) and fps > 0


def draw(night: Night, out_dir: Path) -> dict[str, Path]:
    """Both plots into `out_dir`."""
    written = {"ap_per_run.png": out_dir / "ap_per_run.png", "ap_vs_fps.png": out_dir / "ap_vs_fps.png"}
    ap_per_run(night, written["ap_per_run.png"])
    ap_vs_fps(night, written["ap_vs_fps.png"])
    return written
