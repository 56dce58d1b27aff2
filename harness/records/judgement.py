"""What the rules say of one night, in one descent: each model's nights, its regression, steps and slowdown,
tonight's summary, the nights index and the alerts.

Why one function: the reading side (publish/view.py) asks the records once and then only renders. `judge` merges
tonight's results into the history, splits it by model once (linear in records + history), and asks each rule of
records/ once per model: changes (what is new, since when, steps), speed (sustained slowdowns), alerts (what
people are told). Nothing here words or lays anything out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.records import changes
from harness.records import history as hist
from harness.records.alerts import Alert, alerts
from harness.records.changes import NightRow, Regression, Step, Summary
from harness.records.results import HistoryEntry, Result
from harness.records.speed import MIN_BASELINE, SpeedStep, marks, step_in, timed

GRID_NIGHTS = 30  # the nights a grid shows: the last this many, tonight's last


@dataclass(frozen=True)
class Facts:
    """What the rules say of one model: its comparable nights up to the night its record stands for (a carried
    model's: up to the night it carries), its regression (does not pass in its last night), every step of its
    nights, an ongoing slowdown."""

    nights: list[HistoryEntry]
    regression: Regression | None
    steps: list[Step]
    speed: SpeedStep | None
    speed_known: bool = False  # enough timed nights on tonight's device and backend to judge its speed at all
    fps_marks: dict[str, str] = field(default_factory=dict)  # each timed night: "slower" inside its slowdown


@dataclass(frozen=True)
class Judgement:
    """Night `run_id` judged: each model's facts, the summary (the one rule of what is new), the grid's nights,
    every night of the history, the alerts, and the history with tonight's lines in it."""

    run_id: str
    models: dict[str, Facts]
    summary: Summary
    columns: list[str]
    nights: list[NightRow]
    alerts: list[Alert]
    history: list[HistoryEntry]


def judge(
    records: Sequence[Result], history: Sequence[HistoryEntry] | None, run_dirs: Sequence[Path] = ()
) -> Judgement:
    """Merge tonight's results into `history` (with the environment of each run's run.json in `run_dirs`) and
    judge the night. Without a history every model has its one night, and no alert is made."""
    records = list(records)
    merged = hist.merge(list(history or []), records, hist.run_records(run_dirs))
    ran = {(r.run_id, r.model) for r in records if r.carried is None}
    tonight = [e for e in merged if (e.run_id, e.model) in ran]
    run_id = changes.runs(tonight)[-1] if tonight else records[-1].run_id
    grouped = changes.by_model(merged)
    facts = {r.model: _facts(r, grouped.get(r.model, [])) for r in records}
    mine = {m: f.nights for m, f in facts.items() if f.nights and f.nights[-1].run_id == run_id}
    summary = changes.summary(run_id, mine)
    every = changes.runs(merged)
    every += [] if run_id in every else [run_id]
    by_model = {r.model: r for r in records}
    ran_nights = {m: n for m, n in mine.items() if by_model[m].carried is None}
    speeds = {m: f.speed for m, f in facts.items() if f.speed is not None}
    return Judgement(
        run_id=run_id,
        models=facts,
        summary=summary,
        columns=every[: every.index(run_id) + 1][-GRID_NIGHTS:],
        nights=changes.nights(merged),
        alerts=alerts(summary, by_model, ran_nights, speeds) if history is not None else [],
        history=merged,
    )


def _facts(rec: Result, mine: list[HistoryEntry]) -> Facts:
    upto = rec.carried.run_id if rec.carried is not None else rec.run_id
    nights = changes.series(mine, rec.model, upto)
    ran = rec.carried is None and bool(nights) and nights[-1].run_id == rec.run_id
    speed = step_in(nights) if ran else None
    return Facts(
        nights=nights,
        regression=changes.regression_in(nights) if ran else None,
        steps=changes.steps_in(nights),
        speed=speed,
        speed_known=ran and len(timed(nights)) > MIN_BASELINE,
        fps_marks=marks(nights, speed),
    )


def summary_of(history: list[HistoryEntry], run_id: str) -> Summary:
    """An earlier night's summary, from the history alone."""
    return changes.tonight(history, run_id)
