"""One night, as every output shows it: built once from the run's records and the history, then rendered.

Why one view: the page, report.md, the CSV, JUnit, the plots and `harness notify` must say the same thing about a
night. Each used to ask the history and the change detection on its own, and they disagreed (the page listed a
new error that notify never filed; notify filed speed noise the page never showed). Here the records are read into
one typed `Night` — tonight's summary (new, fixed, still failing since, slower, carried over), each model's nights
and transitions, the grid's rows, the alerts, the notes — by one descent into records/ (changes.summary is the one
rule of what is new tonight); every renderer is then a pure function of the `Night` and asks nothing else. Anchors:
asv's `Results` accessors, and PyTorch HUD's one query feeding both its grid and its alerts.

Linear in records + history: the history is split by model once, and each model's nights are read once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.publish import notes as notes_of
from harness.publish.overview import Row, order, row
from harness.records import judgement
from harness.records.alerts import Alert
from harness.records.changes import NightRow, Regression, Step, Summary
from harness.records.results import HistoryEntry, Result
from harness.records.speed import SpeedStep


@dataclass(frozen=True)
class ModelNight:
    """One model in the night: its record, what the rules say of it (judgement.Facts: its comparable nights up to
    the one its record stands for, its regression, steps and slowdown), and its row of the overview."""

    rec: Result
    facts: judgement.Facts
    row: Row

    @property
    def model(self) -> str:
        return self.rec.model

    @property
    def nights(self) -> list[HistoryEntry]:
        return self.facts.nights

    @property
    def regression(self) -> Regression | None:
        """Does not pass in its last night: since when, against what."""
        return self.facts.regression

    @property
    def steps(self) -> list[Step]:
        return self.facts.steps

    @property
    def speed(self) -> SpeedStep | None:
        """An ongoing slowdown."""
        return self.facts.speed

    @property
    def speed_known(self) -> bool:
        """Enough timed nights on tonight's device and backend to judge its speed."""
        return self.facts.speed_known

    @property
    def fps_marks(self) -> dict[str, str]:
        """Each timed night's mark on its fps chart."""
        return self.facts.fps_marks


@dataclass(frozen=True)
class Night:
    """Night `run_id` as the outputs show it. `models` in the overview's order (failing first); `records` in the
    run's order; `history` the whole history with tonight's lines in it (what `--history` writes back)."""

    run_id: str
    records: list[Result]
    models: list[ModelNight]
    summary: Summary
    columns: list[str]  # the grid's nights, oldest first, tonight last
    nights: list[NightRow]  # every night of the history, oldest first
    alerts: list[Alert]
    notes: list[str]  # every note, each model's included (the report)
    notices: list[str]
    page_notes: list[str] = field(default_factory=list)  # the page's short list (notes.notes, every=False)
    history: list[HistoryEntry] = field(default_factory=list)
    judged: bool = False  # built with a history: transitions, trends and alerts are known

    @property
    def carried(self) -> list[Result]:
        return [r for r in self.records if r.carried is not None]

    @property
    def passing(self) -> list[Result]:
        """Tonight's results measured within tolerance (an open failure alert of theirs is over)."""
        return [r for r in self.records if r.status == "pass" and r.carried is None]

    @property
    def this(self) -> NightRow | None:
        """Tonight's line of the nights index."""
        return next((n for n in self.nights if n.run_id == self.run_id), None)

    @property
    def counts(self) -> dict[str, int]:
        """Models per status tonight, carried-over models counted apart (they did not run)."""
        ran = Counter[str](r.status for r in self.records if r.carried is None)
        return {**ran, "carried": len(self.carried)}

    @property
    def families(self) -> list[tuple[str, int, int]]:
        """(family, models, failing) for the grid's filter, by name."""
        every = Counter(m.row.family for m in self.models)
        bad = Counter(m.row.family for m in self.models if m.row.status not in ("pass", "carried"))
        return [(f, n, bad.get(f, 0)) for f, n in sorted(every.items(), key=lambda x: x[0].lower())]

    @property
    def marks(self) -> dict[str, str]:
        """Each model's tag tonight: "new" (failing since tonight), "fixed", "slower" (a slowdown confirmed)."""
        return marks(self.summary)

    def summary_of(self, run_id: str) -> Summary:
        """An earlier night's summary, from the history (the site writes the page of a night it has none of)."""
        return judgement.summary_of(self.history, run_id)

    def model(self, name: str) -> ModelNight | None:
        return next((m for m in self.models if m.model == name), None)


def of(
    records: Sequence[Result], history: Sequence[HistoryEntry] | None = None, run_dirs: Sequence[Path] = ()
) -> Night:
    """The night of these records: one descent into the records (judgement.judge: tonight's results merged into
    `history`, with each run's run.json environment from `run_dirs`, then every rule asked once), then the rows
    and the notes. Without a history every model has its one night and nothing is judged against earlier ones."""
    records = list(records)
    j = judgement.judge(records, history, run_dirs)
    tags = marks(j.summary)
    models = [_model(r, j.models[r.model], j.columns, tags.get(r.model, "")) for r in records]
    return Night(
        run_id=j.run_id,
        records=records,
        models=sorted(models, key=lambda m: order(m.row)),
        summary=j.summary,
        columns=j.columns,
        nights=j.nights,
        alerts=j.alerts,
        notes=notes_of.notes(records),
        page_notes=notes_of.notes(records, every=False),
        notices=sorted({r.notice for r in records if r.notice}),
        history=j.history,
        judged=history is not None,
    )


def marks(summary: Summary) -> dict[str, str]:
    """Each model's tag in a night: "new" (failing since that night), "fixed", "slower" (a slowdown confirmed)."""
    out = {r.model: "slower" for r in summary.slower}
    return out | {r.model: "fixed" for r in summary.fixed} | {r.model: "new" for r in summary.new}


def _model(rec: Result, facts: judgement.Facts, columns: list[str], change: str) -> ModelNight:
    return ModelNight(rec=rec, facts=facts, row=row(rec, facts.nights, columns, change))
