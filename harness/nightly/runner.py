"""`harness run`: the nightly over the zoo (or a shard of it), unit by unit, nothing lost.

Each unit — a model, or one slice of its images (`--parallel`, slices.py) — runs in its own worker subprocess
(verification.py): a crash, an OOM, a segfault or a timeout becomes that model's `error` result with its
log's tail, and the run goes on. Results are written atomically as each model finishes, so a killed run loses
at most the units in flight, and `--resume` skips every model with a complete result and every unit whose
worker already answered. Scale-out: the work queue (`Queue`) runs the units longest first on the GPUs of
`--gpus` (or on shares of the CPU), as planned by schedule.py; `--shard I/N` (or the CI's index variables)
deals the models to machines by estimated work; `harness report DIR...` merges the shards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import queue
import re
import socket
import subprocess
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from harness import __version__
from harness.core.errors import ExitCode, HarnessError, StageError, UsageError
from harness.core.files import atomic_write_json
from harness.model.inputs import Options, prepare, resolve_device
from harness.model.launcher import interrupt_all
from harness.nightly import schedule
from harness.nightly import verification as v
from harness.records.claims import Claims
from harness.records.results import (
    RESULT,
    RUN,
    Environment,
    HistoryEntry,
    Result,
    RunRecord,
    StageFailure,
    model_dir,
    now,
    read,
    write,
)
from harness.score.verdict import ERROR, FAIL, PASS
from harness.zoo.lockfile import LockFile
from harness.zoo.manifest import Model, Zoo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `total`, 1-based (`--shard 2/3`): models i with i mod total == index-1, zoo order."""

    index: int = 1
    total: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            i, n = (int(x) for x in text.split("/"))
        except ValueError:
            raise UsageError(f"--shard {text!r}: expected I/N, e.g. 2/3") from None
        if not 1 <= i <= n:
            raise UsageError(f"--shard {text}: I must be between 1 and N")
        return cls(i, n)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Shard:
        """$HARNESS_SHARD (I/N), else a 0-based index with a total: $HARNESS_SHARD_INDEX/$HARNESS_SHARD_TOTAL
        (e.g. GitHub's strategy.job-index/job-total) or Kubernetes' $JOB_COMPLETION_INDEX with
        $HARNESS_SHARD_TOTAL."""
        env = os.environ if env is None else env
        if env.get("HARNESS_SHARD"):
            return cls.parse(env["HARNESS_SHARD"])
        index = env.get("HARNESS_SHARD_INDEX") or env.get("JOB_COMPLETION_INDEX")
        if index is not None and env.get("HARNESS_SHARD_TOTAL"):
            return cls.parse(f"{int(index) + 1}/{env['HARNESS_SHARD_TOTAL']}")
        return cls()

    def pick(self, models: list[Model], seconds: dict[str, float] | None = None) -> list[Model]:
        """This shard's models, in zoo order. With `seconds` (each model's estimated work), the models are
        dealt longest first to the shard with the least work so far (LPT over machines, ties to the lower
        shard, then zoo order); without, round robin. Every shard must see the same estimates (the same
        history file and zoo) to agree on the split: run.json records their digest, `harness report` checks."""
        if not seconds or self.total == 1:
            return [m for i, m in enumerate(models) if i % self.total == self.index - 1]
        loads, mine = [0.0] * self.total, set()
        for i in sorted(range(len(models)), key=lambda i: -seconds[models[i].name]):
            s = min(range(self.total), key=lambda j: (loads[j], j))
            loads[s] += seconds[models[i].name]
            if s == self.index - 1:
                mine.add(i)
        return [m for i, m in enumerate(models) if i in mine]

    def __str__(self) -> str:
        return f"{self.index}/{self.total}"


def gpu_list(spec: str | None) -> list[str]:
    """`--gpus 0,1,3` or `--gpus all` (every GPU nvidia-smi lists); empty: one model at a time."""
    if not spec:
        return []
    if spec == "all":
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            raise UsageError("--gpus all: nvidia-smi lists no GPU", hint="pass the ids, e.g. --gpus 0,1") from None
        return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]
    ids = [g.strip() for g in spec.split(",") if g.strip()]
    if not ids or len(set(ids)) != len(ids):
        raise UsageError(f"--gpus {spec!r}: expected distinct ids like 0,1,2 or 'all'")
    return ids


