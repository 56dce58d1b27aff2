"""The model side: the process that imports paddle and ppdet, always a subprocess of its own. It builds the model
(model_build.py), loads the checkpoint into it (weights.py), runs ppdet's eval and checks the prediction files it
wrote (predictions.py).

Why a subprocess per model: ppdet's `load_config` is process-global state (docs/stacks.md), and a crash or an OOM in a
model must not take the caller (or the other models' results) down. The parent hands over a spec
(`spec.json`), the worker writes `worker.json` next to its outputs, both as harness/model/protocol.py defines
them; stdout/stderr are the log, plus `@@progress i n` lines the parent turns into a progress bar.

    python -m harness.model.worker eval --spec SPEC.json     evaluate one model (see `evaluate`)
    python -m harness.model.worker init-weights --ppdet-root DIR --config CFG --out W.pdparams [--seed N]
                                          [--calibrate IMG ...] [--short-side PX] [--slim SLIM]
    python -m harness.model.worker build --ppdet-root DIR CONFIG[::SLIM]...   build each, one JSON line each (audit)

Exit codes: 0 done, 3 refused with a reason in worker.json (e.g. weights that do not fit), anything
else is a crash (the parent records the log's tail).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import signal
import sys
import time
from pathlib import Path

from harness.core.errors import ExitCode, HarnessError
from harness.core.files import digests
from harness.model import checkpoint, geometry, protocol, tracking, vocpreds, weights
from harness.model.model_build import (
    build_model,
    crash_handlers,
    no_pretrained_downloads,
    ppdet_on_path,
    resolve_device,
)
from harness.model.predictions import prediction_files
from harness.model.protocol import Spec, TimingSpec
from harness.model.timing import device_name
from harness.zoo import layouts


def _calibrate_batchnorm(cfg, model, images: list[Path], short_side: int) -> None:
    """Set every BatchNorm's running mean/variance to the statistics of its input on `images`.

    A freshly initialised backbone has mean 0 / variance 1 running statistics, its activations explode
    through 50 layers, and the random model outputs nothing but degenerate boxes. Normalising each layer
    with the statistics it actually sees (one forward pass, each BatchNorm set just before it runs) keeps
    the weights random but lets the model emit ordinary boxes and masks, so a rehearsal exercises the
    whole prediction and scoring path. The detections are still meaningless: AP ≈ 0. Each image is resized as
    the config's EvalReader resizes it, scaled to `short_side` (geometry.keep_ratio_scale). A backbone without
    BatchNorm (ViTPose's ViT: LayerNorm; it has only `forward_features`, no forward to call) has nothing to set.
    """
    # a tracker (FairMOT, JDE) holds its backbone in its detector
    backbone = getattr(model, "backbone", None) or getattr(getattr(model, "detector", None), "backbone", None)
    if backbone is None or not any(hasattr(m, "_mean") and hasattr(m, "_variance") for m in backbone.sublayers()):
        return
    import cv2
    import numpy as np
    import paddle

    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    batch = []
    for path in images:
        im = cv2.imread(str(path))[:, :, ::-1].astype("float32") / 255.0
        h, w = im.shape[:2]
        scale = geometry.keep_ratio_scale(geometry.target(cfg), short_side, h, w)
        resized = cv2.resize(im, (round(w * scale), round(h * scale)))
        batch.append(((resized - mean) / std).transpose(2, 0, 1).astype("float32"))
    shape = np.max([b.shape for b in batch], axis=0)
    shape[1:] = -(-shape[1:] // 32) * 32  # padded to a stride of 32, as PadBatch does (YOLOX's Focus needs even)
    padded = np.zeros((len(batch), *shape), dtype="float32")
    for i, b in enumerate(batch):
        padded[i, :, : b.shape[1], : b.shape[2]] = b

    def set_stats(layer, inputs):
        x = inputs[0]
        paddle.assign(x.mean(axis=[0, 2, 3]), layer._mean)
        paddle.assign(x.var(axis=[0, 2, 3]), layer._variance)

    norms = [m for m in model.sublayers() if hasattr(m, "_mean") and hasattr(m, "_variance")]
    hooks = [m.register_forward_pre_hook(set_stats) for m in norms]
    model.eval()
    with paddle.no_grad():
        backbone({"image": paddle.to_tensor(padded)})
    for h in hooks:
        h.remove()


def init_weights(
    root: Path,
    config: Path,
    out: Path,
    seed: int = 0,
    calibrate: list[Path] | None = None,
    short_side: int = 320,
    slim: Path | None = None,
) -> dict:
    """Save the randomly initialised state dict of a config's model (transformed by its `slim` config, if
    any) as a `.pdparams` (rehearsal zoo).

    Saved with `paddle.save`, the same call ppdet's checkpoint code uses, so the file has the format,
    keys and shapes of a published checkpoint; only the values are random. With `calibrate`, the
    BatchNorm statistics are set from those images (see `_calibrate_batchnorm`).
    """
    ppdet_on_path(root)
    import paddle

    paddle.seed(seed)
    cfg, model, _, _, _ = build_model(config, slim=slim)
    if calibrate:
        _calibrate_batchnorm(cfg, model, calibrate, short_side)
    state = model.state_dict()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    paddle.save(state, str(tmp))
    tmp.replace(out)
    return {
        "keys": len(state),
        "params": int(sum(int(v.numel()) for v in state.values())),
        "bytes": out.stat().st_size,
        "paddle": paddle.__version__,
    }


def build_many(root: Path, configs: list[str]) -> None:
    """Build each config's model on the CPU (no weights) and print one JSON line per config: the audit.

    ppdet's `load_config` merges into a process-global registry, so between configs the registry is put
    back as it was after import (each module schema copied; checked equal to a fresh process per model on
    R-CNN, PP-YOLOE, RT-DETR and SOLOv2 configs). A failure is reported with its exception; the parent
    confirms it in a fresh process before calling it a failure.
    """
    ppdet_on_path(root)
    import copy

    import paddle

    crash_handlers()
    import ppdet.modeling  # noqa: F401  (registers every module)
    from ppdet.core import workspace

    paddle.set_device("cpu")
    registry = {k: copy.copy(v) for k, v in workspace.global_config.items()}
    for config in configs:
        workspace.global_config.clear()
        workspace.global_config.update({k: copy.copy(v) for k, v in registry.items()})
        t0 = time.perf_counter()
        path, _, slim = config.partition(protocol.SLIM_SEP)  # a compressed model: transformed as it is evaluated
        try:
            if slim:
                cfg, model, _, _, _ = build_model(root / path, slim=root / slim)
                state = model.state_dict()
            else:
                cfg = workspace.load_config(str(root / path))
                workspace.merge_config({"use_gpu": False})
                with no_pretrained_downloads():
                    state = workspace.create(cfg.architecture).state_dict()
            line = {
                "config": config,
                "ok": True,
                "architecture": cfg.architecture,
                "keys": len(state),
                "params": int(sum(int(v.numel()) for v in state.values())),
            }
        except Exception as exc:  # any failure to build is the finding; it is reported, not raised
            line = {"config": config, "ok": False, "error": f"{type(exc).__name__}: {str(exc).strip()[:400]}"}
        print(json.dumps({**line, "seconds": round(time.perf_counter() - t0, 2)}), flush=True)


class _Clock:
    """Wall time per stage, in the order the stages ran."""

    def __init__(self) -> None:
        self.t = time.perf_counter()
        self.stages: dict[str, float] = {}

    def mark(self, stage: str) -> None:
        now = time.perf_counter()
        self.stages[stage] = round(now - self.t, 3)
        self.t = now


def evaluate(spec: Spec) -> dict:
    """Evaluate one model with PaddleDetection's own eval loop; predictions go to `<out>/predictions`.

    `spec` (protocol.Spec) says what to evaluate and how; the answer is protocol.WorkerResult's fields.
    Overrides applied to the real config: the dataset paths, batch size 1 (as documented),
    device, data-loader workers, and `save_prediction_only` so ppdet writes its prediction files
    (bbox.json, mask.json or segm.json; a VOC metric's bbox.json becomes voc.json, vocpreds.py) and leaves
    scoring to the harness. A tracker (metric MOT) runs eval_mot's loop instead and writes mot.json (tracking.py).
    """
    clock = _Clock()
    preds = Path(spec.out) / "predictions"
    preds.mkdir(parents=True, exist_ok=True)
    _import_stack(Path(spec.ppdet_root))
    clock.mark("import")
    device = resolve_device(spec.device)
    overrides = _overrides(spec, preds)
    slim = Path(spec.slim) if spec.slim else None
    cfg, model, geo, skipped, kind = build_model(
        Path(spec.config), device=device, overrides=overrides, short=spec.eval_short, square=spec.input_size, slim=slim
    )
    clock.mark("build")
    tracking.check(cfg, spec.layout)  # a tracker only on MOT sequences, and only a JDE-style one
    record = _record(cfg, device, overrides, geo, skipped)
    if kind is not None:  # the slim config applied, and how (slim.WHEN)
        record["slim"] = {"config": str(slim), "type": kind}
    try:
        record["weight_check"] = weights.load(model, Path(spec.weights), spec.weights_sha256)
    except checkpoint.CheckpointError as exc:
        return {**record, **weights.refusal(exc), "durations": clock.stages}
    clock.mark("load_weights")
    if spec.eval and tracking.is_tracker(cfg):  # tools/eval_mot.py's loop (tracking.py)
        record.update(tracking.evaluate(cfg, model, preds))
        clock.mark("eval")
    elif spec.eval:
        record.update(_eval(cfg, model, preds, spec.metrics, clock))
    if spec.timing:
        record.update(_timing(spec, spec.timing, cfg, model, device))
        clock.mark("timing")
    return {**record, "durations": clock.stages}


def _import_stack(root: Path) -> None:
    """paddle, its crash handlers replaced (crash_handlers), then ppdet's engine: the `import` stage."""
    ppdet_on_path(root)
    crash_handlers()
    importlib.import_module("ppdet.engine")
    importlib.import_module("ppdet.engine.callbacks")


def _overrides(spec: Spec, preds: Path) -> dict:
    """What the worker changes in the real config (evaluate's docstring), plus the spec's own `opts`."""
    images, annotations = Path(spec.images), Path(spec.annotations)
    root = layouts.common_root(images, annotations)
    files = {role: Path(p) for role, p in spec.files.items()}
    dataset = layouts.LAYOUTS[spec.layout].overrides(root, images, annotations, files)
    overrides = {
        "save_prediction_only": True,
        "output_eval": str(preds),
        "save_dir": str(preds),  # where KeyPointTopDownCOCOEval writes keypoints_results.json (not output_eval)
        "weights": spec.weights,
        **dataset,
        "EvalReader": {"batch_size": 1},
        **spec.opts,
    }
    if spec.workers is not None:  # else the config's own worker_num (verification.loader_workers)
        overrides["worker_num"] = spec.workers
    return overrides


def _record(cfg, device: str, overrides: dict, geo: geometry.Geometry, skipped: list[str]) -> dict:
    """The answer's fields known once the model is built: what ran, where, with which config changes."""
    import paddle

    record = {
        "status": "ok",
        "paddle": paddle.__version__,
        "device": device,
        "device_name": device_name(device),
        "architecture": cfg.architecture,
        "overrides": overrides,
        "threads": _threads(),
        "geometry": geo,
        "loader_workers": int(cfg.get("worker_num") or 0),
    }
    if skipped:  # what the config would have downloaded while building (replaced by the checkpoint anyway)
        record["pretrained_not_loaded"] = skipped
    return record


def _eval(cfg, model, preds: Path, metrics: list[str], clock: _Clock) -> dict:
    """ppdet's Trainer evaluates the built, checked and loaded model; its progress goes to stdout for the parent's
    bar. Returns the answer's prediction fields."""
    from ppdet.engine import Trainer
    from ppdet.engine.callbacks import Callback

    cfg["model"] = model  # Trainer evaluates this model (already checked and loaded) instead of a new one
    trainer = Trainer(cfg, mode="eval")
    total = len(trainer.dataset)

    class Progress(Callback):
        def on_step_end(self, status):
            print(f"{protocol.PROGRESS} {status['step_id'] + 1} {total}", flush=True)

    trainer.register_callbacks([Progress(trainer)])
    tie = vocpreds.attach(trainer)  # VOC's boxes come without image ids: tied to them as the metric gets them
    clock.mark("dataloader")
    trainer.evaluate()
    if tie is not None:
        tie.write(preds)
    clock.mark("eval")
    files = prediction_files(preds, metrics)
    counts = {k: len(json.loads(Path(p).read_text())) for k, p in files.items()}
    images = _images(trainer.dataset, total)
    answer = {"predictions": files, "detections": counts, "num_images": images, "predictions_sha256": digests(files)}
    if tie is not None:
        answer["scoring"] = {"voc": {"map_type": tie.map_type}}
    return answer


def _images(dataset, samples: int) -> int:
    """The images an eval read: its samples, except for a top-down keypoint dataset, whose samples are people
    (`db`, one record per person box, each naming its image's `im_id`)."""
    people = getattr(dataset, "db", None)
    if isinstance(people, list) and people and all(isinstance(r, dict) and "im_id" in r for r in people):
        return len({r["im_id"] for r in people})
    return samples


def _timing(spec: Spec, t: TimingSpec, cfg, model, device: str) -> dict:
    """The answer's `timing` (backends.bench). A failure is recorded in it, and fails the answer only when there
    is no eval: paddle raises assorted types, and a timing failure must not cost the eval's AP."""
    from harness.model import backends
    from harness.model.timing import Method

    if spec.layout != "coco":  # backends.sample_images reads COCO json
        why = f"timing samples its images from COCO json: not measured on a {spec.layout} dataset yet"
        return {"timing": {"error": why}} if spec.eval else {"timing": {"error": why}, "status": "error", "error": why}
    try:
        return {
            "timing": backends.bench(
                cfg,
                model,
                device=device,
                annotations=Path(spec.annotations),
                images=Path(spec.images),
                out=Path(spec.out),
                backends=t.backends,
                method=Method(**t.method),
            )
        }
    except Exception as exc:  # paddle raises assorted types: a timing failure must not cost the eval's AP
        import traceback

        traceback.print_exc()
        fields: dict = {
            "timing": {
                "error": str(exc)
                if isinstance(exc, HarnessError)
                else f"{type(exc).__name__}: {exc} (traceback in worker.log)"
            }
        }
        if not spec.eval:
            fields.update(status="error", error=f"timing: {exc}")
        return fields


def _threads() -> int | None:
    """The CPU threads this eval computes with (OMP_NUM_THREADS, which the launcher sets): predictions depend
    on it on a CPU (docs/stacks.md), so every record states it."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() else None


def die_with_parent() -> None:
    """SIGKILL this worker when the harness process that started it dies (Linux prctl PR_SET_PDEATHSIG), so
    a killed run never leaves an orphan writing into a model directory that `--resume` reuses."""
    parent = os.environ.get("HARNESS_PARENT_PID")
    if not parent:
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):  # the parent died before prctl took effect
        os._exit(ExitCode.ERROR)


def main(argv: list[str] | None = None) -> int:
    die_with_parent()
    parser = argparse.ArgumentParser(prog="python -m harness.model.worker")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("eval")
    p.add_argument("--spec", type=Path, required=True)
    p = sub.add_parser("init-weights")
    p.add_argument("--ppdet-root", type=Path, required=True)
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--calibrate", type=Path, nargs="*", default=None, help="images for BatchNorm statistics")
    p.add_argument("--short-side", type=int, default=320)
    p.add_argument("--slim", type=Path, default=None, help="a compressed model's slim config (--slim_config)")
    p = sub.add_parser("build", help="build configs (no weights) and print one JSON line each: the audit")
    p.add_argument("--ppdet-root", type=Path, required=True)
    p.add_argument("configs", nargs="+", help="config paths inside the tree (CONFIG::SLIM: a compressed model)")
    args = parser.parse_args(argv)
    if args.command == "build":
        build_many(args.ppdet_root, args.configs)
        return ExitCode.OK
    if args.command == "init-weights":
        info = init_weights(
            args.ppdet_root, args.config, args.out, args.seed, args.calibrate, args.short_side, args.slim
        )
        print(json.dumps(info))
        return ExitCode.OK
    spec = protocol.read_spec(args.spec)
    _fail_on_thread_errors(Path(spec.out) / protocol.ANSWER)
    try:
        record = evaluate(spec)
    except HarnessError as exc:
        record = {"status": "error", "error": str(exc)}
    except Exception as exc:  # ppdet or paddle raising inside the model's eval: that model's error, named
        import traceback

        traceback.print_exc()
        first = (str(exc).strip().splitlines() or [""])[0][:500]
        record = {
            "status": "error",
            "error": f"PaddleDetection's eval raised {type(exc).__name__}: {first} (traceback in worker.log)",
        }
    protocol.write_answer(Path(spec.out) / protocol.ANSWER, record)
    return ExitCode.OK if record["status"] == "ok" else ExitCode.ERROR


def _fail_on_thread_errors(answer: Path) -> None:
    """An exception in a background thread ends the worker with that exception as its answer.

    paddle's DataLoader reads (and runs ppdet's transforms) in a thread; when that thread raises (a transform
    that fails on an image, say), the thread dies and the main thread waits for a batch that never comes:
    the worker would hang until a timeout, and the parent could only say "timed out". No thread of an eval
    may die with an error and leave the eval's result whole, so the first such error is the answer.
    """
    import threading

    def hook(args: threading.ExceptHookArgs) -> None:
        threading.__excepthook__(args)  # the traceback, in worker.log
        first = (str(args.exc_value).strip().splitlines() or [""])[0][:500]
        where = args.thread.name if args.thread else "a thread"
        with contextlib.suppress(Exception):
            protocol.write_answer(
                answer,
                {
                    "status": "error",
                    "error": f"PaddleDetection's eval raised "
                    f"{args.exc_type.__name__}: {first} in {where} (traceback in worker.log)",
                },
            )
        _exit_now(ExitCode.ERROR)

    threading.excepthook = hook


def _exit_now(code: int) -> None:
    """Leave without the interpreter's teardown: everything the parent needs is written (worker.json is
    atomically in place, the log flushed), and unwinding paddle's modules costs about a second per model."""
    sys.stdout.flush()
    sys.stderr.flush()
    tracer = sys.modules.get("coverage")  # `harness impact build` runs the worker under coverage.py: save its data
    if tracer is not None and (running := tracer.Coverage.current()) is not None:
        running.stop()
        running.save()
    os._exit(code)


if __name__ == "__main__":
    _exit_now(main())
