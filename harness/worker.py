"""The model side: the only module that imports paddle and ppdet, always in a subprocess of its own.

Why a subprocess per model: ppdet's `load_config` is process-global state (docs/stacks.md), and a crash or an OOM in a
model must not take the caller (or the other models' results) down. The parent hands over a spec
(`spec.json`), the worker writes `worker.json` next to its outputs, both as harness/protocol.py defines
them; stdout/stderr are the log, plus `@@progress i n` lines the parent turns into a progress bar.

    python -m harness.worker eval --spec SPEC.json     evaluate one model (see `evaluate`)
    python -m harness.worker init-weights --ppdet-root DIR --config CFG --out W.pdparams [--seed N]
                                          [--calibrate IMG ...] [--short-side PX]
    python -m harness.worker build --ppdet-root DIR CONFIG...   build each config, one JSON line each (audit)

Exit codes: 0 done, 3 refused with a reason in worker.json (e.g. weights that do not fit), anything
else is a crash (the parent records the log's tail).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from harness import checkpoint, protocol
from harness.errors import ExitCode, HarnessError
from harness.files import sha256_or_none
from harness.protocol import Spec
from harness.results import digests
from harness.timing import device_name


def _ppdet(root: Path) -> None:
    """Put the pinned PaddleDetection source first on sys.path, the way its tools/eval.py runs.

    paddle 2.x's dy2static export only works with ENABLE_FALL_BACK=False ("Can't call main_program when
    full_graph=False"; docs/stacks.md, Export and inference); it must be set before paddle is imported.
    """
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("paddlepaddle", "paddlepaddle-gpu"):
        try:
            if version(dist).split(".")[0] == "2":
                os.environ.setdefault("ENABLE_FALL_BACK", "False")
        except PackageNotFoundError:
            continue
    if sys.pycache_prefix is None and not sys.dont_write_bytecode:
        # Never write __pycache__ into the source tree: its stamp lists every entry, and one added would make it
        # extracted again (harness.stamps). Where bytecode is not written at all (PYTHONDONTWRITEBYTECODE, common
        # in containers) there is nothing to redirect, and a prefix would only hide site-packages' own caches.
        from harness.artifacts import cache_root

        sys.pycache_prefix = str(cache_root() / "pycache")
    sys.path.insert(0, str(root))


def _crash_handlers() -> None:
    """Right after `import paddle`: fatal signals go to Python's faulthandler, not to paddle's glog handler.

    paddle's handler symbolises a C++ stack inside the signal handler (locks, malloc); a SIGSEGV arriving while
    such a lock is held deadlocks it, and the worker then hangs instead of dying (seen here: a worker stuck
    in a futex with SIGSEGV blocked, its parent waiting for ever). `paddle.disable_signal_handler()` is
    paddle's documented way out; faulthandler only uses async-signal-safe calls: it writes the Python
    traceback to the log, then the default action kills the process, which the parent reports as "killed
    by signal SIGSEGV". Called before ppdet is imported, so the window with paddle's handler is the import.
    """
    import faulthandler

    import paddle

    paddle.disable_signal_handler()
    for sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT):
        signal.signal(sig, signal.SIG_DFL)
    faulthandler.enable(file=sys.stderr, all_threads=True)


def _device(requested: str) -> str:
    import paddle

    cuda = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if requested == "auto":
        return "gpu" if cuda else "cpu"
    if requested == "gpu" and not cuda:
        raise HarnessError(
            f"--device gpu: this paddle ({paddle.__version__}) "
            + ("has no CUDA support" if not paddle.device.is_compiled_with_cuda() else "sees no GPU"),
            hint="install paddle's GPU build (README: 'Verifying the real zoo'), or use --device cpu",
        )
    return requested


@contextlib.contextmanager
def no_pretrained_downloads() -> Iterator[list[str]]:
    """While building a model: every download paddle's `get_weights_path_from_url` would make is recorded
    and answered with an empty state dict instead; yields the list of URLs.

    Swin, FocalNet, ConvNeXt and the CAE ViTs load ImageNet weights *while being constructed*, from a URL in
    the config or from a table in the code (Swin turns `pretrained: None` into one). That is a download of
    bytes no zoo file names, and offline it makes the build fail (the audit found 14 such models). Every
    parameter is then replaced by the checkpoint under the strict weight check, so nothing of those bytes
    could reach an AP. The modules disagree on what "no pretrained" means (`if pretrained:` in some,
    `is not None` in others), so the download itself is answered, not the argument changed.
    """
    import tempfile

    import paddle
    import paddle.utils.download as download

    original = download.get_weights_path_from_url
    asked: list[str] = []
    with tempfile.TemporaryDirectory(prefix="harness-no-pretrained-") as tmp:
        empty = str(Path(tmp) / "empty.pdparams")
        paddle.save({}, empty)

        def answer(url: str, *args, **kwargs) -> str:
            asked.append(url)
            return empty

        # ppdet modules that imported the function by name hold their own reference: replace those too
        holders = [
            m
            for name, m in list(sys.modules.items())
            if (name == download.__name__ or name.startswith("ppdet."))
            and getattr(m, "get_weights_path_from_url", None) is original
        ]
        for m in holders:
            m.get_weights_path_from_url = answer  # type: ignore[attr-defined]  # patched where it is
        try:
            yield asked
        finally:
            for m in holders:
                m.get_weights_path_from_url = original  # type: ignore[attr-defined]


def build_model(
    config: Path,
    *,
    device: str = "cpu",
    overrides: dict | None = None,
    short: int | None = None,
    square: int | None = None,
):
    """Load a real config plus overrides, set its eval geometry (geometry.apply) and build its architecture on
    `device`, without the construction-time downloads of pretrained backbones (no_pretrained_downloads);
    returns (cfg, model, geometry, the URLs of pretrained weights not downloaded)."""
    import paddle
    from ppdet.core.workspace import create, load_config, merge_config

    from harness import geometry

    cfg = load_config(str(config))
    merge_config({"use_gpu": device == "gpu", **(overrides or {})})
    geo = geometry.apply(cfg, short=short, square=square)
    paddle.set_device("gpu" if device == "gpu" else "cpu")
    with no_pretrained_downloads() as skipped:
        model = create(cfg.architecture)
    return cfg, model, geo, skipped


def _calibrate_batchnorm(model, images: list[Path], short_side: int) -> None:
    """Set every BatchNorm's running mean/variance to the statistics of its input on `images`.

    A freshly initialised backbone has mean 0 / variance 1 running statistics, its activations explode
    through 50 layers, and the random model outputs nothing but degenerate boxes. Normalising each layer
    with the statistics it actually sees (one forward pass, each BatchNorm set just before it runs) keeps
    the weights random but lets the model emit ordinary boxes and masks, so a rehearsal exercises the
    whole prediction and scoring path. The detections are still meaningless: AP ≈ 0.
    """
    import cv2
    import numpy as np
    import paddle

    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    batch = []
    for path in images:
        im = cv2.imread(str(path))[:, :, ::-1].astype("float32") / 255.0
        h, w = im.shape[:2]
        scale = min(short_side / min(h, w), short_side * 1333 / 800 / max(h, w))
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
        model.backbone({"image": paddle.to_tensor(padded)})
    for h in hooks:
        h.remove()


def init_weights(
    root: Path, config: Path, out: Path, seed: int = 0, calibrate: list[Path] | None = None, short_side: int = 320
) -> dict:
    """Save the randomly initialised state dict of a config's model as a `.pdparams` (rehearsal zoo).

    Saved with `paddle.save`, the same call ppdet's checkpoint code uses, so the file has the format,
    keys and shapes of a published checkpoint; only the values are random. With `calibrate`, the
    BatchNorm statistics are set from those images (see `_calibrate_batchnorm`).
    """
    _ppdet(root)
    import paddle

    paddle.seed(seed)
    _, model, _, _ = build_model(config)
    if calibrate:
        _calibrate_batchnorm(model, calibrate, short_side)
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
    _ppdet(root)
    import copy

    import paddle

    _crash_handlers()
    import ppdet.modeling  # noqa: F401  (registers every module)
    from ppdet.core import workspace

    paddle.set_device("cpu")
    registry = {k: copy.copy(v) for k, v in workspace.global_config.items()}
    for config in configs:
        workspace.global_config.clear()
        workspace.global_config.update({k: copy.copy(v) for k, v in registry.items()})
        t0 = time.perf_counter()
        try:
            cfg = workspace.load_config(str(root / config))
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


def _dtype_name(dtype) -> str:
    """paddle's dtype as numpy names it (`paddle.float32` -> `float32`; bfloat16 has no numpy twin)."""
    return str(dtype).removeprefix("paddle.")