def _git_sha() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True)
    except OSError:
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _paddle_version() -> str | None:
    for dist in ("paddlepaddle-gpu", "paddlepaddle"):
        try:
            return f"{dist} {version(dist)}"
        except PackageNotFoundError:
            continue
    return None


def environment() -> dict:
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "paddle": _paddle_version(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        **_nvidia(),
    }


NVIDIA_SMI = re.compile(r"Driver Version:\s*(?P<driver>[\d.]+).*?CUDA Version:\s*(?P<cuda>[\d.]+)")


def _nvidia() -> dict[str, str]:
    """The driver and the CUDA version it offers, as nvidia-smi's header says them; nothing without a GPU."""
    try:
        out = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    found = NVIDIA_SMI.search(out.stdout) if out.returncode == 0 else None
    return {"driver": found["driver"], "cuda": found["cuda"]} if found else {}


def gpu_name() -> str | None:
    """The GPUs' name as nvidia-smi says it (the name the worker records, from the same driver); several kinds
    are joined, so that a reference measured on one of them never stands for the other; None without a GPU."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = sorted({line.strip() for line in out.stdout.splitlines() if line.strip()}) if out.returncode == 0 else []
    return " + ".join(names) or None


def _error_result(zoo: Zoo, model: Model, run_id: str, stack: str, stage: str, exc: HarnessError) -> Result:
    """The result of a model that never reached verify (the run's shared preparation failed)."""
    rec = v.start_record(zoo, model, run_id, stack)
    rec.error, rec.finished = StageFailure(stage=stage, message=str(exc)), now()
    return rec


def run(
    zoo: Zoo,
    zoo_path: Path,
    lock: LockFile,
    names: list[str] | None,
    opts: Options,
    run_dir: Path,
    *,
    resume: bool = False,
    shard: Shard = Shard(),
    gpus: list[str] | None = None,
    history: list[HistoryEntry] | None = None,
) -> list[Result]:
    """Verify the selected models of this shard into `run_dir` through the work queue (`Queue`, planned by
    schedule.py from `history`); returns their results in zoo order."""
    chosen = zoo.select(names)
    device = resolve_device(opts.device)
    nominal = [
        schedule.estimate(
            zoo, m, opts.subset or schedule.NOMINAL_IMAGES, history or [], device=device, eval_size=opts.eval_size
        )
        for m in chosen
    ]
    seconds = {e.model: round(e.seconds(), 3) for e in nominal}
    selected = shard.pick(chosen, seconds)
    run_id = opts.run_id or run_dir.name
    several = bool(gpus) or opts.parallel not in (1, "auto")  # units at once: no progress bars
    opts = dataclasses.replace(opts, run_id=run_id, progress=False if several else opts.progress)
    with Claims() as claims:  # one writer per model directory (and per run.json), before anything is written
        claims.take(run_dir, RUN, f"harness run {run_id}")
        for m in selected:
            claims.take(run_dir, m.name, f"harness run {run_id}")
        meta = _run_record(zoo_path, run_dir, opts, shard, gpus, selected, seconds, resume=resume)
        atomic_write_json(run_dir / RUN, meta.model_dump(), sort_keys=False)
        _evaluate(zoo, lock, opts, run_dir, list(selected), gpus, history, resume=resume)
        records = [read([model_dir(run_dir, m.name) / RESULT])[0] for m in selected]
        meta.finished = now()
        meta.counts = {s: sum(r.status == s for r in records) for s in (PASS, FAIL, ERROR)}
        atomic_write_json(run_dir / RUN, meta.model_dump(), sort_keys=False)
        return records


def _run_record(
    zoo_path: Path,
    run_dir: Path,
    opts: Options,
    shard: Shard,
    gpus: list[str] | None,
    selected: list[Model],
    seconds: dict[str, float],
    *,
    resume: bool,
) -> RunRecord:
    """run.json as the run starts (a resumed run keeps its start and adds this resumption)."""
    previous = RunRecord.load(run_dir / RUN) if resume else None
    return RunRecord(
        run_id=opts.run_id or run_dir.name,
        zoo=str(zoo_path),
        zoo_sha256=hashlib.sha256(zoo_path.read_bytes()).hexdigest(),
        harness=__version__,
        harness_git_sha=_git_sha(),
        environment=Environment.model_validate(environment()),
        shard=str(shard),
        gpus=gpus or None,
        models=[m.name for m in selected],
        shard_estimates_sha256=hashlib.sha256(json.dumps(seconds, sort_keys=True).encode()).hexdigest(),
        options={k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(opts).items()},
        started=previous.started if previous else now(),
        resumed=[*(previous.resumed if previous else []), *([now()] if resume else [])],
    )


def _evaluate(
    zoo: Zoo,
    lock: LockFile,
    opts: Options,
    run_dir: Path,
    todo: list[Model],
    gpus: list[str] | None,
    history: list[HistoryEntry] | None,
    *,
    resume: bool,
) -> None:
    """Prepare the run's inputs once and put every model through the queue (with --resume, a finished result
    of the same inputs is kept: Queue.run); a failed preparation is every model's error, none is silent."""
    if not todo:
        return
    run_id = opts.run_id or run_dir.name
    try:
        inputs = prepare(zoo, lock, opts, todo)
    except HarnessError as exc:
        log.error("preparing the run failed: %s", exc)
        for m in todo:
            write(run_dir, _error_result(zoo, m, run_id, zoo.source(opts.stack)[0], "prepare", exc))
        return
    estimates = [
        schedule.estimate(
            zoo, m, inputs.images_of(m) or 0, history or [], device=inputs.device, eval_size=opts.eval_size
        )
        for m in todo
    ]
    slots: list[str | None] = list(gpus) if gpus else [None] * (1 if opts.parallel == "auto" else opts.slices)
    the_plan = schedule.plan(estimates, len(slots), parallel=opts.parallel)
    Queue(zoo, inputs, lock, opts, run_dir, slots, resume).run(todo, the_plan)


class Queue:
    """The run's work queue: units (model, slice) in the plan's order (longest first), each taken by the
    next free slot (a GPU, or a share of the CPU's cores); a model whose last unit finished is merged, scored
    and judged on a scoring thread while the slots go on with the next units. A failing unit fails its model
    (its other units are cancelled) and nothing else. With --resume, a unit whose worker already answered ok
    for the same spec is kept, not run again."""

    def __init__(
        self, zoo: Zoo, inputs, lock: LockFile, opts: Options, run_dir: Path, slots: list[str | None], resume: bool
    ) -> None:
        self.zoo, self.inputs, self.lock, self.opts, self.run_dir = zoo, inputs, lock, opts, run_dir
        self.slots, self.resume = slots, resume
        self.free: queue.Queue[str | None] = queue.Queue()
        for s in slots:
            self.free.put(s)
        self.guard = threading.Lock()

    def run(self, models: list[Model], plan: schedule.Plan) -> None:
        jobs: dict[str, v.Job] = {}
        state: dict[str, dict] = {}
        for m in models:
            k = plan.slices.get(m.name, 1)
            job = v.begin(self.zoo, m, self.inputs, self.lock, dataclasses.replace(self.opts, parallel=k), self.run_dir)
            try:
                v.prepare(job)
            except HarnessError as exc:
                v.failed(job, exc)
                _announce(v.complete(job))
                continue
            if self.resume and v.kept_result(job) is not None:
                log.info("%s: complete result of the same inputs kept (--resume)", m.name)
                continue
            jobs[m.name] = job
            kept = {i: u for i in range(k) if self.resume and (u := v.kept_unit(job, i)) is not None}
            state[m.name] = {
                "left": k - len(kept),
                "units": dict(kept),
                "error": None,
                "cancel": threading.Event(),
                "clock": None,
            }
            for i in kept:
                log.info("%s: unit %d/%d kept (--resume)", m.name, i + 1, k)
        scoring = ThreadPoolExecutor(max_workers=1, thread_name_prefix="score")
        self.scored: list = []
        pool = ThreadPoolExecutor(max_workers=len(self.slots), thread_name_prefix="unit")
        for name, st in state.items():
            if st["left"] == 0:
                self.scored.append(scoring.submit(self._finish, jobs[name], st))
        units = [u for u in plan.units if u.model in jobs and u.index not in state[u.model]["units"]]
        self.started, self.total, self.left_s = 0, len(units), sum(u.seconds for u in units)
        try:
            futures = [pool.submit(self._one, jobs[u.model], state[u.model], u, scoring) for u in units]
            for f in futures:
                f.result()
        except KeyboardInterrupt:
            interrupt_all()  # the threads' workers die; unfinished units are removed, finished ones kept
            pool.shutdown(wait=True, cancel_futures=True)
            scoring.shutdown(wait=True, cancel_futures=True)
            for job in jobs.values():
                v.abandon(job)
            raise
        pool.shutdown()
        scoring.shutdown()
        for f in self.scored:
            f.result()  # a bug while scoring is raised, not lost in a thread

    def _one(self, job: v.Job, st: dict, unit: schedule.Unit, scoring: ThreadPoolExecutor) -> None:
        slot = self.free.get()
        with self.guard:
            st["clock"] = st["clock"] or time.perf_counter()  # the model's worker phase starts with its first unit
        try:
            if st["cancel"].is_set():
                answer = None
            else:
                self._started(unit)
                try:
                    answer = v.run_unit(job, unit.index, v.unit_options(job, unit.index, slot), st["cancel"])
                except HarnessError as exc:
                    answer = None
                    with self.guard:
                        if st["error"] is None and not st["cancel"].is_set():
                            st["error"] = exc if unit.slices == 1 else _sliced(exc, unit)
                            st["cancel"].set()
        finally:
            self.free.put(slot)
        with self.guard:
            if answer is not None:
                st["units"][unit.index] = answer
            st["left"] -= 1
            last = st["left"] == 0
        if last:
            self.scored.append(scoring.submit(self._finish, job, st))

    def _started(self, unit: schedule.Unit) -> None:
        """One progress line as a unit starts; the ETA is the plan's estimate of the work not yet started
        (this unit's included) shared by the slots."""
        with self.guard:
            self.started += 1
            eta = self.left_s / max(1, len(self.slots))
            self.left_s -= unit.seconds
            line = progress_line(self.started, self.total, unit, eta)
        log.info("%s", line)

    def _finish(self, job: v.Job, st: dict) -> None:
        try:
            if st["error"] is not None:
                raise st["error"]
            units = [st["units"][i] for i in range(len(st["units"]))]
            v.finish(job, units, time.perf_counter() - (st["clock"] or time.perf_counter()))
        except HarnessError as exc:
            v.failed(job, exc)
        _announce(v.complete(job))


def _sliced(exc: HarnessError, unit: schedule.Unit) -> HarnessError:
    if isinstance(exc, StageError):
        return StageError(
            f"slice {unit.index + 1}/{unit.slices}: {exc.message}",
            hint=exc.hint,
            log_tail=exc.log_tail,
            details=exc.details,
        )
    return exc


NAME_WIDTH = 60  # a progress line stays one line: longer model names are cut


def progress_line(n: int, total: int, unit: schedule.Unit, eta_s: float) -> str:
    """`[12/240] ppyoloe_crn_l_300e_coco … slice 1/4 · ETA 1:02:03`: the n-th of the run's `total` units starts;
    the slice only when the model is cut, the ETA from the plan's estimates (h:mm:ss)."""
    name = unit.model if len(unit.model) <= NAME_WIDTH else unit.model[: NAME_WIDTH - 1] + "…"
    piece = f" … slice {unit.index + 1}/{unit.slices}" if unit.slices > 1 else ""
    h, rest = divmod(max(0, round(eta_s)), 3600)
    return f"[{n}/{total}] {name}{piece} · ETA {h}:{rest // 60:02d}:{rest % 60:02d}"


def _announce(rec: Result) -> None:
    units = rec.parallel.units if rec.parallel else []
    gpus = sorted({str(u.gpu) for u in units if u.gpu is not None})
    where = f" (GPU {','.join(gpus)})" if gpus else ""
    detail = rec.error.message.splitlines()[0] if rec.error else "; ".join(m.reason for m in rec.metrics.values())
    log.info("%s%s: %s — %s", rec.model, where, rec.status.upper(), detail)


def exit_code(records: list[Result]) -> ExitCode:
    """The worst verdict decides: an error (could not measure) outranks a fail (measured, outside tolerance)."""
    statuses = {r.status for r in records}
    return ExitCode.ERROR if ERROR in statuses else ExitCode.FAIL if FAIL in statuses else ExitCode.OK
