"""Result records: one `result.json` per model per run, written atomically.

A run directory holds one sub-directory per model (`<run>/<model>/result.json`, plus the worker's log,
spec and predictions). A reader sees either no result or a complete one; `harness report` needs nothing
but these files. `Result` is the one schema: every writer (verify, the runner's error path, bench,
rescore) goes through `write_at`, which validates the record against it, and every reader gets `Result`s
validated by it and asks them (`rec.measured("box_ap")`, `rec.fps`); the JSON on disk is `Result.as_json()`,
and records of an older schema are read through `_migrate`, the one place that knows them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from harness.core.errors import HarnessError, UsageError
from harness.core.files import atomic_write_json, is_component, read_json, sha256_file
from harness.core.schema import Strict, fields
from harness.model.geometry import Geometry
from harness.model.timing import TimingRecord as Timing
from harness.records.environment import NightEnv
from harness.score.verdict import Status, Verdict
from harness.zoo.manifest import V1_LABELS, V1_TABLE, Table

SCHEMA: Literal[2] = 2  # 2: a model may be carried over (status "carried", `carried`); 1 is read by _migrate
RESULT = "result.json"
RUN = "run.json"  # a run directory's own record (runner.py)


class StageFailure(Strict):
    """Why a model has no verdict: the pipeline stage that failed, its message, the worker log's tail."""

    stage: str
    message: str
    log_tail: str | None = None


RecordStatus = Literal["pass", "fail", "error", "carried"]  # a verdict, or carried over from an earlier night
CARRIED: Literal["carried"] = "carried"


class Carried(Strict):
    """A model tonight did not run because none of its inputs changed (nightly/selection.py): the night whose
    pass it carries, that night's finish, the digest of its inputs, and its measured values then. Never a pass
    of tonight: the report, the CSV and the site say "carried over from NIGHT"."""

    run_id: str
    finished: str | None = None
    digest: str
    measured: dict[str, float | None] = Field(default_factory=dict)
    fps: float | None = None


class TableRef(Strict):
    """How the report shows the model: its README table's layout, its labels, the links of its row."""

    name: str | None = None
    layout: Table | None = None
    labels: dict[str, str | int | float] = Field(
        default_factory=dict
    )  # the README row's label cells (manifest.Model.labels)
    weights_url: str | None = None
    config: str | None = None
    input_size: int | None = None
    config_url: str | None = None


class Ppdet(Strict):
    """The PaddleDetection source the model ran on (source.Tree.as_json)."""

    root: str | None = None
    commit: str | None = None
    origin: str | None = None
    archive_sha256: str | None = None
    tree: str | None = None  # git tree id: the content pin
    dirty: bool | None = None
    untracked: list[str] = Field(default_factory=list)


class Subset(Strict):
    """`--subset N --seed S`: the images chosen from `source` (dataset.make_subset)."""

    n: int
    seed: int
    source: str
    image_ids: list[int]


class Dataset(Strict):
    name: str | None = None
    num_images: int | None = None
    subset: Subset | None = None
    annotations: str | None = None
    annotations_sha256: str | None = None
    # a dataset not laid out as COCO json (zoo/layouts.py): its layout, images directory and further files, which
    # scoring (and `rescore`) reads its ground truth from
    layout: str | None = None
    images: str | None = None
    files: dict[str, str] | None = None
    eval_size: list[int] | None = None  # set when --eval-size changed the geometry: the AP is not comparable


class WeightsRef(Strict):
    url: str
    sha256: str | None = None
    size: int | None = None


class Artifacts(Strict):
    source_archive_sha256: str | None = None
    dataset: dict[str, str] | None = None  # the dataset archives' URL -> sha256
    weights: WeightsRef | None = None


class Durations(Strict):
    """Seconds per pipeline stage; `worker_stages` as the worker measured them (import, build, eval, ...)."""

    fetch: float | None = None
    worker: float | None = None
    worker_stages: dict[str, float] | None = None
    score: float | None = None
    total: float | None = None