def _load_weights(model, weights: Path, expected_sha256: str | None) -> dict:
    """Strict: an exact fit of keys and shapes, finite values, exact casts, and the very bytes the harness
    verified; otherwise a CheckpointError, and the model is never evaluated.

    The checkpoint is hashed as it is read, so the sha256 recorded with the result is of the bytes that were
    loaded: a cache entry replaced after the fetch (another process, a person) is caught here. A file that will
    not read is the published file's fault only if it is the verified file: else it changed (and its pin, which
    is right, must not be forgotten with it).
    """
    actual: str | None
    try:
        ckpt = checkpoint.read(weights)
        actual = ckpt.sha256
    except checkpoint.FormatError:
        if not expected_sha256 or (actual := sha256_or_none(weights)) in (expected_sha256, None):
            raise
    if expected_sha256 and actual != expected_sha256:
        raise ChangedError(
            f"{weights}: the file changed between its verification (sha256 {expected_sha256}) and its loading "
            f"(sha256 {actual}); nothing was evaluated",
            hint="the cache entry rotted or was replaced: run again (it is downloaded and verified anew)",
        )
    params = model.state_dict()
    check = checkpoint.compare(ckpt.shapes(), {k: list(v.shape) for k, v in params.items()})
    if not check.ok:
        raise checkpoint.WeightsError(f"{weights.name}: {check.summary()}", hint=check.hint(), check=check)
    casts = checkpoint.assign(
        ckpt, {k: _dtype_name(v.dtype) for k, v in params.items()}, lambda name, arr: params[name].set_value(arr)
    )
    return {**check.as_json(), "dtype_casts": casts, "sha256": ckpt.sha256, "size": ckpt.size}


