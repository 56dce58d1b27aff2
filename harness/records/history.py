"""The history of runs: one JSON line per (run, model), what it keeps of a result, read and written whole.

Why a file of lines: the nightly appends a handful of records a day, people diff it, CI caches or commits
it; no database to run. Runs are comparable only under the same conditions (stack, device kind, subset,
eval size): records/changes.py says which nights of a model are, and what is new among them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import ValidationError

from harness.core.errors import HarnessError, UsageError
from harness.core.files import atomic_write_bytes
from harness.core.schema import fields
from harness.records.environment import NightEnv
from harness.records.results import RUN, Conditions, HistoryEntry, Judged, Result, RunRecord, Seconds
from harness.score.verdict import Status

HISTORY_ENV = "HARNESS_HISTORY"
HINT = "repair or remove that line (each line is one model of one run, as `harness run` writes it)"
VERDICTS: dict[str, Status] = {"pass": "pass", "fail": "fail", "error": "error"}  # a line's statuses


def default_path(fallback: Path = Path("reports/history.jsonl")) -> Path:
    """$HARNESS_HISTORY, else `fallback` (a run's is its own directory's history.jsonl; plan reads reports/)."""
    return Path(os.environ.get(HISTORY_ENV) or fallback)


def conditions(rec: Result) -> Conditions:
    ds = rec.dataset
    subset = ds.subset if ds is not None else None
    return Conditions(
        stack=rec.stack,
        device=rec.device,
        subset=[subset.n, subset.seed] if subset else None,
        eval_size=rec.reduced_eval_size,
        backend=rec.timing.backend if rec.timing else None,
    )


def environment_of(rec: Result, run: RunRecord | None = None) -> NightEnv:
    """The night's environment of a result: what its record says, and what its run's run.json says (the
    harness commit, CUDA, driver, zoo file); without run.json those are not recorded."""
    ppdet, ds = rec.ppdet, rec.dataset
    machine = run.environment if run else None
    return NightEnv(
        paddle=rec.paddle or (machine.paddle if machine else None),
        ppdet_repository=ppdet.origin if ppdet else None,
        ppdet_commit=ppdet.commit if ppdet else None,
        ppdet_tree=ppdet.tree if ppdet else None,
        harness=rec.harness,
        harness_commit=run.harness_git_sha if run else None,
        cuda=machine.cuda if machine else None,
        driver=machine.driver if machine else None,
        device_name=rec.device_name,
        dataset_sha256=ds.annotations_sha256 if ds else None,
        zoo_sha256=run.zoo_sha256 if run else None,
    )


def entry(rec: Result, run: RunRecord | None = None) -> HistoryEntry:
    """What the history keeps of a result (`run`: its run directory's run.json, for the night's environment).
    A carried-over result is no night of its model (it did not run): asking for its line is the caller's bug."""
    status = VERDICTS.get(rec.status)
    if status is None or rec.carried is not None:
        raise HarnessError(f"internal error: {rec.model} was carried over, not run: the history keeps what ran")
    return HistoryEntry(
        run_id=rec.run_id,
        started=rec.started,
        finished=rec.finished,
        model=rec.model,
        status=status,
        stage=rec.error.stage if rec.error else None,
        conditions=conditions(rec),
        metrics={
            k: Judged(measured=v.measured, documented=v.documented, tolerance=v.tolerance, status=v.status)
            for k, v in rec.metrics.items()
        },
        fps=rec.fps,
        wall=rec.durations.total,
        env=environment_of(rec, run),
        seconds=seconds_of(rec),
    )


def load(path: Path) -> list[HistoryEntry]:
    """The history's entries; a line that is not one (a hand edit, a file cut short) is a usage error naming
    the line, never a traceback, and nothing is rewritten."""
    if not path.exists():
        return []
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(HistoryEntry.model_validate_json(line))
        except ValidationError as exc:
            raise UsageError(f"{path}:{n}: not a history entry: {fields(exc, 3)}", hint=HINT) from None
        except RecursionError:
            raise UsageError(f"{path}:{n}: not a history entry: nested too deeply", hint=HINT) from None
    return out


def merge(
    history: list[HistoryEntry], records: list[Result], runs: Mapping[str, RunRecord] | None = None
) -> list[HistoryEntry]:
    """The history with these results in it (replacing any earlier line of the same run and model), in the order
    the models finished. `runs`: the run.json of each run id (run_records), whose environment the lines keep."""
    runs = runs or {}
    new = [entry(r, runs.get(r.run_id)) for r in records if r.carried is None]  # the history keeps what ran
    keys = {(e.run_id, e.model) for e in new}
    kept = [e for e in history if (e.run_id, e.model) not in keys]
    return sorted(kept + new, key=lambda e: (e.finished or "", e.model))


def write(path: Path, history: list[HistoryEntry]) -> None:
    """The whole history, atomically (a reader sees the old file or the new one)."""
    atomic_write_bytes(path, "".join(json.dumps(e.model_dump(), sort_keys=True) + "\n" for e in history).encode())


def append(path: Path, records: list[Result], runs: Mapping[str, RunRecord] | None = None) -> list[HistoryEntry]:
    """Add these results to the history at `path` (`merge`, then `write`); returns the history."""
    history = merge(load(path), records, runs)
    write(path, history)
    return history


def run_records(run_dirs: Sequence[Path]) -> dict[str, RunRecord]:
    """The run.json of each run directory (a shard's will do: they share the run's environment), by run id."""
    out: dict[str, RunRecord] = {}
    for d in run_dirs:
        meta = RunRecord.load(d / RUN) if d.is_dir() else None
        if meta is not None:
            out.setdefault(meta.run_id, meta)
    return out


def seconds_of(rec: Result) -> Seconds | None:
    """The planner's facts of a result (None when the model never got through its worker)."""
    stages = rec.durations.worker_stages or {}
    ds = rec.dataset
    units = [(u.stages, u.images) for u in rec.parallel.units] if rec.parallel else []
    units = units or [(stages, ds.num_images if ds else None)]
    if "eval" not in stages or not all(st and n for st, n in units):
        return None
    startup = sum(stages.get(k, 0.0) for k in ("import", "build", "load_weights", "dataloader"))
    return Seconds(
        startup=round(startup, 3),
        eval=round(sum((st or {}).get("eval", 0.0) for st, _ in units), 3),
        images=sum(n or 0 for _, n in units),
        timing=stages.get("timing", 0.0),
        device=rec.device,
    )