class WeightCheck(Strict):
    """The strict load's findings (checkpoint.LoadCheck.as_json) and the bytes that were loaded."""

    ok: bool
    matched: int
    missing: int
    unexpected: int
    mismatched: int
    first_missing: list[str] = Field(default_factory=list)
    first_unexpected: list[str] = Field(default_factory=list)
    first_mismatched: list[list[str | list[int]]] = Field(default_factory=list)
    dtype_casts: dict[str, str] = Field(default_factory=dict)
    sha256: str | None = None
    size: int | None = None


class Unit(Strict):
    """One `--parallel` slice's worker."""

    slice: str
    gpu: str | None = None
    threads: int | None = None
    images: int | None = None
    seconds: float | None = None
    stages: dict[str, float] | None = None
    kept: bool | None = None  # kept from an earlier attempt by `run --resume`


class Parallel(Strict):
    slices: int
    units: list[Unit]


class Scorer(Strict):
    name: str
    version: str | None = None


class Environment(Strict):
    """The machine a run ran on (runner.environment)."""

    host: str | None = None
    platform: str | None = None
    python: str | None = None
    cpu_count: int | None = None
    paddle: str | None = None
    cuda_visible_devices: str | None = None
    cuda: str | None = None  # the CUDA version the driver offers (nvidia-smi), None without a GPU
    driver: str | None = None


class RunRecord(Strict):
    """A run directory's own record (`run.json`): what was asked, on what, and how it ended."""

    run_id: str
    zoo: str
    zoo_sha256: str
    harness: str
    harness_git_sha: str | None = None
    environment: Environment
    shard: str = "1/1"
    gpus: list[str] | None = None
    models: list[str]
    shard_estimates_sha256: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)  # inputs.Options as given (paths as text)
    started: str
    resumed: list[str] = Field(default_factory=list)
    finished: str | None = None
    counts: dict[Status, int] | None = None

    @classmethod
    def load(cls, path: Path) -> RunRecord | None:
        """The run directory's record, or None when there is none or it is not one (a shard being written)."""
        raw = read_json(path)
        try:
            return cls.model_validate(raw) if isinstance(raw, dict) else None
        except ValidationError:
            return None


class Seconds(Strict):
    """What the history keeps of a result for the planner: one worker's start-up, the eval seconds summed over
    its slices, the images, the timing."""

    startup: float
    eval: float
    images: int
    timing: float = 0.0
    device: str | None = None


class Conditions(Strict):
    """What makes two nights comparable (same stack, device kind, subset, eval size, timing backend)."""

    stack: str | None = None
    device: str | None = None
    subset: list[int] | None = None  # [n, seed]
    eval_size: list[int] | None = None
    backend: str | None = None


class Judged(Strict):
    measured: float | None = None
    documented: float | None = None
    tolerance: float | None = None
    status: str | None = None


HISTORY_VERSION: Literal[2] = 2


class HistoryEntry(Strict):
    """One line of the history: what it keeps of a model's result in one run. Version 2 added the night's
    environment (`env`), when the model started, its wall seconds and the stage of an error; lines of
    version 1 (no `version`) are read through `_history_v1`."""

    version: Literal[2] = HISTORY_VERSION
    run_id: str
    started: str | None = None
    finished: str | None = None
    model: str
    status: Status
    stage: str | None = None  # the failed stage of an error
    conditions: Conditions
    metrics: dict[str, Judged]
    fps: float | None = None
    wall: float | None = None  # the model's seconds from start to verdict (durations.total)
    env: NightEnv = Field(default_factory=NightEnv)
    seconds: Seconds | None = None  # what the planner keeps (history.seconds_of)

    @model_validator(mode="before")
    @classmethod
    def _history_v1(cls, data: Any) -> Any:
        """A version 1 line kept paddle and the PaddleDetection commit beside the rest: they move into `env`."""
        if not isinstance(data, dict) or "version" in data or "env" in data:
            return data
        data = dict(data)
        env = {k: data.pop(k) for k in ("paddle", "ppdet_commit") if k in data}
        return {**data, "version": HISTORY_VERSION, "env": env}

    def measured(self, metric: str) -> float | None:
        m = self.metrics.get(metric)
        return m.measured if m is not None else None