class ChangedError(checkpoint.CheckpointError):
    """The bytes read are not the bytes the harness verified (a cache entry that rotted keeping its size and
    mtime, or was replaced): the entry goes, its pin stays (the pin is right, the copy is not)."""


def _weights_error(exc: checkpoint.CheckpointError) -> dict:
    """worker.json's fields for a refused checkpoint: the kind tells the parent whether to evict it."""
    if isinstance(exc, ChangedError):
        kind = "checkpoint_changed"
    elif isinstance(exc, checkpoint.FormatError):
        kind = "checkpoint_unreadable"  # not a checkpoint: the cache entry (and a pin learned from it) must go
    elif isinstance(exc, checkpoint.LocalError):
        kind = "checkpoint_local"  # this machine failed to read it: keep the entry and its pin
    else:
        kind = "weights_mismatch" if getattr(exc, "check", None) else "weights_values"  # a WeightsError's check
    return {
        "status": "error",
        "error": str(exc),
        "error_kind": kind,
        "weight_check": exc.check.as_json() if isinstance(exc, checkpoint.WeightsError) and exc.check else None,
    }


def evaluate(spec: Spec) -> dict:
    """Evaluate one model with PaddleDetection's own eval loop; predictions go to `<out>/predictions`.

    `spec` (protocol.Spec) says what to evaluate and how; the answer is protocol.WorkerResult's fields.
    Overrides applied to the real config: the dataset paths, batch size 1 (as documented),
    device, data-loader workers, and `save_prediction_only` so ppdet writes its prediction files
    (bbox.json, mask.json or segm.json) and leaves scoring to the harness.
    """
    clock = _Clock()
    out = Path(spec.out)
    preds = out / "predictions"
    preds.mkdir(parents=True, exist_ok=True)
    _ppdet(Path(spec.ppdet_root))
    import paddle

    _crash_handlers()
    from ppdet.engine import Trainer
    from ppdet.engine.callbacks import Callback

    clock.mark("import")
    device = _device(spec.device)
    images, annotations = Path(spec.images), Path(spec.annotations)
    root = Path(os.path.commonpath([images, annotations]))
    overrides = {
        "save_prediction_only": True,
        "output_eval": str(preds),
        "weights": spec.weights,
        "EvalDataset": {
            "dataset_dir": str(root),
            "image_dir": str(images.relative_to(root)),
            "anno_path": str(annotations.relative_to(root)),
        },
        "EvalReader": {"batch_size": 1},
        **spec.opts,
    }
    overrides["TestDataset"] = {"dataset_dir": str(root), "anno_path": overrides["EvalDataset"]["anno_path"]}
    if spec.workers is not None:  # else the config's own worker_num (verification.loader_workers)
        overrides["worker_num"] = spec.workers
    cfg, model, geo, skipped = build_model(
        Path(spec.config), device=device, overrides=overrides, short=spec.eval_short, square=spec.input_size
    )
    clock.mark("build")
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
    try:
        record["weight_check"] = _load_weights(model, Path(spec.weights), spec.weights_sha256)
    except checkpoint.CheckpointError as exc:
        return {**record, **_weights_error(exc), "durations": clock.stages}
    clock.mark("load_weights")

    if spec.eval:
        cfg["model"] = model  # Trainer evaluates this model (already checked and loaded) instead of a new one
        trainer = Trainer(cfg, mode="eval")
        total = len(trainer.dataset)

        class Progress(Callback):
            def on_step_end(self, status):
                print(f"{protocol.PROGRESS} {status['step_id'] + 1} {total}", flush=True)

        trainer.register_callbacks([Progress(trainer)])
        clock.mark("dataloader")
        trainer.evaluate()
        clock.mark("eval")
        files = prediction_files(preds, spec.metrics)
        counts = {k: len(json.loads(Path(p).read_text())) for k, p in files.items()}
        record.update(predictions=files, detections=counts, num_images=total, predictions_sha256=digests(files))
    if spec.timing:
        from harness import backends
        from harness.timing import Method

        t = spec.timing
        try:
            record["timing"] = backends.bench(
                cfg,
                model,
                device=device,
                annotations=annotations,
                images=images,
                out=out,
                backends=t.backends,
                method=Method(**t.method),
            )
        except Exception as exc:  # paddle raises assorted types: a timing failure must not cost the eval's AP
            import traceback

            traceback.print_exc()
            record["timing"] = {
                "error": str(exc)
                if isinstance(exc, HarnessError)
                else f"{type(exc).__name__}: {exc} (traceback in worker.log)"
            }
            if not spec.eval:
                record.update(status="error", error=f"timing: {exc}")
        clock.mark("timing")
    return {**record, "durations": clock.stages}


