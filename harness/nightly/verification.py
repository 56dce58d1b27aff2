"""One model, end to end: fetch → worker (strict weights, ppdet eval) → score → judge → record.

The run's inputs are prepared in inputs.py, the worker process is run by launcher.py and speaks
protocol.py; this module is the pipeline for one model, in the order it runs.

Errors are recorded, not raised: whatever stage fails, the model gets a complete `result.json` with
status `error`, the stage, the message and the tail of the worker's log, so a crash in one model never
loses another model's result.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from harness import __version__
from harness.core.errors import HarnessError, StageError, UsageError
from harness.core.files import atomic_write_json, digests, remove_tree, sha256_file
from harness.fetch.artifacts import discard, fetch_artifact, invalidate
from harness.fetch.cache import Fetched
from harness.model import protocol, slices
from harness.model.geometry import Geometry
from harness.model.inputs import Inputs, Options
from harness.model.launcher import log_tail, run_worker
from harness.model.protocol import WEIGHT_ERRORS, Spec, TimingSpec, WorkerResult
from harness.model.slices import Slice
from harness.model.timing import TimingRecord
from harness.records.claims import claim
from harness.records.results import (
    RESULT,
    Artifacts,
    Dataset,
    Parallel,
    Ppdet,
    Result,
    Scorer,
    StageFailure,
    Subset,
    TableRef,
    Unit,
    WeightCheck,
    WeightsRef,
    finished,
    model_dir,
    now,
    read,
    write,
)
from harness.score.scoring import Truth, metrics, score_files, scorer
from harness.score.verdict import ERROR, judge_all
from harness.zoo.lockfile import LockFile
from harness.zoo.manifest import Model, Zoo

log = logging.getLogger(__name__)


def table_record(zoo: Zoo, model: Model, stack: str, commit: str | None = None) -> TableRef:
    """How the report shows the model: its README table's layout, its labels, the links of its row."""
    source = zoo.sources[stack]
    commit = commit or source.commit
    return TableRef(
        name=model.table,
        layout=zoo.table_of(model),
        labels=model.labels,
        weights_url=model.weights.url,
        config=model.config,
        input_size=model.input_size,
        config_url=f"{source.repository.rstrip('/')}/blob/{commit}/{model.config}",
    )


def worker_spec(
    inputs: Inputs, model: Model, config: Path, weights: Fetched, mdir: Path, opts: Options, *, evaluate: bool
) -> Spec:
    """What the worker is asked; it refuses weights whose bytes do not hash to `weights_sha256`, sets the eval
    geometry from the config (`eval_short`, `input_size`: geometry.py), transforms a compressed model by its
    slim config (a missing one is refused as a missing config is) and checks that the documented `metrics`
    have predictions."""
    slim = inputs.tree.slim_config(model)
    timing = TimingSpec(backends=list(opts.backends), method=asdict(opts.method)) if opts.timing else None
    data = inputs.data_for(model)
    return Spec(
        ppdet_root=str(inputs.tree.root),
        config=str(config),
        slim=None if slim is None else str(slim),
        weights=str(weights.path),
        weights_sha256=weights.sha256,
        images=str(data.images),
        annotations=str(data.annotations),
        layout=data.layout,
        files={role: str(p) for role, p in data.files.items()},
        out=str(mdir),
        device=inputs.device,  # type: ignore[arg-type]  # resolve_device's str; Spec (pydantic) checks the value
        eval_short=opts.eval_size,
        input_size=model.input_size,
        metrics=list(model.documented()),
        opts=opts.opts,
        workers=loader_workers(opts.workers, inputs.device),
        eval=evaluate,
        timing=timing,
        ppdet_tree=inputs.tree.tree,
        annotations_sha256=data.annotations_sha256,
    )


def loader_workers(asked: int | None, device: str) -> int | None:
    """Data-loader worker processes: what `--loader-workers` asked; else, on a GPU, the config's own
    `worker_num` (None: not overridden), so that decoding and transforms run beside the forward pass as with
    ppdet's tools/eval.py; on a CPU 0, the loader in the eval's process (its cores are the model's)."""
    if asked is not None:
        return asked
    return None if device == "gpu" else 0


