"""Timed inference backends (paddle side; imported only inside the worker subprocess).

- `dygraph`: the very model the eval ran (already strictly loaded), in eval mode under no_grad.
- `inference`: the model exported with PaddleDetection's own export (`Trainer.export`, what
  tools/export_model.py calls) and run with `paddle.inference`. On the CPU the fastest configuration is
  tried first (oneDNN + memory optimisation) and each one that fails is recorded and dropped (paddle 3.3.1
  fails with both); on the GPU plain CUDA.
- `trt-fp32` / `trt-fp16`: the exported model through TensorRT (GPU only).

All backends share ppdet's eval preprocessing and its `get_infer_results` postprocessing, so the same
work is timed and their predictions on the same images can be scored against each other (deploy
fidelity: a gap means the export changed the model).
"""

from __future__ import annotations

import json
import os
import random
import resource
import time
from pathlib import Path

import numpy as np
import paddle

from harness.core.errors import HarnessError
from harness.model.timing import BACKENDS, Method, Pipeline, device_name, run, summarize


class Device:
    """Synchronisation and peak memory for one device. On the GPU every clock read waits for the stream."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._rss_peak = 0

    def sync(self) -> None:
        if self.kind == "gpu":
            paddle.device.cuda.synchronize()

    def reset_peak(self) -> None:
        if self.kind == "gpu" and hasattr(paddle.device.cuda, "reset_max_memory_allocated"):
            paddle.device.cuda.reset_max_memory_allocated()
        self._rss_peak = self._rss()

    def sample(self) -> None:
        if self.kind != "gpu":
            self._rss_peak = max(self._rss_peak, self._rss())

    def peak(self) -> dict:
        if self.kind == "gpu":
            return {"kind": "gpu allocator peak", "mb": round(paddle.device.cuda.max_memory_allocated() / 2**20, 1)}
        return {
            "kind": "process RSS peak during the timed loop",
            "mb": round(self._rss_peak / 2**20, 1),
            "process_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def threads() -> int:
    return int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)


def sample_images(annotations: Path, images: Path, method: Method) -> list[dict]:
    """A seeded sample of distinct images of the eval set (sorted by id)."""
    data = json.loads(annotations.read_text())
    records = sorted(data["images"], key=lambda r: r["id"])
    chosen = random.Random(method.seed).sample(records, min(method.sample, len(records)))
    return [
        {"id": r["id"], "file": str(images / r["file_name"]), "h": r["height"], "w": r["width"]}
        for r in sorted(chosen, key=lambda r: r["id"])
    ]


def preprocessor(cfg):
    """ppdet's eval transforms for one image → a collated batch of numpy arrays."""
    from ppdet.data.reader import BatchCompose, Compose

    reader = cfg["EvalReader"]
    sample_tf = Compose(reader["sample_transforms"], cfg.num_classes)
    batch_tf = BatchCompose(reader.get("batch_transforms", []), cfg.num_classes, collate_batch=True)

    def pre(item: dict) -> dict:
        sample = {"im_file": item["file"], "im_id": np.array([item["id"]]), "h": item["h"], "w": item["w"]}
        return batch_tf([sample_tf(sample)])

    return pre


def _results(outs: dict, item: dict, clsid2catid: dict) -> dict:
    from ppdet.metrics.coco_utils import get_infer_results

    outs["im_id"] = np.array([[item["id"]]])
    return get_infer_results(outs, clsid2catid)


INPUTS = ("image", "im_shape", "scale_factor")


def dygraph(model, pre, clsid2catid) -> Pipeline:
    model.eval()

    def to_device(item):
        batch = pre(item)
        return {k: paddle.to_tensor(batch[k]) for k in INPUTS}

    def forward(x):
        with paddle.no_grad():
            return model(x)

    def post(y, item):
        # most outputs are tensors; some families return plain values too (SOLOv2: a paddle Size)
        return _results(
            {k: v.numpy() if hasattr(v, "numpy") else np.asarray(v) for k, v in y.items()}, item, clsid2catid
        )

    return Pipeline(to_device, forward, post)


def export(cfg, model, out: Path) -> tuple[Path, float]:
    """PaddleDetection's own export of the loaded model; returns (model dir, seconds)."""
    from ppdet.engine import Trainer

    t0 = time.perf_counter()
    cfg["model"] = model
    trainer = Trainer(cfg, mode="test")
    trainer.export(str(out))
    dirs = [p for p in out.iterdir() if p.is_dir()]
    if len(dirs) != 1:
        raise HarnessError(f"export wrote {len(dirs)} model directories into {out}, expected one")
    return dirs[0], round(time.perf_counter() - t0, 3)


def _model_files(d: Path) -> tuple[Path, Path]:
    prog = d / "model.json" if (d / "model.json").exists() else d / "model.pdmodel"  # paddle 3 writes json
    return prog, d / "model.pdiparams"


def _cpu_attempts() -> list[dict]:
    return [
        {"mkldnn": True, "memory_optim": True},
        {"mkldnn": True, "memory_optim": False},
        {"mkldnn": False, "memory_optim": True},
        {"mkldnn": False, "memory_optim": False},
    ]