# What ppdet's COCO metric writes with save_prediction_only: bbox.json (boxes), mask.json (R-CNN masks),
# segm.json (SOLOv2), and which metric prefix each one serves.
PREDICTION_FILES = {"bbox": "box", "mask": "mask", "segm": "mask"}


def _threads() -> int | None:
    """The CPU threads this eval computes with (OMP_NUM_THREADS, which the launcher sets): predictions depend
    on it on a CPU (docs/stacks.md), so every record states it."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() else None


def prediction_files(preds: Path, metrics: list[str]) -> dict[str, str]:
    """The prediction files ppdet wrote, checked against what the documented metrics need.

    Nothing written at all is a model that detected nothing: AP 0, not an error (the files the metrics need
    are written empty). Some predictions written but none for a documented metric (masks of a box-only
    model, say) is an error naming the metric: it would otherwise be "not measured" or 0 for a wrong reason.
    """
    found = {kind: preds / f"{kind}.json" for kind in PREDICTION_FILES if (preds / f"{kind}.json").exists()}
    for prefix in set(PREDICTION_FILES.values()):
        if len(twins := sorted(p.name for k, p in found.items() if PREDICTION_FILES[k] == prefix)) > 1:
            raise HarnessError(
                f"PaddleDetection wrote {' and '.join(twins)}: two files of {prefix} predictions, and one result "
                "can be scored from only one of them",
                hint="check the model's config (its metric writes one prediction file per kind)",
            )
    needed = {m.split("_", 1)[0] for m in metrics}
    served = {PREDICTION_FILES[k] for k in found}
    if not found:
        for prefix in sorted(needed):
            kind = "bbox" if prefix == "box" else "mask"
            (preds / f"{kind}.json").write_text("[]")
            found[kind] = preds / f"{kind}.json"
    elif missing := sorted(m for m in metrics if m.split("_", 1)[0] not in served):
        raise HarnessError(
            f"the documented {', '.join(missing)} cannot be measured: PaddleDetection wrote "
            f"{', '.join(sorted(p.name for p in found.values()))} and no "
            f"{'mask' if any(m.startswith('mask') for m in missing) else 'box'} predictions",
            hint="check the model's config and `expected:` in the zoo file",
        )
    return {k: str(p) for k, p in found.items()}


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
    parser = argparse.ArgumentParser(prog="python -m harness.worker")
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
    p = sub.add_parser("build", help="build configs (no weights) and print one JSON line each: the audit")
    p.add_argument("--ppdet-root", type=Path, required=True)
    p.add_argument("configs", nargs="+", help="config paths inside the tree")
    args = parser.parse_args(argv)
    if args.command == "build":
        build_many(args.ppdet_root, args.configs)
        return ExitCode.OK
    if args.command == "init-weights":
        info = init_weights(args.ppdet_root, args.config, args.out, args.seed, args.calibrate, args.short_side)
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
    os._exit(code)


if __name__ == "__main__":
    _exit_now(main())
