"""One model, end to end: fetch → worker (strict weights, ppdet eval) → score → judge → record.

The run's inputs are prepared in inputs.py, the worker process is run by launcher.py and speaks
protocol.py; this module is the pipeline for one model, in the order it runs.

Errors are recorded, not raised: whatever stage fails, the model gets a complete `result.json` with
status `error`, the stage, the message and the tail of the worker's log, so a crash in one model never
loses another model's result.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

from harness import __version__
from harness.artifacts import Fetched, fetch_artifact, invalidate
from harness.errors import HarnessError, StageError, UsageError
from harness.files import atomic_write_json, read_json, remove_tree
from harness.inputs import Inputs, Options
from harness.launcher import log_tail, run_worker
from harness.lockfile import LockFile
from harness.manifest import Model, Zoo
from harness.protocol import WEIGHT_ERRORS, Spec, TimingSpec
from harness.results import RESULT, model_dir, now, read, write, write_at
from harness.scoring import metrics, score_files, scorer
from harness.verdict import ERROR, judge, overall

log = logging.getLogger(__name__)


def table_record(zoo: Zoo, model: Model, stack: str, commit: str | None = None) -> dict:
    """How the report shows the model: its README table's layout, its labels, the links of its row."""
    source = zoo.sources[stack]
    commit = commit or source.commit
    table = zoo.table_of(model)
    return {"name": model.table, "layout": table.model_dump() if table else None, "labels": model.labels,
            "weights_url": model.weights.url, "config": model.config, "input_size": model.input_size,
            "config_url": f"{source.repository.rstrip('/')}/blob/{commit}/{model.config}"}


def worker_spec(inputs: Inputs, model: Model, config: Path, weights: Fetched, mdir: Path, opts: Options, *,
                evaluate: bool) -> Spec:
    """What the worker is asked; it refuses weights whose bytes do not hash to `weights_sha256`, sets the eval
    geometry from the config (`eval_short`, `input_size`: geometry.py) and checks that the documented
    `metrics` have predictions."""
    timing = TimingSpec(backends=list(opts.backends), method=asdict(opts.method)) if opts.timing else None
    return Spec(ppdet_root=str(inputs.tree.root), config=str(config), weights=str(weights.path),
                weights_sha256=weights.sha256, images=str(inputs.data.images),
                annotations=str(inputs.data.annotations), out=str(mdir), device=inputs.device,
                eval_short=opts.eval_size, input_size=model.input_size, metrics=list(model.documented()),
                opts=opts.opts, workers=opts.workers, eval=evaluate, timing=timing)


def bench(zoo: Zoo, model: Model, inputs: Inputs, lock: LockFile, opts: Options, run_dir: Path) -> dict:
    """Timing only (no eval): writes <run>/<model>/timing.json and fills result.json's `timing` if the run
    directory already holds a verify result for the model."""
    mdir = model_dir(run_dir, model.name)
    weights = fetch_artifact(model.weights, lock, locked=opts.locked)
    spec = worker_spec(inputs, model, inputs.tree.config(model), weights, mdir, opts, evaluate=False)
    worker = run_worker(spec, mdir, opts, label=model.name)
    if worker.status != "ok" or worker.timing is None:
        raise StageError(worker.error or "worker failed", log_tail=log_tail(mdir / "worker.log"))
    timing = {**worker.timing, "eval_size": _reduced(worker.geometry), "model": model.name}
    atomic_write_json(mdir / "timing.json", timing, sort_keys=False)
    result = read_json(mdir / "result.json")
    if isinstance(result, dict) and result.get("model") == model.name:
        result["timing"] = timing
        write(run_dir, {k: v for k, v in result.items() if k != "schema"})
    return timing


def _reduced(geometry: dict | None) -> list[int] | None:
    """The eval size when --eval-size changed it (the AP is then not comparable), else None."""
    return geometry["eval"] if geometry and geometry.get("changed_by") == "eval_size" else None


def start_record(zoo: Zoo, model: Model, run_id: str, stack: str, commit: str | None = None) -> dict:
    """The fields every result has from the start (results.Result), status `error` until a verdict: verify
    fills in the rest as the pipeline goes; the runner's error path writes it with the failure."""
    return {"model": model.name, "run_id": run_id, "zoo_index": zoo.models.index(model), "status": ERROR,
            "error": None, "notice": zoo.notice, "stack": stack, "harness": __version__, "started": now(),
            "documented": model.documented(), "table": table_record(zoo, model, stack, commit),
            "metrics": {}, "stats": {}, "durations": {}, "timing": None}


def verify(zoo: Zoo, model: Model, inputs: Inputs, lock: LockFile, opts: Options, run_dir: Path) -> dict:
    """Verify one model; always returns (and writes) a complete result record."""
    mdir = model_dir(run_dir, model.name)
    rec = start_record(zoo, model, opts.run_id or run_dir.name, inputs.stack, inputs.tree.commit)
    rec.update({
        "ppdet": inputs.tree.as_json(), "device": inputs.device,
        "dataset": {"name": zoo.dataset.name, "num_images": inputs.data.num_images, "subset": inputs.data.subset,
                    "annotations": str(inputs.data.annotations), "eval_size": None},
        "artifacts": {"source_archive_sha256": inputs.tree.archive_sha256, "dataset": inputs.data.sha256},
    })
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
        rec.update(worker.model_dump(include={"paddle", "device", "device_name", "architecture", "geometry",
                                              "weight_check", "pretrained_not_loaded"}, exclude_none=True))
        rec["dataset"]["eval_size"] = _reduced(worker.geometry)
        rec["durations"]["worker"], clock = round(time.perf_counter() - clock, 3), time.perf_counter()
        rec["durations"]["worker_stages"] = worker.durations
        if worker.status != "ok":
            kind = worker.error_kind
            stage = "weights" if kind in WEIGHT_ERRORS else "worker"
            message = worker.error or "worker failed"
            if kind == "checkpoint_unreadable":  # only a format error evicts; a local fault keeps entry and pin
                message += "\n  " + invalidate(model.weights, lock, f"harness fetch {model.name}")
            raise StageError(message, log_tail=log_tail(mdir / "worker.log"))
        loaded, predictions = worker.weight_check or {}, worker.predictions or {}
        rec["artifacts"]["weights"].update(sha256=loaded["sha256"], size=loaded["size"])  # the bytes evaluated
        rec["timing"] = {**worker.timing, "eval_size": rec["dataset"]["eval_size"]} if worker.timing else None
        rec["predictions"] = {k: str(Path(p).relative_to(mdir)) for k, p in predictions.items()}
        rec["detections"] = worker.detections

        stage = "score"
        using = scorer(opts.scorer)
        rec["scorer"] = using.describe()
        rec["stats"] = score_files(inputs.data.annotations, predictions, using)
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
        rec = read([path])[0]
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
