"""`harness rescore`: a run's stats and verdicts recomputed from its stored predictions, no model run.

Why apart from verification.py: rescoring reads finished records and the files they name, and writes them back
under the run directory's claim; it shares the scoring and judging steps with a run (score_files, judge_all),
not the worker, launcher or queue.
"""

from __future__ import annotations

from pathlib import Path

from harness.core.errors import UsageError
from harness.records.claims import claim
from harness.records.results import RESULT, Result, Scorer, now, read, unchanged_predictions, write_at
from harness.score.scoring import Truth, metrics, score_files, scorer
from harness.score.verdict import judge_all


def rescore(run_dir: Path, scorer_name: str | None = None) -> list[Result]:
    """Recompute every stat and verdict of a run from its stored predictions, without running a model
    (e.g. after a scorer change). Results that never reached scoring are left as they are."""
    using = scorer(scorer_name)
    records = []
    for path in sorted(run_dir.glob(f"*/{RESULT}")):
        with claim(run_dir, path.parent.name, "harness rescore"):
            records.append(_rescore_one(path, using))
    if not records:
        raise UsageError(f"no {RESULT} under {run_dir}", hint="pass a directory written by verify or run")
    return records


def _rescore_one(path: Path, using) -> Result:
    """One record scored again from its own predictions (refused if they are not the bytes it was scored from),
    judged with the documented values and tolerances it carries, written back where it was read."""
    rec = read([path])[0]
    if not rec.scored:
        return rec  # it never reached scoring
    files = unchanged_predictions(path, rec)
    where = Truth.of(rec.dataset)
    if not where.annotations.exists():  # a file; a mot dataset's root
        raise UsageError(
            f"{path}: its annotations {rec.dataset.annotations if rec.dataset else None} are gone",
            hint="rescore on the machine (and cache) that ran it, or re-run the model",
        )
    rec.stats = score_files(where, files, using, params=rec.scoring)
    judged = rec.metrics
    rec.metrics, rec.status = judge_all(
        metrics(rec.stats), {m: v.documented for m, v in judged.items()}, lambda m: judged[m].tolerance
    )
    rec.scorer = Scorer.model_validate(using.describe())
    rec.rescored = now()
    write_at(path, rec)  # where it was read, whatever `model` says
    return rec
