"""Result records: one `result.json` per model per run, written atomically.

A run directory holds one sub-directory per model (`<run>/<model>/result.json`, plus the worker's log,
spec and predictions). A reader sees either no result or a complete one; `harness report` needs nothing
but these files. `Result` is the one schema: every writer (verify, the runner's error path, bench,
rescore) goes through `write_at`, which validates the record against it, and every reader gets records
validated by it. Code passes the validated records on as plain dicts (`Result.model_dump`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from harness.errors import HarnessError, UsageError
from harness.files import atomic_write_json, is_component, read_json, sha256_file
from harness.protocol import Strict, fields

SCHEMA: Literal[1] = 1
RESULT = "result.json"
RUN = "run.json"  # a run directory's own record (runner.py)


class StageFailure(Strict):
    """Why a model has no verdict: the pipeline stage that failed, its message, the worker log's tail."""

    stage: str
    message: str
    log_tail: str | None = None


class Verdict(Strict):
    """One documented metric judged (verdict.MetricVerdict as written)."""

    metric: str
    measured: float | None
    documented: float
    tolerance: float
    delta: float | None
    status: Literal["pass", "fail", "error"]
    reason: str


class Result(Strict):
    """One model's result in one run. Fields after `table` exist once the pipeline got that far."""

    schema_: Literal[1] = Field(SCHEMA, alias="schema")
    model: str
    run_id: str
    zoo_index: int
    status: Literal["pass", "fail", "error"]
    error: StageFailure | None = None
    notice: str | None = None
    stack: str | None = None
    harness: str | None = None
    started: str
    documented: dict[str, float]
    table: dict[str, Any]
    ppdet: dict[str, Any] | None = None
    device: str | None = None
    dataset: dict[str, Any] | None = None
    artifacts: dict[str, Any] | None = None
    metrics: dict[str, Verdict] = Field(default_factory=dict)
    stats: dict[str, dict[str, float]] = Field(default_factory=dict)
    durations: dict[str, Any] = Field(default_factory=dict)
    timing: dict[str, Any] | None = None
    paddle: str | None = None
    device_name: str | None = None
    architecture: str | None = None
    geometry: dict[str, Any] | None = None
    weight_check: dict[str, Any] | None = None
    pretrained_not_loaded: list[str] | None = None  # URLs the config would have downloaded while building
    predictions: dict[str, str] | None = None
    predictions_sha256: dict[str, str] | None = None  # of the exact bytes scored (absent in older records)
    detections: dict[str, int] | None = None
    loader_workers: int | None = None  # data-loader worker processes the eval used (GPU: the config's)
    threads: int | None = None  # CPU threads the eval computed with (predictions on a CPU depend on it)
    overrides: dict[str, Any] | None = None  # the user's -o: a "modified evaluation", shown as such
    inputs_key: str | None = None  # digest of everything the result depends on (verification.inputs_key)
    parallel: dict[str, Any] | None = None  # --parallel K: the slices' units (slice, gpu, threads, images, seconds)
    scorer: dict[str, Any] | None = None
    finished: str | None = None
    rescored: str | None = None


def validated(record: dict, origin: str) -> dict:
    """`record` checked against `Result`, as the plain dict every reader uses (fields in schema order)."""
    try:
        return Result.model_validate(record).model_dump(by_alias=True)
    except ValidationError as exc:
        raise UsageError(f"{origin}: not a result record of schema {SCHEMA}: {fields(exc)}") from None


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def model_dir(run_dir: Path, model: str) -> Path:
    """`<run>/<model>`; a name that is not one plain path component (`..`, `a/b`, absolute) is refused, so no
    record can make the harness write or delete outside its run directory."""
    if not isinstance(model, str) or not is_component(model):
        raise UsageError(
            f"model name {model!r} is not a plain file name",
            hint="model names are single path components: letters, digits, '_', '-', '.'",
        )
    return run_dir / model


def write(run_dir: Path, record: dict) -> Path:
    return write_at(model_dir(run_dir, record["model"]) / RESULT, record)


