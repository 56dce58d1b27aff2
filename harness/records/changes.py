"""What changed tonight, from the history alone: tonight's summary, a model's regression, its steps, the nights.

Why one module: the web page, the report and the alerts ask the same questions (what is new tonight, since when
does a model fail, by how much, what changed in the environment since the last night it passed), and must answer
them alike: `summary` is the one rule of what is new tonight, which publish/view.py asks once for all of them.
A model is *new* tonight when it does not pass tonight and did pass the night before (or has no night before:
its first night under these conditions); it stays *still failing* until a night passes, which is *fixed*; a
slowdown is *new* on the night records/speed.py first confirms it. Everything here reads `HistoryEntry`s
(records/history.py) and returns frozen dataclasses; nothing imports paddle.

A model's nights are those under comparable conditions (same stack, device kind, subset, eval size; a night
without timing matches either timing backend), ordered by when they finished. A step is a move of a metric by
more than its tolerance between two consecutive nights of a model: under the same environment it is noise (the
evaluation is not deterministic), with an environment change it is attributed to that change.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Literal

from harness.records.environment import Change, NightEnv, diff
from harness.records.results import Conditions, HistoryEntry
from harness.records.speed import SpeedStep, step_in

PASS = "pass"


@dataclass(frozen=True)
class Move:
    """One metric of a model between two nights (or against its documented value when it never passed)."""

    metric: str
    before: float
    after: float
    tolerance: float | None

    @property
    def delta(self) -> float:
        return round(self.after - self.before, 4)


@dataclass(frozen=True)
class Regression:
    """A model that does not pass in night `run_id`: since which night (the first of its streak), the last night
    it passed (None: never under these conditions), its metrics against that night (against the documented
    values when it never passed) and the environment changes since then. `stage`: where an error happened."""

    model: str
    run_id: str
    status: str
    since: str
    nights: int  # how many nights in a row it has not passed
    last_pass: str | None
    moves: list[Move]
    changes: list[Change]
    stage: str | None = None

    @property
    def worst(self) -> Move | None:
        """The move furthest outside its tolerance (the largest move when none has a tolerance)."""
        return max(self.moves, key=lambda m: abs(m.delta) / (m.tolerance or 1.0), default=None)


@dataclass(frozen=True)
class Fixed:
    """A model that passes in night `run_id` after failing since `since` (for `nights` nights)."""

    model: str
    run_id: str
    since: str
    nights: int


@dataclass(frozen=True)
class Step:
    """A metric that moved by more than its tolerance between two consecutive nights of a model: `noise` under
    the same environment, `environment` when the environment changed (`changes` says how)."""

    model: str
    metric: str
    before_run: str
    run_id: str
    move: Move
    cause: Literal["noise", "environment"]
    changes: list[Change]


@dataclass(frozen=True)
class Summary:
    """Night `run_id` in short: counts per status, the models failing since tonight (`new`: pass → fail or error,
    or failing on their first night), passing again (`fixed`), failing since an earlier night (`still`, longest
    first), slowdowns confirmed tonight (`slower`), errors per stage, and tonight's steps."""

    run_id: str
    counts: dict[str, int]
    new: list[Regression]
    fixed: list[Fixed]
    still: list[Regression]
    errors_by_stage: dict[str, int]
    steps: list[Step]
    slower: list[SpeedStep] = field(default_factory=list)


@dataclass(frozen=True)
class NightRow:
    """One run of the history as the nights index lists it: its counts, when it started and finished, its wall
    seconds, the device-hours its models took per device kind (`{"gpu": 1.5}`), its environment (each field as
    most of its models recorded it) and what changed since the night before."""

    run_id: str
    started: str | None
    finished: str | None
    seconds: float | None
    counts: dict[str, int]
    hours: dict[str, float]
    env: NightEnv
    changes: list[Change] = field(default_factory=list)

    @property
    def gpu_hours(self) -> float:
        return self.hours.get("gpu", 0.0)


def comparable(a: Conditions, b: Conditions) -> bool:
    """Two nights' conditions match; a night without timing (an error before it) matches either timing backend,
    so a model's errors count in its streak."""
    x, y = a.model_dump(), b.model_dump()
    return all(x[k] == y[k] or (k == "backend" and None in (x[k], y[k])) for k in x)


def runs(history: list[HistoryEntry]) -> list[str]:
    """The run ids of the history, oldest first (by when their first model finished)."""
    first: dict[str, str] = {}
    for e in history:
        first[e.run_id] = min(first.get(e.run_id, "~"), e.finished or "")
    return sorted(first, key=lambda r: (first[r], r))


def by_model(history: list[HistoryEntry]) -> dict[str, list[HistoryEntry]]:
    """The history split by model (each model's lines in the history's order): `series` of many models is then
    one pass over the history, not one per model."""
    out: dict[str, list[HistoryEntry]] = {}
    for e in history:
        out.setdefault(e.model, []).append(e)
    return out


def series(history: list[HistoryEntry], model: str, run_id: str | None = None) -> list[HistoryEntry]:
    """The model's nights comparable with its night `run_id` (default: its latest), up to and including it."""
    mine = sorted((e for e in history if e.model == model), key=lambda e: (e.finished or "", e.run_id))
    here = next((e for e in reversed(mine) if run_id is None or e.run_id == run_id), None)
    if here is None:
        return []
    upto = mine[: mine.index(here) + 1]
    return [e for e in upto if comparable(e.conditions, here.conditions)]