def bench(zoo: Zoo, model: Model, inputs: Inputs, lock: LockFile, opts: Options, run_dir: Path) -> TimingRecord:
    """Timing only (no eval): writes <run>/<model>/timing.json and fills result.json's `timing` if the run
    directory already holds a verify result for the model."""
    mdir = model_dir(run_dir, model.name)
    with claim(run_dir, model.name, f"harness bench {model.name}"):
        weights = fetch_artifact(model.weights, lock, locked=opts.locked)
        spec = worker_spec(inputs, model, inputs.tree.config(model), weights, mdir, opts, evaluate=False)
        worker = run_worker(spec, mdir, opts, label=model.name)
        if worker.status != "ok" or worker.timing is None:
            raise StageError(worker.error or "worker failed", log_tail=log_tail(mdir / "worker.log"))
        timing = TimingRecord.model_validate(
            {**worker.timing, "eval_size": _reduced(worker.geometry), "model": model.name}
        )
        atomic_write_json(mdir / "timing.json", timing.model_dump(exclude_none=True), sort_keys=False)
        if (mdir / RESULT).is_file():
            try:
                result = read([mdir / RESULT])[0]
            except UsageError:
                result = None
            if result is not None and result.model == model.name:
                result.timing = timing
                write(run_dir, result)
    return timing


def _reduced(geometry: Geometry | None) -> list[int] | None:
    """The eval size when --eval-size changed it (the AP is then not comparable), else None."""
    return geometry.eval if geometry is not None and geometry.changed_by == "eval_size" else None


def start_record(zoo: Zoo, model: Model, run_id: str, stack: str, commit: str | None = None) -> Result:
    """The fields every result has from the start (results.Result), status `error` until a verdict: verify
    fills in the rest as the pipeline goes; the runner's error path writes it with the failure."""
    return Result(
        model=model.name,
        run_id=run_id,
        zoo_index=zoo.models.index(model),
        status=ERROR,
        notice=zoo.notice,
        stack=stack,
        harness=__version__,
        started=now(),
        documented=model.documented(),
        table=table_record(zoo, model, stack, commit),
        architecture=model.architecture,  # the worker confirms it from the config it builds
    )


@dataclass
class Job:
    """One model on its way through the pipeline, between phases: `begin` (its record), `prepare` (fetch the
    weights, find the config, cut the slices), its units (one worker per slice: `run_unit`), `finish` (merge,
    score, judge). `verify` runs the phases in a row; the run's work queue interleaves the units of many
    models, so there `durations.total` (from `t0`, the job's start) includes the time its units queued;
    `durations.worker` counts from its first unit's start."""

    zoo: Zoo
    model: Model
    inputs: Inputs
    lock: LockFile
    opts: Options
    run_dir: Path
    rec: Result
    stage: str = "fetch"
    t0: float = field(default_factory=time.perf_counter)
    weights: Fetched | None = None
    specs: list[Spec] = field(default_factory=list)
    slices: list[Slice] | None = None  # None: one worker, in the model's own directory

    @property
    def mdir(self) -> Path:
        return model_dir(self.run_dir, self.model.name)

    def unit_dir(self, i: int) -> Path:
        return self.mdir if self.slices is None else self.mdir / "slices" / str(i + 1)


def begin(zoo: Zoo, model: Model, inputs: Inputs, lock: LockFile, opts: Options, run_dir: Path) -> Job:
    """The job with its record started; `prepare` then fetches (its failure is the model's, via `failed`)."""
    rec = start_record(zoo, model, opts.run_id or run_dir.name, inputs.stack, inputs.tree.commit)
    rec.ppdet = Ppdet.model_validate(inputs.tree.as_json())
    rec.device = inputs.device
    name = zoo.dataset_of(model).name
    try:
        data = inputs.data_for(model)
    except HarnessError:  # the dataset's preparation failed: prepare(job) raises it as this model's error
        rec.dataset = Dataset(name=name)
        rec.artifacts = Artifacts(source_archive_sha256=inputs.tree.archive_sha256)
    else:
        rec.dataset = Dataset(
            name=name,
            num_images=data.num_images,
            subset=Subset.model_validate(data.subset) if data.subset else None,
            annotations=str(data.annotations),
            annotations_sha256=data.annotations_sha256,
            **data.layout_fields(),
        )
        rec.artifacts = Artifacts(source_archive_sha256=inputs.tree.archive_sha256, dataset=data.sha256)
    rec.overrides = opts.opts or None
    return Job(zoo, model, inputs, lock, opts, run_dir, rec)


