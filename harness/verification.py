"""One model, end to end: fetch → worker (strict weights, ppdet eval) → score → judge → record.

Errors are recorded, not raised: whatever stage fails, the model gets a complete `result.json` with
status `error`, the stage, the message and the tail of the worker's log, so a crash in one model never
loses another model's result.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from harness import __version__, dataset, source
from harness.artifacts import Fetched, fetch_artifact, invalidate
from harness.dataset import CocoData
from harness.errors import HarnessError, UsageError
from harness.files import atomic_write_json, read_json, remove_tree
from harness.lockfile import LockFile
from harness.manifest import Model, Zoo
from harness.results import RESULT, model_dir, now, write, write_at
from harness.scoring import metrics, score_files, scorer
from harness.source import SourceTree
from harness.timing import Method
from harness.verdict import ERROR, judge, overall

log = logging.getLogger(__name__)

# Measured on these machines (docs/stacks.md): 2 cores, 800 px, Faster R-CNN; Mask R-CNN is slower still.
CPU_SECONDS_PER_IMAGE = 10.8
LOG_TAIL = 40
# worker.json error kinds that are the checkpoint's fault (stage `weights`), see worker._weights_error
WEIGHT_ERRORS = ("checkpoint_unreadable", "checkpoint_local", "weights_mismatch", "weights_values")


@dataclass(frozen=True)
class Options:
    device: str = "auto"  # auto | cpu | gpu
    subset: int | None = None
    seed: int = 0
    data: Path | None = None
    ppdet_root: Path | None = None
    locked: bool = False
    eval_size: int | None = None  # short side in px the config's eval Resize is scaled to; None = the config's
    opts: dict = field(default_factory=dict)  # nested overrides merged into the config (ppdet's -o)
    timeout_s: float | None = None
    stack: str | None = None
    workers: int = 0
    progress: bool | None = None
    threads: int | None = None  # CPU threads (OMP_NUM_THREADS; paddle's own default is 1)
    gpu: str | None = None  # CUDA_VISIBLE_DEVICES for the worker (one model per GPU in `harness run --gpus`)
    run_id: str | None = None  # recorded in every result; shards of one nightly share it
    timing: bool = True
    backends: tuple[str, ...] = ("dygraph",)
    method: Method = field(default_factory=Method)
    scorer: str | None = None  # faster-coco-eval (default) | pycocotools


@dataclass(frozen=True)
class Inputs:
    """What every model of a run shares: the source tree and the dataset, prepared once."""

    stack: str
    tree: SourceTree
    data: CocoData
    device: str


class StageError(HarnessError):
    def __init__(self, message: str, *, hint: str | None = None, log_tail: str | None = None,
                 details: dict | None = None) -> None:
        super().__init__(message, hint=hint)
        self.log_tail = log_tail
        self.details = details


def parse_opts(items: list[str]) -> dict:
    """`-o BBoxPostProcess.nms.score_threshold=0.01` → nested dict, values parsed as YAML scalars."""
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"-o {item!r}: expected KEY=VALUE", hint="e.g. -o EvalReader.batch_size=1")
        node = out
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = yaml.safe_load(value)
    return out


def resolve_device(requested: str) -> str:
    """`auto` → gpu when this machine shows an NVIDIA device, else cpu (the worker checks paddle's build)."""
    if requested != "auto":
        return requested
    return "gpu" if Path("/dev/nvidiactl").exists() or Path("/dev/nvidia0").exists() else "cpu"


def cpu_estimate(num_images: int) -> str:
    hours = num_images * CPU_SECONDS_PER_IMAGE / 3600
    return (f"no GPU: {num_images} images on the CPU take about {hours:.1f} h or more (measured "
            f"{CPU_SECONDS_PER_IMAGE} s/image for Faster R-CNN at 800 px on 2 cores; Mask R-CNN is slower). "
            "Use --subset N for a sample, or a GPU machine for the full val2017.")


def prepare(zoo: Zoo, lock: LockFile, opts: Options) -> Inputs:
    stack, pin = zoo.source(opts.stack)
    tree = source.checkout(opts.ppdet_root, pin) if opts.ppdet_root else source.prepare(pin)
    data = dataset.prepare(zoo.dataset, lock, data_dir=opts.data, subset=opts.subset, seed=opts.seed,
                           locked=opts.locked)
    return Inputs(stack, tree, data, resolve_device(opts.device))


def _tail(path: Path, n: int = LOG_TAIL) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


_RUNNING: set[subprocess.Popen] = set()
_INTERRUPTED = threading.Event()


class Interrupted(KeyboardInterrupt):
    """Raised in a worker's thread when the run was interrupted (its worker was killed for that)."""


def interrupt_all() -> None:
    """Stop every running worker (Ctrl-C / SIGTERM while models run in parallel threads)."""
    _INTERRUPTED.set()
    for proc in list(_RUNNING):
        _kill_group(proc)


def run_worker(spec: dict, mdir: Path, opts: Options, *, label: str) -> dict:
    """Run the worker in its own process group; stream its log; return its worker.json."""
    from tqdm import tqdm

    from harness.worker import PROGRESS

    mdir.mkdir(parents=True, exist_ok=True)
    spec_path, log_path, out_path = mdir / "spec.json", mdir / "worker.log", mdir / "worker.json"
    out_path.unlink(missing_ok=True)
    atomic_write_json(spec_path, spec)
    cmd = [sys.executable, "-m", "harness.worker", "eval", "--spec", str(spec_path)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HARNESS_PARENT_PID": str(os.getpid())}
    if opts.threads or "OMP_NUM_THREADS" not in env:  # paddle would pin itself to 1 thread
        env["OMP_NUM_THREADS"] = str(opts.threads or os.cpu_count() or 1)
    if opts.gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = opts.gpu
    timeout_s = opts.timeout_s
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    _RUNNING.add(proc)
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        _kill_group(proc)

    timer = threading.Timer(timeout_s, kill) if timeout_s else None
    if timer:
        timer.start()
    try:
        quiet = None if opts.progress is None else not opts.progress
        with log_path.open("w") as logf, tqdm(desc=label, unit="img", disable=quiet, file=sys.stderr,
                                              leave=False) as bar:
            for line in proc.stdout:  # type: ignore[union-attr]
                if line.startswith(PROGRESS):
                    done, total = (int(x) for x in line.split()[1:3])
                    bar.total = total
                    bar.update(done - bar.n)
                    continue
                logf.write(line)
        rc = proc.wait()
    except BaseException:  # KeyboardInterrupt included: never leave a worker behind
        _kill_group(proc)
        raise
    finally:
        _RUNNING.discard(proc)
        if timer:
            timer.cancel()
    if _INTERRUPTED.is_set():
        raise Interrupted()
    if timed_out.is_set():
        raise StageError(f"worker timed out after {timeout_s:g} s and was killed", log_tail=_tail(log_path),
                         hint="raise --timeout, or use --subset")
    record = read_json(out_path)
    if record is None:
        how = f"killed by signal {signal.Signals(-rc).name}" if rc < 0 else f"exited with code {rc}"
        raise StageError(f"worker {how} without a result (crash or out of memory?)", log_tail=_tail(log_path),
                         hint=f"see {log_path}")
    return record


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def table_record(zoo: Zoo, model: Model, stack: str, commit: str | None = None) -> dict:
    """How the report shows the model: its README table's layout, its labels, the links of its row."""
    source = zoo.sources[stack]
    commit = commit or source.commit
    table = zoo.table_of(model)
    return {"name": model.table, "layout": table.model_dump() if table else None, "labels": model.labels,
            "weights_url": model.weights.url, "config": model.config, "input_size": model.input_size,
            "config_url": f"{source.repository.rstrip('/')}/blob/{commit}/{model.config}"}


def worker_spec(inputs: Inputs, model: Model, config: Path, weights: Fetched, mdir: Path, opts: Options, *,
                evaluate: bool) -> dict:
    """What the worker is asked; it refuses weights whose bytes do not hash to `weights_sha256`, sets the eval
    geometry from the config (`eval_short`, `input_size`: geometry.py) and checks that the documented
    `metrics` have predictions."""
    timing = None
    if opts.timing:
        timing = {"backends": list(opts.backends), "method": asdict(opts.method)}
    return {"ppdet_root": str(inputs.tree.root), "config": str(config), "weights": str(weights.path),
            "weights_sha256": weights.sha256,
            "images": str(inputs.data.images), "annotations": str(inputs.data.annotations), "out": str(mdir),
            "device": inputs.device, "eval_short": opts.eval_size, "input_size": model.input_size,
            "metrics": list(model.documented()), "opts": opts.opts, "workers": opts.workers,
            "eval": evaluate, "timing": timing}


def bench(zoo: Zoo, model: Model, inputs: Inputs, lock: LockFile, opts: Options, run_dir: Path) -> dict:
    """Timing only (no eval): writes <run>/<model>/timing.json and fills result.json's `timing` if the run
    directory already holds a verify result for the model."""
    mdir = model_dir(run_dir, model.name)
    weights = fetch_artifact(model.weights, lock, locked=opts.locked)
    spec = worker_spec(inputs, model, inputs.tree.config(model), weights, mdir, opts, evaluate=False)
    worker = run_worker(spec, mdir, opts, label=model.name)
    if worker.get("status") != "ok":
        raise StageError(worker.get("error") or "worker failed", log_tail=_tail(mdir / "worker.log"))
    timing = {**worker["timing"], "eval_size": _reduced(worker.get("geometry")), "model": model.name}
    atomic_write_json(mdir / "timing.json", timing, sort_keys=False)
    result = read_json(mdir / "result.json")
    if isinstance(result, dict) and result.get("model") == model.name:
        result["timing"] = timing
        write(run_dir, {k: v for k, v in result.items() if k != "schema"})
    return timing


def _reduced(geometry: dict | None) -> list[int] | None:
    """The eval size when --eval-size changed it (the AP is then not comparable), else None."""
    return geometry["eval"] if geometry and geometry.get("changed_by") == "eval_size" else None


def verify(zoo: Zoo, model: Model, inputs: Inputs, lock: LockFile, opts: Options, run_dir: Path) -> dict:
    """Verify one model; always returns (and writes) a complete result record."""
    mdir = model_dir(run_dir, model.name)
    rec: dict = {
        "model": model.name, "run_id": opts.run_id or run_dir.name, "zoo_index": zoo.models.index(model),
        "status": ERROR, "error": None,
        "notice": zoo.notice, "stack": inputs.stack, "harness": __version__, "started": now(),
        "documented": model.documented(),
        "table": table_record(zoo, model, inputs.stack, inputs.tree.commit),
        "ppdet": inputs.tree.as_json(), "device": inputs.device,
        "dataset": {"name": zoo.dataset.name, "num_images": inputs.data.num_images, "subset": inputs.data.subset,
                    "annotations": str(inputs.data.annotations), "eval_size": None},
        "artifacts": {"source_archive_sha256": inputs.tree.archive_sha256, "dataset": inputs.data.sha256},
        "metrics": {}, "stats": {}, "durations": {}, "timing": None,
    }
    stage, t0 = "fetch", time.perf_counter()
    clock = t0
    try:
        weights = fetch_artifact(model.weights, lock, locked=opts.locked)
        rec["artifacts"]["weights"] = {"url": weights.url, "sha256": weights.sha256, "size": weights.size}
        config = inputs.tree.config(model)
        rec["durations"]["fetch"], clock = round(time.perf_counter() - clock, 3), time.perf_counter()

        stage = "worker"
        spec = worker_spec(inputs, model, config, weights, mdir, opts, evaluate=True)
        worker = run_worker(spec, mdir, opts, label=model.name)
        rec.update({k: worker.get(k) for k in ("paddle", "device", "device_name", "architecture", "geometry")})
        rec["dataset"]["eval_size"] = _reduced(worker.get("geometry"))
        rec["weight_check"] = worker.get("weight_check")
        if worker.get("pretrained_not_loaded"):  # construction-time backbone downloads the worker skipped
            rec["pretrained_not_loaded"] = worker["pretrained_not_loaded"]
        rec["durations"]["worker"], clock = round(time.perf_counter() - clock, 3), time.perf_counter()
        rec["durations"]["worker_stages"] = worker.get("durations")
        if worker.get("status") != "ok":
            kind = worker.get("error_kind")
            stage = "weights" if kind in WEIGHT_ERRORS else "worker"
            message = worker.get("error") or "worker failed"
            if kind == "checkpoint_unreadable":  # only a format error evicts; a local fault keeps entry and pin
                message += "\n  " + invalidate(model.weights, lock, f"harness fetch {model.name}")
            raise StageError(message, log_tail=_tail(mdir / "worker.log"))
        loaded = worker["weight_check"]
        rec["artifacts"]["weights"].update(sha256=loaded["sha256"], size=loaded["size"])  # the bytes evaluated
        rec["timing"] = {**worker["timing"], "eval_size": rec["dataset"]["eval_size"]} if worker.get("timing") else None
        rec["predictions"] = {k: str(Path(p).relative_to(mdir)) for k, p in worker["predictions"].items()}
        rec["detections"] = worker.get("detections")

        stage = "score"
        using = scorer(opts.scorer)
        rec["scorer"] = using.describe()
        rec["stats"] = score_files(inputs.data.annotations, worker["predictions"], using)
        measured = metrics(rec["stats"])
        rec["durations"]["score"] = round(time.perf_counter() - clock, 3)

        stage = "verdict"
        verdicts = [judge(name, measured.get(name), doc, zoo.tolerance_for(model, name))
                    for name, doc in model.documented().items()]
        rec["metrics"] = {v.metric: v.as_json() for v in verdicts}
        rec["status"] = overall(verdicts)
    except HarnessError as exc:
        rec["status"] = ERROR
        rec["error"] = {"stage": stage, "message": str(exc), "log_tail": getattr(exc, "log_tail", None)}
    except KeyboardInterrupt:  # the worker is already killed; leave nothing half-done for --resume to trip on
        if not (mdir / RESULT).exists():
            remove_tree(mdir, inside=run_dir)
        raise
    rec["durations"]["total"] = round(time.perf_counter() - t0, 3)
    rec["finished"] = now()
    write(run_dir, rec)
    return rec


def rescore(run_dir: Path, scorer_name: str | None = None) -> list[dict]:
    """Recompute every stat and verdict of a run from its stored predictions, without running a model
    (e.g. after a scorer change). Results that never reached scoring are left as they are."""
    using = scorer(scorer_name)
    records = []
    for path in sorted(run_dir.glob(f"*/{RESULT}")):
        rec = json.loads(path.read_text())
        if rec.get("predictions") and rec.get("metrics"):
            files = {k: path.parent / rel for k, rel in rec["predictions"].items()}
            annotations = Path(rec["dataset"]["annotations"])
            if not annotations.is_file():
                raise UsageError(f"{path}: its annotations {annotations} are gone",
                                 hint="rescore on the machine (and cache) that ran it, or re-run the model")
            rec["stats"] = score_files(annotations, files, using)
            measured = metrics(rec["stats"])
            verdicts = [judge(name, measured.get(name), m["documented"], m["tolerance"])
                        for name, m in rec["metrics"].items()]
            rec["metrics"] = {v.metric: v.as_json() for v in verdicts}
            rec["status"] = overall(verdicts)
            rec["scorer"] = using.describe()
            rec["rescored"] = now()
            write_at(path, {k: v for k, v in rec.items() if k != "schema"})  # where it was read, whatever `model` says
        records.append(rec)
    if not records:
        raise UsageError(f"no {RESULT} under {run_dir}", hint="pass a directory written by verify or run")
    return records


def summary_line(rec: dict) -> str:
    parts = [f"{m}: {v['reason']}" for m, v in rec.get("metrics", {}).items() if v.get("reason")]
    if rec.get("error"):
        parts.append(f"error in {rec['error']['stage']}: {rec['error']['message']}")
    return f"{rec['model']}: {rec['status'].upper()}" + ("\n  " + "\n  ".join(parts) if parts else "")


def dumps(rec: dict) -> str:
    return json.dumps(rec, indent=2, sort_keys=True)