def _moves(cur: HistoryEntry, base: HistoryEntry | None) -> list[Move]:
    out = []
    for name, m in cur.metrics.items():
        was = base.measured(name) if base is not None else m.documented
        if was is not None and m.measured is not None:
            out.append(Move(name, was, m.measured, m.tolerance))
    return out


def regression_in(nights: list[HistoryEntry]) -> Regression | None:
    """The regression of the last of a model's nights (series), or None when it passes."""
    cur = nights[-1] if nights else None
    if cur is None or cur.status == PASS:
        return None
    streak = 0
    for e in reversed(nights):
        if e.status == PASS:
            break
        streak += 1
    base = nights[-streak - 1] if streak < len(nights) else None
    return Regression(
        model=cur.model,
        run_id=cur.run_id,
        status=cur.status,
        since=nights[-streak].run_id,
        nights=streak,
        last_pass=base.run_id if base else None,
        moves=_moves(cur, base),
        changes=diff(base.env, cur.env) if base else [],
        stage=cur.stage,
    )


def regression(history: list[HistoryEntry], model: str, run_id: str | None = None) -> Regression | None:
    """The model's regression in night `run_id` (default: its latest night), or None when it passes there."""
    return regression_in(series(history, model, run_id))


def steps_in(nights: list[HistoryEntry]) -> list[Step]:
    """Every step of a model's nights (series), oldest first."""
    out = []
    for a, b in pairwise(nights):
        changes = diff(a.env, b.env)
        for move in _moves(b, a):
            if move.tolerance is not None and abs(move.delta) > move.tolerance + 1e-9:
                cause: Literal["noise", "environment"] = "environment" if changes else "noise"
                out.append(Step(b.model, move.metric, a.run_id, b.run_id, move, cause, changes))
    return out


def steps(history: list[HistoryEntry], model: str, run_id: str | None = None) -> list[Step]:
    """The model's steps up to night `run_id` (default: its latest), oldest first."""
    return steps_in(series(history, model, run_id))


def fixed_in(nights: list[HistoryEntry]) -> Fixed | None:
    """The last of a model's nights (series) passes after nights that did not: since when, for how long."""
    if len(nights) < 2 or nights[-1].status != PASS or nights[-2].status == PASS:
        return None
    before = regression_in(nights[:-1])
    assert before is not None  # the night before did not pass
    return Fixed(nights[-1].model, nights[-1].run_id, before.since, before.nights)


def summary(run_id: str, mine: dict[str, list[HistoryEntry]]) -> Summary:
    """The one rule of what is new in night `run_id`, given each model's comparable nights up to that night
    (`series`; models that did not run that night are left out). The page, the report and the alerts read it."""
    new: list[Regression] = []
    still: list[Regression] = []
    fixed: list[Fixed] = []
    slower: list[SpeedStep] = []
    found: list[Step] = []
    here = [nights[-1] for nights in mine.values() if nights and nights[-1].run_id == run_id]
    for e in here:
        nights = mine[e.model]
        found += [s for s in steps_in(nights[-2:]) if s.run_id == run_id]
        if (reg := regression_in(nights)) is not None:
            (new if reg.nights == 1 else still).append(reg)
        elif (fix := fixed_in(nights)) is not None:
            fixed.append(fix)
        if (step := step_in(nights)) is not None and step.new:
            slower.append(step)
    still.sort(key=lambda r: (-r.nights, r.model))
    return Summary(
        run_id=run_id,
        counts=dict(Counter(e.status for e in here)),
        new=new,
        fixed=fixed,
        still=still,
        errors_by_stage=dict(Counter(e.stage or "unknown" for e in here if e.status == "error").most_common()),
        steps=found,
        slower=slower,
    )


def tonight(history: list[HistoryEntry], run_id: str | None = None) -> Summary:
    """Night `run_id` (default: the history's latest) against each model's nights before it (`summary`)."""
    run_id = run_id or (runs(history) or [""])[-1]
    grouped = by_model(history)
    here = {e.model for e in history if e.run_id == run_id}
    return summary(run_id, {m: series(grouped[m], m, run_id) for m in sorted(here)})


def _seconds(start: str | None, end: str | None) -> float | None:
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() if start and end else None
    except (ValueError, TypeError):  # not a time, or one with a time zone and one without
        return None


def _env(entries: list[HistoryEntry]) -> NightEnv:
    """Each field as most of the night's models recorded it (a model that failed early records less)."""
    values = {}
    for name in NightEnv.model_fields:
        seen = Counter(v for e in entries if (v := getattr(e.env, name)) is not None)
        values[name] = seen.most_common(1)[0][0] if seen else None
    return NightEnv(**values)


def nights(history: list[HistoryEntry]) -> list[NightRow]:
    """Every run of the history, oldest first, each with what changed since the one before."""
    out: list[NightRow] = []
    grouped: dict[str, list[HistoryEntry]] = {}
    for e in history:
        grouped.setdefault(e.run_id, []).append(e)
    for run_id in runs(history):
        entries = grouped[run_id]
        started = min((e.started for e in entries if e.started), default=None)
        finished = max((e.finished for e in entries if e.finished), default=None)
        env = _env(entries)
        hours: dict[str, float] = {}
        for e in entries:
            kind = e.conditions.device or "unknown"
            hours[kind] = hours.get(kind, 0.0) + (e.wall or 0.0) / 3600
        out.append(
            NightRow(
                run_id=run_id,
                started=started,
                finished=finished,
                seconds=_seconds(started, finished),
                counts=dict(Counter(e.status for e in entries)),
                hours={k: round(v, 3) for k, v in sorted(hours.items())},
                env=env,
                changes=diff(out[-1].env, env) if out else [],
            )
        )
    return out