def _migrate(raw: dict) -> dict:
    """Records as today's, in one place: a table written before tables carried their layout (the seed's
    columns, its labels as fields: `backbone`, `type`, ...) gets the seed's layout and those labels."""
    table = raw.get("table")
    if isinstance(table, dict) and "layout" not in table:
        labels = {title: table[key] for key, title in V1_LABELS.items() if key in table}
        kept = {k: v for k, v in table.items() if k not in V1_LABELS}
        raw = {**raw, "table": {**kept, "layout": V1_TABLE, "labels": {**labels, **(kept.get("labels") or {})}}}
    return {**raw, "schema": SCHEMA}  # schema 1 -> 2: only added a status and a field


class Result(Strict):
    """One model's result in one run. Fields after `table` exist once the pipeline got that far.

    Readers ask it (`measured`, `verdict`, `fps`, `reduced_eval_size`, `failure`) rather than digging in keys."""

    schema_: Literal[2] = Field(default=SCHEMA, alias="schema")
    model: str
    run_id: str
    zoo_index: int
    status: RecordStatus
    carried: Carried | None = None  # status "carried": the earlier night it stands for
    error: StageFailure | None = None
    notice: str | None = None
    stack: str | None = None
    harness: str | None = None
    started: str
    documented: dict[str, float]
    table: TableRef
    ppdet: Ppdet | None = None
    device: str | None = None
    dataset: Dataset | None = None
    artifacts: Artifacts | None = None
    metrics: dict[str, Verdict] = Field(default_factory=dict)
    stats: dict[str, dict[str, float]] = Field(default_factory=dict)
    durations: Durations = Field(default_factory=Durations)
    timing: Timing | None = None
    paddle: str | None = None
    device_name: str | None = None
    architecture: str | None = None
    geometry: Geometry | None = None
    weight_check: WeightCheck | None = None
    pretrained_not_loaded: list[str] | None = None  # URLs the config would have downloaded while building
    predictions: dict[str, str] | None = None
    predictions_sha256: dict[str, str] | None = None  # of the exact bytes scored (absent in older records)
    scoring: dict[str, dict[str, Any]] | None = None  # a prediction file's metric parameters (a VOC map_type)
    detections: dict[str, int] | None = None
    loader_workers: int | None = None  # data-loader worker processes the eval used (GPU: the config's)
    threads: int | None = None  # CPU threads the eval computed with (predictions on a CPU depend on it)
    # the user's -o, merged into the config like ppdet's: any YAML value (a "modified evaluation", shown as such)
    overrides: dict[str, Any] | None = None
    inputs_key: str | None = None  # digest of everything the result depends on (verification.inputs_key)
    parallel: Parallel | None = None  # --parallel K: the slices' units
    scorer: Scorer | None = None
    finished: str | None = None
    rescored: str | None = None

    @classmethod
    def parse(cls, raw: object, origin: str) -> Result:
        """A record as read from disk (any schema this harness knows), or a UsageError naming the file."""
        if not isinstance(raw, dict):
            raise UsageError(f"{origin}: not a result record of schema {SCHEMA}")
        try:
            return cls.model_validate(_migrate(raw))
        except ValidationError as exc:
            raise UsageError(f"{origin}: not a result record of schema {SCHEMA}: {fields(exc)}") from None

    def as_json(self) -> dict:
        return self.model_dump(by_alias=True)

    def verdict(self, metric: str) -> Verdict | None:
        return self.metrics.get(metric)

    def measured(self, metric: str) -> float | None:
        v = self.metrics.get(metric)
        return v.measured if v is not None else None

    @property
    def fps(self) -> float | None:
        return self.timing.fps if self.timing is not None else None

    @property
    def reduced_eval_size(self) -> list[int] | None:
        """The eval size when --eval-size changed it (the AP is then not comparable), else None."""
        return self.dataset.eval_size if self.dataset is not None else None

    @property
    def scored(self) -> bool:
        """Whether the record reached scoring (it has predictions and verdicts: rescore can redo them)."""
        return bool(self.predictions) and bool(self.metrics)

    @property
    def failure(self) -> str | None:
        """`stage: first line of the message` of a model without a verdict, else None."""
        if self.error is None:
            return None
        return f"{self.error.stage}: {self.error.message.splitlines()[0] if self.error.message else ''}"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def model_dir(run_dir: Path, model: object) -> Path:
    """`<run>/<model>`; a name that is not one plain path component (`..`, `a/b`, absolute) is refused, so no
    record can make the harness write or delete outside its run directory."""
    if not isinstance(model, str) or not is_component(model):
        raise UsageError(
            f"model name {model!r} is not a plain file name",
            hint="model names are single path components: letters, digits, '_', '-', '.'",
        )
    return run_dir / model