def prepare(job: Job) -> None:
    """Fetch the weights (verified), find the config, cut the images into `--parallel` slices, write the
    units' specs: one worker per slice, the first also times the model (timing is measured once)."""
    clock = time.perf_counter()
    data = job.inputs.data_for(job.model)  # its dataset's preparation error, if any, is this model's
    job.weights = fetch_artifact(job.model.weights, job.lock, locked=job.opts.locked)
    assert job.rec.artifacts is not None  # begin set it
    job.rec.artifacts.weights = WeightsRef(url=job.weights.url, sha256=job.weights.sha256, size=job.weights.size)
    config = job.inputs.tree.config(job.model)
    k = job.opts.slices
    if k > 1:
        job.slices = slices.cut(data.annotations, k, layout=data.layout)
    for i in range(k):
        spec = worker_spec(job.inputs, job.model, config, job.weights, job.unit_dir(i), job.opts, evaluate=True)
        if job.slices is not None:
            spec = spec.model_copy(
                update={
                    "annotations": str(job.slices[i].annotations),
                    "annotations_sha256": sha256_file(job.slices[i].annotations),
                    "timing": spec.timing if i == 0 else None,
                }
            )
        job.specs.append(spec)
    job.rec.inputs_key = inputs_key(job)
    job.rec.durations.fetch = round(time.perf_counter() - clock, 3)
    job.stage = "worker"


