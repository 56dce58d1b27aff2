"""Alerts: what people are told about a model tonight, one typed record per model and kind, from the summary's rule.

Why a record of its own: the page's "new tonight", the report and `harness notify` must never disagree, so the
alerts are made from `changes.summary` (the one rule of what is new) and nothing else: a *failure* alert for each
model that does not pass tonight (`new` when it passed the night before or had no night before: pass → fail,
pass → error, a first night that fails; else it is still failing), and a *speed* alert for each sustained
slowdown (records/speed.py; `new` on the night it is confirmed). An improvement is never an alert; a model that
passes gets at most a speed alert. `harness notify` opens an issue for a new alert, updates the open one of an
ongoing alert, and closes it when the model passes again (or its speed is back); the page lists the same.

The environment diff compares what the history keeps of both nights (records/environment.py: paddle, the
PaddleDetection commit and tree, the harness commit, CUDA, driver, device, the dataset's and zoo file's digests);
a field either night did not record is left out, and `compared` says which fields were compared, so no diff is
claimed where nothing was recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from harness.records.changes import Regression, Summary
from harness.records.environment import FIELDS, Change, NightEnv, diff
from harness.records.results import HistoryEntry, Result
from harness.records.speed import SpeedStep

Kind = Literal["failure", "speed"]


@dataclass(frozen=True)
class Number:
    """One documented metric of an alerted model: tonight's value against the README's and the last pass's."""

    metric: str
    tonight: float | None
    documented: float | None
    tolerance: float | None
    last_pass: float | None  # its value on the last passing night (None: never passed, or not measured then)
    status: str | None  # the metric's verdict tonight

    @property
    def delta(self) -> float | None:
        """Tonight minus the README's value (what the tolerance bounds)."""
        return None if self.tonight is None or self.documented is None else round(self.tonight - self.documented, 4)

    @property
    def moved(self) -> float | None:
        """Tonight minus the last pass (what changed since it passed)."""
        return None if self.tonight is None or self.last_pass is None else round(self.tonight - self.last_pass, 4)


@dataclass(frozen=True)
class Alert:
    """A model that fails tonight (`failure`) or runs slower than its own level (`speed`): the transition, since
    when, the numbers, the environment against the last good night."""

    kind: Kind
    model: str
    run_id: str  # tonight
    new: bool  # first night of this failure streak or slowdown: an issue opens tonight
    status: str  # tonight's verdict
    since: str  # the first night of the streak (or of the slowdown)
    nights: int
    last_good: str | None  # the last passing night (failure), the last night at the model's level (speed)
    numbers: tuple[Number, ...] = ()
    error: str | None = None  # `stage: message` of an error
    speed: SpeedStep | None = None
    environment: tuple[Change, ...] = ()  # fields that differ between the last good night and tonight
    compared: tuple[str, ...] = ()  # the environment fields both nights recorded (empty: no diff is known)

    @property
    def transition(self) -> str:
        """`pass → fail`, `pass → error`, `first night: fail`, `fail since NIGHT`, `slower`."""
        if self.kind == "speed":
            return "slower"
        if not self.new:
            return f"{self.status} since {self.since}"
        return f"pass → {self.status}" if self.last_good else f"first night: {self.status}"


def compared(before: NightEnv, after: NightEnv) -> tuple[tuple[Change, ...], tuple[str, ...]]:
    """(changes, compared): the environment fields both nights recorded (environment.FIELDS, by their labels),
    and those of them that differ (environment.diff: a new PaddleDetection commit is one change, its tree with it)."""
    both = [f.label for f in FIELDS if getattr(before, f.name) is not None and getattr(after, f.name) is not None]
    return tuple(diff(before, after)), tuple(both)


def _numbers(rec: Result, base: HistoryEntry | None) -> tuple[Number, ...]:
    out = []
    for name, doc in rec.documented.items():
        v = rec.verdict(name)
        out.append(
            Number(
                metric=name,
                tonight=v.measured if v else None,
                documented=doc,
                tolerance=v.tolerance if v else None,
                last_pass=base.measured(name) if base is not None else None,
                status=v.status if v else None,
            )
        )
    return tuple(out)


def failure(reg: Regression, rec: Result, nights: list[HistoryEntry], *, new: bool) -> Alert:
    """The failure alert of a model's regression (changes.regression_in) with tonight's record."""
    base = next((e for e in reversed(nights) if e.run_id == reg.last_pass), None)
    changes, both = compared(base.env, nights[-1].env) if base is not None and nights else ((), ())
    return Alert(
        kind="failure",
        model=reg.model,
        run_id=reg.run_id,
        new=new,
        status=reg.status,
        since=reg.since,
        nights=reg.nights,
        last_good=reg.last_pass,
        numbers=_numbers(rec, base),
        error=rec.failure,
        environment=changes,
        compared=both,
    )


def slower(step: SpeedStep, rec: Result, nights: list[HistoryEntry]) -> Alert:
    """The speed alert of a model's slowdown, its environment against the last night at its level."""
    base = next((e for e in reversed(nights) if e.run_id == step.level.last), None)
    changes, both = compared(base.env, nights[-1].env) if base is not None else ((), ())
    return Alert(
        kind="speed",
        model=step.model,
        run_id=step.run_id,
        new=step.new,
        status=rec.status,
        since=step.since,
        nights=step.nights,
        last_good=step.level.last,
        numbers=_numbers(rec, None),
        speed=step,
        environment=changes,
        compared=both,
    )


def alerts(
    summary: Summary,
    records: Mapping[str, Result],
    nights: Mapping[str, list[HistoryEntry]],
    speeds: Mapping[str, SpeedStep],
) -> list[Alert]:
    """Every alert of the night: a failure alert per model that does not pass (new ones first), a speed alert per
    ongoing slowdown. `records`: tonight's result of each model; `nights`: each model's comparable nights;
    `speeds`: each model's ongoing slowdown (speed.step_in)."""
    out = [failure(r, records[r.model], nights[r.model], new=True) for r in summary.new if r.model in records]
    out += [failure(r, records[r.model], nights[r.model], new=False) for r in summary.still if r.model in records]
    for model, step in speeds.items():
        rec = records.get(model)
        if rec is not None and rec.carried is None and model in nights:
            out.append(slower(step, rec, nights[model]))
    return out
