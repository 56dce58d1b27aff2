"""PNG plots of the history: AP per run per model, and AP against fps. matplotlib, headless (Agg).

Axes name their units; every run is a tick; on AP vs fps a dot is coloured by its fps change against the run
before (charts.fps_changes: red slower, green faster, grey steady), not by the AP verdict."""

from __future__ import annotations

from pathlib import Path

from harness.publish.charts import fps_changes
from harness.records.results import HistoryEntry
from harness.zoo.kinds import KINDS, Kind

FPS_COLOURS = {"slower": "#cf222e", "faster": "#1a7f37", "steady": "#8c959f"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _models(history: list[HistoryEntry]) -> list[str]:
    return list(dict.fromkeys(e.model for e in history))


def ap_per_run(history: list[HistoryEntry], path: Path) -> dict[str, list[str]]:
    """Each kind's AP (box AP, mask AP, ...: one panel each) of every run, one line per model; dashed: documented.
    Returns the line labels per panel (what a test can check without reading pixels)."""
    plt = _pyplot()
    runs = list(dict.fromkeys(e.run_id for e in history))
    panels = _kinds(history)  # one panel per kind of the kinds table that the history measured
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), constrained_layout=True, squeeze=False)
    drawn: dict[str, list[str]] = {}
    for ax, metric, title in ((axes[0][i], k.headline, k.label) for i, k in enumerate(panels)):
        for i, model in enumerate(_models(history)):
            points = [
                (runs.index(e.run_id), e.metrics[metric])
                for e in history
                if e.model == model and e.measured(metric) is not None
            ]
            if not points:
                continue
            (line,) = ax.plot(
                [x for x, _ in points], [m.measured for _, m in points], marker="o", label=model, color=f"C{i}"
            )  # a model keeps its colour in every panel
            if (documented := points[-1][1].documented) is not None:
                ax.axhline(documented, color=line.get_color(), linestyle="--", linewidth=0.8)
        drawn[metric] = [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]
        ax.set_title(f"{title} per run (dashed: documented)")
        ax.set_xticks(range(len(runs)), runs, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(f"{title} (%)")
        ax.set_xlabel("run (night)")
        if drawn[metric]:
            ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn


def _kinds(history: list[HistoryEntry]) -> list[Kind]:
    """The kinds whose headline AP some entry measured, in the table's order; the first kind when none."""
    found = [k for k in KINDS.values() if any(e.measured(k.headline) is not None for e in history)]
    return found or [next(iter(KINDS.values()))]


def ap_vs_fps(history: list[HistoryEntry], path: Path) -> list[str]:
    """A model's AP against fps, one line per model through its runs (the latest run marked larger): box AP, or
    the first kind's of the kinds table it measured (a keypoint model's keypoint AP, named in its label)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5), constrained_layout=True)
    labels = []
    first = next(iter(KINDS.values()))
    for i, model in enumerate(_models(history)):
        mine = [e for e in history if e.model == model]
        kind = _kinds(mine)[0]
        pts = [(e.fps, ap) for e in mine if e.fps and (ap := e.measured(kind.headline)) is not None]
        if not pts:
            continue
        label = model if kind is first else f"{model} ({kind.label})"
        (line,) = ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label, color=f"C{i}")
        changes = fps_changes([p[0] for p in pts])
        ax.scatter(
            [p[0] for p in pts], [p[1] for p in pts], c=[FPS_COLOURS[c] for c in changes], zorder=3, label="_nights"
        )
        ax.plot([pts[-1][0]], [pts[-1][1]], marker="o", markersize=11, color=line.get_color(), label="_latest")
        labels.append(label)
    ax.set_xlabel("fps (images / s, batch 1, as measured; see the report's notes)")
    ax.set_ylabel(f"{first.label} (%; other kinds as labelled)")
    ax.set_title("AP vs fps")
    if labels:
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return labels