def inputs_key(job: Job) -> str | None:
    """Everything a result depends on, as one digest: the units' specs (with the content ids: the source's git
    tree, the annotations' and the weights' sha256; geometry, overrides, metrics), the threads, the scorer, the
    documented values and tolerances. `run --resume` keeps a finished result only for the same key. None (never
    kept) for a source without a content id (a checkout with changes)."""
    if job.inputs.tree.tree is None or job.inputs.tree.dirty or not job.specs:
        return None
    documented = job.model.documented()
    payload = {
        # `slim` only where set: the keys of results kept before the field existed stay the same
        "specs": [s.model_dump(exclude=None if s.slim else {"slim"}) for s in job.specs],
        "threads": job.opts.threads,
        "scorer": job.opts.scorer,
        "documented": documented,
        "tolerance": {m: job.zoo.tolerance_for(job.model, m) for m in documented},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def kept_result(job: Job) -> Result | None:
    """The model's finished result in this run directory, if it was made from the same inputs (`inputs_key`)."""
    rec, key = finished(job.run_dir, job.model.name), job.rec.inputs_key
    return rec if rec is not None and key is not None and rec.inputs_key == key else None


def unit_options(job: Job, i: int, gpu: str | None) -> Options:
    """Unit i's worker options: its GPU, and on a CPU its share of the cores (`--threads` is per worker)."""
    threads = job.opts.threads
    if job.slices is not None and job.inputs.device == "cpu":
        threads = slices.threads_per_slice(len(job.slices), threads)
    return replace(job.opts, gpu=gpu, threads=threads)


def run_unit(job: Job, i: int, opts: Options, cancel=None) -> tuple[WorkerResult, Unit]:
    """Run unit i's worker; a worker that answers with an error is raised as the model's StageError."""
    where, clock = job.unit_dir(i), time.perf_counter()
    label = job.model.name if job.slices is None else f"{job.model.name} [{job.slices[i].label}]"
    answer = run_worker(job.specs[i], where, opts, label=label, cancel=cancel)
    if answer.status != "ok":
        raise StageError(
            answer.error or "worker failed", log_tail=log_tail(where / "worker.log"), details={"answer": answer}
        )
    return answer, Unit(
        slice=job.slices[i].label if job.slices else "1/1",
        gpu=opts.gpu,
        threads=opts.threads,
        images=answer.num_images,
        seconds=round(time.perf_counter() - clock, 3),
        stages=answer.durations,
    )


def _absorb(job: Job, answer: WorkerResult) -> None:
    """What the worker found about the model and the machine, into the record."""
    rec = job.rec
    for name in ("paddle", "device", "device_name", "architecture", "pretrained_not_loaded", "loader_workers"):
        if (value := getattr(answer, name)) is not None:
            setattr(rec, name, value)
    if answer.threads is not None:
        rec.threads = answer.threads
    if answer.geometry is not None:
        rec.geometry = answer.geometry
    if answer.weight_check is not None:
        rec.weight_check = WeightCheck.model_validate(answer.weight_check)
    assert rec.dataset is not None  # begin set it
    rec.dataset.eval_size = _reduced(answer.geometry)


def _same_model(answers: list[WorkerResult]) -> None:
    """Same bytes, same model, same geometry in every slice, or nothing is scored."""
    first = answers[0]
    for other in answers[1:]:
        if (other.weight_check or {}).get("sha256") != (first.weight_check or {}).get(
            "sha256"
        ) or other.geometry != first.geometry:
            raise HarnessError(
                "the slices' workers disagree on the weights or the geometry they evaluated",
                hint="re-run the model; report this if it happens again",
            )


def _predictions(job: Job, answers: list[WorkerResult], units: list[Unit]) -> dict[str, str]:
    """The files to score: the single worker's, or the slices' merged; their digests and counts recorded."""
    rec, first = job.rec, answers[0]
    for answer in answers:  # the files are still the bytes their worker wrote (a kept unit may be days old)
        if answer.predictions and digests(answer.predictions) != answer.predictions_sha256:
            raise HarnessError(
                f"{job.mdir}: predictions changed after their worker wrote them; nothing was scored",
                hint="run the model again (without --resume); something else writes into this run directory",
            )
    if job.slices is None:  # the files just proven to be the worker's bytes, as its answer hashed them
        predictions = first.predictions or {}
        rec.detections, rec.predictions_sha256 = first.detections, first.predictions_sha256
    else:
        merged = slices.merge(job.slices, [a.predictions or {} for a in answers], job.mdir / "predictions")
        predictions = {k: str(p) for k, p in merged.items()}
        rec.detections = {k: len(json.loads(Path(p).read_bytes())) for k, p in predictions.items()}
        rec.parallel = Parallel(slices=len(job.slices), units=units)
        rec.predictions_sha256 = digests(predictions)
    rec.predictions = {k: str(Path(p).relative_to(job.mdir)) for k, p in predictions.items()}
    return predictions


def finish(job: Job, units: list[tuple[WorkerResult, Unit]], worker_seconds: float) -> None:
    """Every unit answered ok: merge the slices' predictions, score once, judge each documented metric."""
    answers = [a for a, _ in units]
    first, rec = answers[0], job.rec
    _absorb(job, first)
    rec.durations.worker = round(worker_seconds, 3)
    rec.durations.worker_stages = first.durations
    _same_model(answers)
    loaded = first.weight_check or {}
    assert rec.artifacts is not None and rec.artifacts.weights is not None  # prepare set them
    rec.artifacts.weights.sha256, rec.artifacts.weights.size = loaded["sha256"], loaded["size"]  # the bytes evaluated
    if first.timing:
        rec.timing = TimingRecord.model_validate({**first.timing, "eval_size": rec.reduced_eval_size})
    predictions = _predictions(job, answers, [u for _, u in units])

    job.stage, clock = "score", time.perf_counter()
    using = scorer(job.opts.scorer)
    rec.scorer = Scorer.model_validate(using.describe())
    rec.scoring, where = first.scoring, Truth.of(rec.dataset)  # begin named the dataset: a worker ran on it
    rec.stats = score_files(where, predictions, using, params=rec.scoring)  # under the model's claim
    rec.durations.score = round(time.perf_counter() - clock, 3)

    job.stage = "verdict"
    rec.metrics, rec.status = judge_all(
        metrics(rec.stats), job.model.documented(), lambda name: job.zoo.tolerance_for(job.model, name)
    )


def failed(job: Job, exc: HarnessError) -> None:
    """Record why the model has no verdict. A worker's refusal of the weights is the `weights` stage; only a
    format error evicts the cache entry (and its pin); a local fault keeps both."""
    answer = (getattr(exc, "details", None) or {}).get("answer")
    message = str(exc)
    if isinstance(answer, WorkerResult):
        _absorb(job, answer)
        job.rec.durations.worker_stages = answer.durations
        if answer.error_kind in WEIGHT_ERRORS:
            job.stage = "weights"
        if answer.error_kind == "checkpoint_unreadable":
            message += "\n  " + invalidate(job.model.weights, job.lock, f"harness fetch {job.model.name}")
        elif answer.error_kind == "checkpoint_changed":
            message += "\n  " + discard(job.model.weights, f"harness fetch {job.model.name}")
    job.rec.status = ERROR
    job.rec.error = StageFailure(stage=job.stage, message=message, log_tail=getattr(exc, "log_tail", None))


def complete(job: Job) -> Result:
    """Write the record (a complete result, whatever happened) and return it."""
    job.rec.durations.total = round(time.perf_counter() - job.t0, 3)
    job.rec.finished = now()
    write(job.run_dir, job.rec)
    return job.rec


def kept_unit(job: Job, i: int) -> tuple[WorkerResult, Unit] | None:
    """Unit i's earlier answer, if its worker answered ok for exactly this spec (content ids included) and its
    predictions are still the bytes it hashed (`run --resume` keeps it); else None."""
    where = job.unit_dir(i)
    if job.inputs.tree.tree is None or job.inputs.tree.dirty:  # a checkout's content has no id to compare
        return None
    try:
        answer = protocol.read_answer(where / protocol.ANSWER)
        same = protocol.read_spec(where / protocol.SPEC) == job.specs[i]  # paths, tree id, sha256s: content
        if not same or answer is None or answer.status != "ok" or answer.predictions_sha256 is None:
            return None
        if digests(answer.predictions or {}) != answer.predictions_sha256:
            return None
    except (HarnessError, OSError):
        return None
    return answer, Unit(
        slice=job.slices[i].label if job.slices else "1/1", images=answer.num_images, stages=answer.durations, kept=True
    )


def abandon(job: Job) -> None:
    """Interrupted: the workers are already killed. Leave nothing half-done for --resume to trip on: a unit
    without an ok answer is removed, a finished one is kept (resume runs only what is missing)."""
    if (job.mdir / RESULT).exists():
        return
    for i in range(len(job.specs)):
        if kept_unit(job, i) is None:
            remove_tree(job.unit_dir(i), inside=job.run_dir)
    if job.slices is not None:
        remove_tree(job.mdir / "predictions", inside=job.run_dir)  # a merge cut short
    if not job.specs or (job.mdir.is_dir() and not any(job.mdir.iterdir())):
        remove_tree(job.mdir, inside=job.run_dir)


def verify(zoo: Zoo, model: Model, inputs: Inputs, lock: LockFile, opts: Options, run_dir: Path) -> Result:
    """Verify one model; always returns (and writes) a complete result record. With `--parallel K` its K
    units run at once, slice i on GPU `gpus[i mod len(gpus)]` (or the run's GPU), or on a share of the cores."""
    with claim(run_dir, model.name, f"harness verify {model.name}"):
        job = begin(zoo, model, inputs, lock, opts, run_dir)
        gpus: list[str | None] = [*opts.gpus] or [opts.gpu]
        try:
            prepare(job)
            clock = time.perf_counter()
            units = slices.run_all(
                opts.slices,
                lambda i, cancel: run_unit(job, i, unit_options(job, i, gpus[i % len(gpus)]), cancel),
                what=model.name,
            )
            finish(job, units, time.perf_counter() - clock)
        except HarnessError as exc:
            failed(job, exc)
        except KeyboardInterrupt:
            abandon(job)
            raise
        return complete(job)


def summary_line(rec: Result) -> str:
    parts = [f"{m}: {v.reason}" for m, v in rec.metrics.items() if v.reason]
    if rec.error is not None:
        parts.append(f"error in {rec.error.stage}: {rec.error.message}")
    return f"{rec.model}: {rec.status.upper()}" + ("\n  " + "\n  ".join(parts) if parts else "")


def dumps(rec: Result) -> str:
    return json.dumps(rec.as_json(), indent=2, sort_keys=True)