def write(run_dir: Path, record: Result | dict) -> Path:
    """Write a record to `<run>/<model>/result.json`; a model name that is not a plain file name is refused
    before anything else is looked at."""
    name = record.model if isinstance(record, Result) else record.get("model")
    return write_at(model_dir(run_dir, name) / RESULT, record)


def write_at(path: Path, record: Result | dict) -> Path:
    """Write a record to exactly `path` (rescore rewrites the file it read, whatever the record's fields say).

    The record (a `Result`, or its JSON form) is validated again as a whole (fields set along the pipeline are
    not checked when set): one that does not fit `Result` is a bug in the harness, never a user's error, raised
    as one (exit 3), not written."""
    data = _as_result(record, str(path)).as_json()
    atomic_write_json(path, data, sort_keys=False)  # keep the stats in COCO's order
    return path


def _as_result(record: Result | dict, where: str = "a result") -> Result:
    raw = record.as_json() if isinstance(record, Result) else {k: v for k, v in record.items() if k != "schema"}
    try:
        return Result.parse(raw, where)
    except UsageError as exc:
        raise HarnessError(f"internal error, result not written: {exc.message}") from None


def read(run_dirs: list[Path], *, check_predictions: bool = False) -> list[Result]:
    """Every result under the given run directories (or result files), in zoo order. With `check_predictions`
    (what `harness report` shows), a record whose predictions are not the bytes it was scored from is refused."""
    records = []
    for d in run_dirs:
        if not d.exists():
            raise UsageError(f"{d}: no such run directory", hint="pass a directory written by `harness verify`")
        files = [d] if d.is_file() else sorted(d.glob(f"*/{RESULT}"))
        for f in files:
            try:
                raw = json.loads(f.read_text())
            except (OSError, ValueError) as exc:
                raise UsageError(f"{f}: not a readable result: {exc}") from None
            records.append(Result.parse(raw, str(f)))
            if check_predictions:
                unchanged_predictions(f, records[-1])
    if not records:
        raise UsageError(
            f"no {RESULT} under {', '.join(map(str, run_dirs))}", hint="run `harness verify MODEL --out DIR` first"
        )
    latest: dict[str, Result] = {}
    for rec in records:  # merging shards: one result per model; a model found twice keeps its newest result
        if rec.model not in latest or (rec.finished or "") > (latest[rec.model].finished or ""):
            latest[rec.model] = rec
    return sorted(latest.values(), key=lambda r: (r.zoo_index, r.model))


def finished(run_dir: Path, model: str) -> Result | None:
    """The model's result in `run_dir` if it is one `--resume` may keep: readable, of the schema, for this
    model, finished (a final status); else None (absent, half-written, damaged: evaluated again)."""
    path = model_dir(run_dir, model) / RESULT
    try:
        rec = read([path])[0] if path.is_file() else None
    except UsageError:
        return None
    return rec if rec is not None and rec.model == model and rec.finished else None


def unchanged_predictions(path: Path, rec: Result) -> dict[str, Path]:
    """A record's predictions files, refused (exit 2) if any is not the bytes it was scored from."""
    files = {k: path.parent / rel for k, rel in (rec.predictions or {}).items()}
    known = rec.predictions_sha256
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
        meta = RunRecord.load(d / RUN) if d.is_dir() else None
        if meta is not None and meta.shard != "1/1":
            key = (meta.run_id, meta.shard.split("/")[-1])
            seen.setdefault(key, set()).add(str(meta.shard_estimates_sha256))
    bad = [f"run {rid} ({n} shards)" for (rid, n), digests in seen.items() if len(digests) > 1]
    if not bad:
        return None
    return (
        f"{', '.join(bad)}: the shards split the zoo from different estimates (history or zoo file "
        "differed between machines): models may be missing or doubled; give every shard the same history"
    )