def write_at(path: Path, record: dict) -> Path:
    """Write a record to exactly `path` (rescore rewrites the file it read, whatever the record's fields say).

    A record that does not fit `Result` is a bug in the harness, never a user's error: it is raised as one
    (exit 3) rather than written."""
    try:
        data = validated({**record, "schema": SCHEMA}, str(path))
    except UsageError as exc:
        raise HarnessError(f"internal error, result not written: {exc.message}") from None
    atomic_write_json(path, data, sort_keys=False)  # keep the stats in COCO's order
    return path


def read(run_dirs: list[Path], *, check_predictions: bool = False) -> list[dict]:
    """Every result under the given run directories (or result files), in zoo order. With `check_predictions`
    (what `harness report` shows), a record whose predictions are not the bytes it was scored from is refused."""
    records = []
    for d in run_dirs:
        if not d.exists():
            raise UsageError(f"{d}: no such run directory", hint="pass a directory written by `harness verify`")
        files = [d] if d.is_file() else sorted(d.glob(f"*/{RESULT}"))
        for f in files:
            try:
                rec = json.loads(f.read_text())
            except (OSError, ValueError) as exc:
                raise UsageError(f"{f}: not a readable result: {exc}") from None
            if not isinstance(rec, dict):
                raise UsageError(f"{f}: not a result record of schema {SCHEMA}")
            records.append(validated(rec, str(f)))
            if check_predictions:
                unchanged_predictions(f, records[-1])
    if not records:
        raise UsageError(
            f"no {RESULT} under {', '.join(map(str, run_dirs))}", hint="run `harness verify MODEL --out DIR` first"
        )
    latest: dict[str, dict] = {}
    for rec in records:  # merging shards: one result per model; a model found twice keeps its newest result
        if rec["model"] not in latest or (rec.get("finished") or "") > (latest[rec["model"]].get("finished") or ""):
            latest[rec["model"]] = rec
    return sorted(latest.values(), key=lambda r: (r.get("zoo_index", 1 << 30), r["model"]))


def finished(run_dir: Path, model: str) -> dict | None:
    """The model's result in `run_dir` if it is one `--resume` may keep: readable, of the schema, for this
    model, finished (a final status); else None (absent, half-written, damaged: evaluated again)."""
    path = model_dir(run_dir, model) / RESULT
    try:
        rec = read([path])[0] if path.is_file() else None
    except UsageError:
        return None
    return rec if rec is not None and rec["model"] == model and rec.get("finished") else None


def digests(files: dict[str, str] | dict[str, Path]) -> dict[str, str]:
    """sha256 of each predictions file: the record names the exact bytes it was scored from."""
    return {k: sha256_file(Path(p)) for k, p in files.items()}


def unchanged_predictions(path: Path, rec: dict) -> dict[str, Path]:
    """A record's predictions files, refused (exit 2) if any is not the bytes it was scored from."""
    files = {k: path.parent / rel for k, rel in (rec.get("predictions") or {}).items()}
    known = rec.get("predictions_sha256")
    if known is None:  # written before records named their predictions' sha256: nothing to compare
        return files
    for kind, file in files.items():
        try:
            actual = sha256_file(file)
        except OSError as exc:
            actual = f"unreadable ({exc.strerror})"
        if actual != known.get(kind):
            raise UsageError(
                f"{path}: its {kind} predictions {file} are not the ones it was scored from "
                f"(sha256 {known.get(kind)}, now {actual})",
                hint="re-run the model (`harness verify`); a record and its predictions must stay together",
            )
    return files


def shard_disagreement(run_dirs: list[Path]) -> str | None:
    """Shards of one run that split the zoo from different estimates (another history or zoo) may have
    skipped or doubled models: say so when merging them."""
    seen: dict[tuple, set[str]] = {}
    for d in run_dirs:
        meta = read_json(d / RUN) if d.is_dir() else None
        if isinstance(meta, dict) and str(meta.get("shard", "1/1")) != "1/1":
            key = (meta.get("run_id"), str(meta["shard"]).split("/")[-1])
            seen.setdefault(key, set()).add(str(meta.get("shard_estimates_sha256")))
    bad = [f"run {rid} ({n} shards)" for (rid, n), digests in seen.items() if len(digests) > 1]
    if not bad:
        return None
    return (
        f"{', '.join(bad)}: the shards split the zoo from different estimates (history or zoo file "
        "differed between machines): models may be missing or doubled; give every shard the same history"
    )