def predictor(model_dir: Path, backend: str, device: str, n_threads: int, warm: dict) -> tuple[object, dict]:
    """A paddle.inference predictor for `backend`, with fallbacks on failure; returns (predictor, config)."""
    from paddle import inference

    prog, params = _model_files(model_dir)
    attempts = _cpu_attempts() if device == "cpu" else [{"memory_optim": True}, {"memory_optim": False}]
    failures = []
    for attempt in attempts:
        config = inference.Config(str(prog), str(params))
        if device == "gpu":
            config.enable_use_gpu(256, 0)
            if backend.startswith("trt"):
                precision = inference.PrecisionType.Half if backend == "trt-fp16" else inference.PrecisionType.Float32
                config.enable_tensorrt_engine(
                    workspace_size=1 << 30,
                    max_batch_size=1,
                    min_subgraph_size=3,
                    precision_mode=precision,
                    use_static=False,
                    use_calib_mode=False,
                )
                shape = warm["image"].shape
                config.set_trt_dynamic_shape_info(
                    {"image": [1, 3, 32, 32], "im_shape": [1, 2], "scale_factor": [1, 2]},
                    {"image": [1, 3, 1344, 1344], "im_shape": [1, 2], "scale_factor": [1, 2]},
                    {"image": list(shape), "im_shape": [1, 2], "scale_factor": [1, 2]},
                )
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(n_threads)
            if attempt["mkldnn"]:
                config.enable_mkldnn()
            else:
                config.disable_mkldnn()
        if attempt["memory_optim"]:
            config.enable_memory_optim()
        try:
            pred = inference.create_predictor(config)
            _feed(pred, warm)
            pred.run()  # a failing configuration fails here, on the first real run
        except Exception as exc:  # paddle raises assorted types; each failure is recorded, then the next tried
            failures.append({**attempt, "error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"})
            continue
        return pred, {
            **attempt,
            "threads": n_threads if device == "cpu" else None,
            "fallbacks": failures,
            "model_files": [prog.name, params.name],
        }
    raise HarnessError(
        f"no paddle.inference configuration ran for {backend} on {device}: " + "; ".join(f["error"] for f in failures)
    )


def _feed(pred, batch: dict) -> None:
    for name in pred.get_input_names():
        pred.get_input_handle(name).copy_from_cpu(np.ascontiguousarray(batch[name]))


def inference_pipeline(pred, pre, clsid2catid) -> Pipeline:
    names = pred.get_output_names()

    def to_device(item):
        _feed(pred, pre(item))

    def post(_, item):
        outs = [pred.get_output_handle(n).copy_to_cpu() for n in names]
        keyed = {"bbox": outs[0], "bbox_num": outs[1]}  # ppdet's export order: bbox, bbox_num[, mask]
        if len(outs) > 2:
            keyed["mask"] = outs[2]
        return _results(keyed, item, clsid2catid)

    return Pipeline(to_device, lambda _: pred.run(), post)


def predictions(pipe: Pipeline, items: list[dict]) -> dict[str, list]:
    """One untimed pass: every item's COCO results, for deploy fidelity."""
    out: dict[str, list] = {"bbox": [], "mask": []}
    for item in items:
        res = pipe.post(pipe.model(pipe.pre(item)), item)
        for kind in out:
            out[kind] += res.get(kind, [])
    return out


def bench(
    cfg,
    model,
    *,
    device: str,
    annotations: Path,
    images: Path,
    out: Path,
    backends: list[str],
    method: Method,
    precision: str = "fp32",
) -> dict:
    """Time each backend with `method`; score their predictions on the sample against each other."""
    from ppdet.data.source.category import get_categories

    from harness.score import scoring

    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise HarnessError(f"unknown backend {unknown[0]!r}", hint=f"use one of: {', '.join(BACKENDS)}")
    if device != "gpu" and (trt := [b for b in backends if b.startswith("trt")]):
        raise HarnessError(f"--backend {trt[0]} needs a GPU", hint="use --device gpu, or the inference backend")
    dev = Device(device)
    clsid2catid, _ = get_categories("COCO", str(annotations))
    items = sample_images(annotations, images, method)
    pre = preprocessor(cfg)
    record: dict = {
        "method": method.describe(),
        "sample_ids": [i["id"] for i in items],
        "backends": {},
        "device": device,
        "device_name": device_name(device),
        "paddle": paddle.__version__,
    }
    model_dir, export_s = None, None
    preds: dict[str, dict] = {}
    for backend in backends:
        config: dict = {"precision": "fp16" if backend == "trt-fp16" else precision}
        if backend == "dygraph":
            pipe = dygraph(model, pre, clsid2catid)
            config["threads"] = threads() if device == "cpu" else None
        else:
            if model_dir is None:
                model_dir, export_s = export(cfg, model, out / "export")
            pred, used = predictor(model_dir, backend, device, threads(), pre(items[0]))
            pipe = inference_pipeline(pred, pre, clsid2catid)
            config.update(used, export_seconds=export_s)
        preds[backend] = predictions(pipe, items)
        dev.reset_peak()
        samples = run(items, pipe, method, sync=dev.sync, between=dev.sample)
        record["backends"][backend] = {**summarize(samples), "peak_memory": dev.peak(), "config": config}
    primary = next((b for b in ("inference", "trt-fp16", "trt-fp32", "dygraph") if b in record["backends"]), None)
    record["backend"] = primary
    record["fps"] = record["backends"][primary]["fps"] if primary else None
    if "dygraph" in preds and len(preds) > 1:
        record["fidelity"] = scoring.fidelity(annotations, [i["id"] for i in items], preds)
    return record
