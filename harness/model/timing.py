"""How fps is measured: the timing loop and its statistics, with no paddle in sight.

The method (stored with every result, see `Method.describe`): batch size 1; a fixed, seeded sample of
distinct images cycled in order (never one image repeated); `warmup` untimed iterations; then timed
iterations until there are at least `min_iters` of them *and* at least `min_seconds` have passed. Each
iteration is split into three stages, each closed by `sync()` and then a `time.perf_counter()` read:

    preprocess   read + decode the file, ppdet's eval transforms, batch/pad, copy inputs to the device
    model        the forward pass including NMS (and mask paste for Mask R-CNN)
    postprocess  results copied to the host and turned into COCO results (ppdet's get_infer_results)

`sync()` waits for the device (a no-op on the CPU, where paddle's ops are synchronous): reading the clock
before the device has finished is the classic GPU timing bug, so the loop never reads the clock without
synchronising first. fps = timed images / sum of their end-to-end times.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

# The timed backends (backends.py runs them, in the worker); here, with no paddle, so that the command line
# offers them as choices without importing paddle.
BACKENDS = ("dygraph", "inference", "trt-fp32", "trt-fp16")
STAGES = ("preprocess", "model", "postprocess")
TOTAL = "end_to_end"


@dataclass(frozen=True)
class Method:
    warmup: int = 5
    min_iters: int = 50
    min_seconds: float = 10.0
    sample: int = 20  # distinct images, chosen with `seed` from the eval set
    seed: int = 0
    batch_size: int = 1

    def describe(self) -> dict:
        return {
            **asdict(self),
            "clock": "time.perf_counter",
            "order": "sample cycled in order",
            "sync": "device synchronised before every clock read (no-op on CPU)",
            "stages": {
                "preprocess": "read + decode + ppdet eval transforms + pad + copy to device",
                "model": "forward pass incl. NMS (and mask paste)",
                "postprocess": "copy results to host + ppdet get_infer_results",
            },
            "fps": "timed images / sum of end-to-end times",
        }


@dataclass
class Pipeline:
    """The three stages of one image, as callables: pre(item) -> x, model(x) -> y, post(y, item) -> r."""

    pre: Callable
    model: Callable
    post: Callable


@dataclass
class Samples:
    durations: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in (*STAGES, TOTAL)})
    iterations: int = 0
    seconds: float = 0.0  # wall time of the timed part


def run(
    items: Sequence,
    pipe: Pipeline,
    method: Method,
    *,
    sync: Callable[[], None],
    clock: Callable[[], float] = time.perf_counter,
    between: Callable[[], None] | None = None,
) -> Samples:
    """Time `pipe` over `items` following `method`. `between()` runs after each iteration, off the clock
    (e.g. to sample memory)."""
    if not items:
        raise ValueError("timing needs at least one image")
    out = Samples()
    i, start = 0, None
    while True:
        item = items[i % len(items)]
        sync()
        t0 = clock()
        x = pipe.pre(item)
        sync()
        t1 = clock()
        y = pipe.model(x)
        sync()
        t2 = clock()
        pipe.post(y, item)
        sync()
        t3 = clock()
        if i >= method.warmup:
            start = t0 if start is None else start
            for stage, d in zip((*STAGES, TOTAL), (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
                out.durations[stage].append(d)
            out.iterations += 1
            out.seconds = t3 - start
        if between:
            between()
        i += 1
        if out.iterations >= method.min_iters and out.seconds >= method.min_seconds:
            return out


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """mean, p50, p90, p99, min, max (linear interpolation between order statistics, as numpy's default)."""
    if len(values) == 1:
        v = values[0]
        return {"mean": v, "p50": v, "p90": v, "p99": v, "min": v, "max": v}
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "mean": statistics.fmean(values),
        "p50": q[49],
        "p90": q[89],
        "p99": q[98],
        "min": min(values),
        "max": max(values),
    }


def summarize(samples: Samples) -> dict:
    """Latency per stage and end to end, in milliseconds, and fps."""
    latency = {
        stage: {k: round(v * 1000, 3) for k, v in percentiles(ds).items()} for stage, ds in samples.durations.items()
    }
    total = sum(samples.durations[TOTAL])
    return {
        "iterations": samples.iterations,
        "seconds": round(samples.seconds, 3),
        "fps": round(samples.iterations / total, 4) if total > 0 else None,
        "latency_ms": latency,
    }


def cv(values: Sequence[float]) -> float:
    """Coefficient of variation (stdev / mean): how repeatable a measurement is across runs."""
    return statistics.stdev(values) / statistics.fmean(values) if len(values) > 1 else 0.0


def device_name(device: str) -> str:
    """The GPU's name (paddle) or the CPU's model name: recorded beside every timing, never guessed."""
    if device == "gpu":
        import paddle

        return paddle.device.cuda.get_device_name()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MethodRecord(_Record):
    """`Method.describe()` as stored with every timing."""

    warmup: int
    min_iters: int
    min_seconds: float
    sample: int
    seed: int
    batch_size: int
    clock: str | None = None
    order: str | None = None
    sync: str | None = None
    stages: dict[str, str] = {}
    fps: str | None = None


class Latency(_Record):
    mean: float
    p50: float
    p90: float
    p99: float
    min: float
    max: float


class PeakMemory(_Record):
    kind: str
    mb: float | None = None
    process_max_rss_mb: float | None = None


class BackendTiming(_Record):
    iterations: int
    seconds: float
    fps: float | None = None
    latency_ms: dict[str, Latency] = {}
    peak_memory: PeakMemory | None = None
    # how the backend ran (precision, threads; paddle.inference's attempt and its fallbacks): free-form by backend
    config: dict[str, Any] = {}


class FidelityAP(_Record):
    ap: float | None = None
    delta: float | None = None


class BackendFidelity(BaseModel):
    """One backend's AP per metric (named by metric, e.g. `box_ap`) against the dygraph model's, and the share of
    its boxes that match the dygraph's."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, FidelityAP]  # pydantic's way to type the extra keys

    box_match_rate: float | None = None


class Fidelity(BaseModel):
    """AP of every backend's predictions on the timing sample against the dygraph model's (keyed by backend)."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, BackendFidelity]

    images: int
    reference: str
    dygraph: dict[str, float]


class TimingRecord(_Record):
    """A model's timing (`timing.json`, and `timing` in its result): the method, the sample, each backend; or
    only `error` when timing failed (the eval's AP is kept)."""

    error: str | None = None
    method: MethodRecord | None = None
    sample_ids: list[int] = []
    backends: dict[str, BackendTiming] = {}
    device: str | None = None
    device_name: str | None = None
    paddle: str | None = None
    backend: str | None = None  # the primary backend, whose fps is the model's
    fps: float | None = None
    fidelity: Fidelity | None = None
    eval_size: list[int] | None = None  # the reduced eval size timed at (--eval-size), else None
    model: str | None = None  # in timing.json (bench)
