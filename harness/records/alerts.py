"""Alerts: what people are told about a regressed model, one typed record per model, from the history's own rule.

Why a record of its own: `harness notify` turns each `Alert` into a GitHub issue, and the page may show the same
facts; both read this record, never the history's lines of text. `alerts()` is the one function that makes them:
a regression is exactly what `history.moves` says (a metric beyond its tolerance, or fps more than 10 % slower,
against the last *passing* run under the same conditions), grouped by model.

The environment diff compares what the history keeps of both nights (records/environment.py: paddle, the
PaddleDetection commit and tree, the harness commit, CUDA, driver, device, the dataset's and zoo file's digests);
a field either night did not record is left out, and `compared` says which fields were compared, so no diff is
claimed where nothing was recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from harness.records import history as hist
from harness.records.environment import FIELDS, diff
from harness.records.results import HistoryEntry, Result


class EnvChange(NamedTuple):
    """One field of the environment that differs between the last passing night and tonight."""

    field: str
    before: str
    after: str


@dataclass(frozen=True)
class Moved:
    """One number of a regressed model: tonight's, the last pass's, the README's."""

    metric: str  # a metric's name (box_ap, mask_ap, ...) or "fps"
    measured: float  # tonight
    before: float  # at the last pass
    documented: float | None  # the README's value (None for fps)
    tolerance: float | None  # the metric's tolerance (None for fps: bounded by history.FPS_DROP)

    @property
    def delta(self) -> float:
        """Tonight minus the last pass (what moved, whatever the README says)."""
        return self.measured - self.before


@dataclass(frozen=True)
class Alert:
    """A regressed model tonight: what moved, since when, what changed around it, where to look."""

    model: str
    run_id: str  # tonight's run
    status: str  # tonight's verdict (a regression may still pass the README's tolerance)
    moved: tuple[Moved, ...]
    last_pass: str  # run id of the last passing night it is compared with
    since: str  # run id of the first night after the last pass: when the regression began
    since_finished: str | None
    environment: tuple[EnvChange, ...]  # fields that differ between the last pass and tonight
    compared: tuple[str, ...]  # the environment fields both nights recorded (empty: no diff is known)
    links: tuple[tuple[str, str], ...] = ()  # (what, URL): the night's page, the model's page, the workflow run

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(m.metric for m in self.moved)


Links = Callable[[str, str], Sequence[tuple[str, str]]]  # (model, run id) -> [(what, URL)]
Environment = Callable[[HistoryEntry, HistoryEntry], tuple[tuple[EnvChange, ...], tuple[str, ...]]]


def environment_diff(base: HistoryEntry, cur: HistoryEntry) -> tuple[tuple[EnvChange, ...], tuple[str, ...]]:
    """(changes, compared): the environment fields both nights recorded (environment.FIELDS, by their labels),
    and those of them that differ (environment.diff: a new PaddleDetection commit is one change, its tree with it)."""
    both = [f.label for f in FIELDS if getattr(base.env, f.name) is not None and getattr(cur.env, f.name) is not None]
    changes = tuple(EnvChange(c.label, str(c.before), str(c.after)) for c in diff(base.env, cur.env))
    return changes, tuple(both)


def _since(history: list[HistoryEntry], cur: HistoryEntry, base: HistoryEntry) -> HistoryEntry:
    """The first night after the last pass under the same conditions (tonight when the history has none)."""
    after = [
        e
        for e in history
        if e.model == cur.model
        and e.conditions == cur.conditions
        and (e.finished or "") > (base.finished or "")
        and (e.finished or "") <= (cur.finished or "")
    ]
    return min(after, key=lambda e: e.finished or "", default=cur)


def alerts(
    history: list[HistoryEntry],
    records: list[Result],
    *,
    links: Links | None = None,
    environment: Environment = environment_diff,
    fps_drop: float = hist.FPS_DROP,
) -> list[Alert]:
    """One alert per regressed model of `records` (in their order), against `history` (which may or may not
    hold tonight's entries already: `harness report --history` appends them)."""
    grouped: dict[str, list[hist.Move]] = {}
    for move in hist.moves(history, records, fps_drop):
        grouped.setdefault(move.current.model, []).append(move)
    by_model = {r.model: r for r in records}
    out = []
    for model, moves in grouped.items():
        cur, base = moves[0].current, moves[0].base
        since = _since(history, cur, base)
        changes, compared = environment(base, cur)
        documented = by_model[model].documented
        out.append(
            Alert(
                model=model,
                run_id=cur.run_id,
                status=cur.status,
                moved=tuple(Moved(m.metric, m.measured, m.was, documented.get(m.metric), m.tolerance) for m in moves),
                last_pass=base.run_id,
                since=since.run_id,
                since_finished=since.finished,
                environment=changes,
                compared=compared,
                links=tuple(links(model, cur.run_id)) if links else (),
            )
        )
    return out


def passing_again(records: list[Result], alerted: Sequence[Alert]) -> list[Result]:
    """Tonight's results that pass and regressed in nothing: an open alert of theirs is over."""
    names = {a.model for a in alerted}
    return [r for r in records if r.status == "pass" and r.model not in names]
