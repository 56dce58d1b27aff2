"""The parent/worker protocol, in one place: what the harness asks a worker (`Spec`, `spec.json`) and what
the worker answers (`WorkerResult`, `worker.json`), with the error kinds that decide what the parent does.

Both sides go through this module: the parent writes a `Spec` and reads a `WorkerResult`; the worker reads
the `Spec` and writes its answer through `WorkerResult`. A field one side adds and the other does not know
is a validation error at the boundary, not a key silently dropped. Plain pydantic, no paddle: the parent
imports it without starting paddle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from harness.core.errors import HarnessError
from harness.core.files import atomic_write_json
from harness.core.schema import Strict, fields
from harness.model.geometry import Geometry

SPEC, ANSWER = "spec.json", "worker.json"
PROGRESS = "@@progress"  # a worker's stdout line `@@progress DONE TOTAL`: the parent's progress bar
SLIM_SEP = "::"  # `worker build CONFIG::SLIM`: a compressed model, built transformed by its slim config (audit)

# Why a worker refused the weights (worker.json `error_kind`), and what the parent does about it:
ERROR_KINDS = {
    "checkpoint_unreadable": "not a checkpoint the reader accepts: evict the cache entry and forget its pin",
    "checkpoint_local": "this machine could not read it (memory, a vanished file): keep the entry and pin",
    "checkpoint_changed": "not the bytes verified (the entry rotted or was replaced): evict the entry, keep the pin",
    "weights_mismatch": "keys or shapes do not fit the model (strict check): the model's error",
    "weights_values": "values not finite, or a cast that is not exact: the model's error",
}
WEIGHT_ERRORS = tuple(ERROR_KINDS)


class TimingSpec(Strict):
    backends: list[str]
    method: dict[str, Any]  # timing.Method's fields


class Spec(Strict):
    """One worker's task. `eval_short` (--eval-size) and `input_size` (the documented size) set the geometry
    from the config's own Resize (geometry.py); `metrics` (the documented names) say which predictions must
    exist; `opts` is merged into the config like ppdet's `-o`; `weights_sha256`: the bytes it must load."""

    ppdet_root: str
    config: str
    # a compressed model's PaddleSlim config (absolute): the model built from `config` is transformed by it as
    # `tools/eval.py --slim_config` does (harness/model/slim.py) before its weights load
    slim: str | None = None
    weights: str
    weights_sha256: str | None = None
    images: str
    annotations: str
    layout: str = "coco"  # a row of zoo/layouts.py: how the config's EvalDataset is pointed at the files
    files: dict[str, str] = Field(default_factory=dict)  # the layout's further files, by role (absolute paths)
    out: str
    device: Literal["auto", "cpu", "gpu"] = "auto"
    eval_short: int | None = None
    input_size: int | None = None
    metrics: list[str] = Field(default_factory=lambda: ["box_ap"])
    opts: dict[str, Any] = Field(default_factory=dict)
    workers: int | None = None  # data-loader worker processes; None: the config's own worker_num
    eval: bool = True
    timing: TimingSpec | None = None
    # What the paths hold (a unit kept by `run --resume` must be of the same content, not only the same paths):
    ppdet_tree: str | None = None  # git tree id of the source tree
    annotations_sha256: str | None = None


class WorkerResult(Strict):
    """What the worker found. `status` error: `error` says why and `error_kind` (ERROR_KINDS) what to do."""

    status: Literal["ok", "error"]
    error: str | None = None
    error_kind: Literal[WEIGHT_ERRORS] | None = None  # type: ignore[valid-type]
    paddle: str | None = None
    device: str | None = None
    device_name: str | None = None
    architecture: str | None = None
    slim: dict[str, str] | None = None  # the slim config applied: {"config": path, "type": QAT, Pruner, ...}
    overrides: dict[str, Any] | None = None
    geometry: Geometry | None = None
    weight_check: dict[str, Any] | None = None
    pretrained_not_loaded: list[str] | None = None
    predictions: dict[str, str] | None = None
    predictions_sha256: dict[str, str] | None = None  # of the files as the worker wrote them
    detections: dict[str, int] | None = None
    # the parameters ppdet's metric was configured with, by prediction file, that scoring must use ({"voc":
    # {"map_type": "11point"}}: harness/core/vocmap.py)
    scoring: dict[str, dict[str, Any]] | None = None
    num_images: int | None = None
    threads: int | None = None  # OMP_NUM_THREADS the eval computed with
    loader_workers: int | None = None  # the data-loader worker processes the eval used
    timing: dict[str, Any] | None = None
    durations: dict[str, float] | None = None


def _invalid(what: str, exc: ValidationError) -> HarnessError:
    return HarnessError(
        f"{what} does not follow the worker protocol (harness/model/protocol.py): {fields(exc)}",
        hint="the harness and its worker must be the same version",
    )


def write_spec(path: Path, spec: Spec) -> None:
    atomic_write_json(path, spec.model_dump(), sort_keys=False)


def read_spec(path: Path) -> Spec:
    try:
        return Spec.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise _invalid(str(path), exc) from None


def write_answer(path: Path, answer: dict) -> None:
    """The worker's side: `answer` validated, then written atomically (the parent sees all of it or none)."""
    try:
        data = WorkerResult.model_validate(answer).model_dump(exclude_none=True)
    except ValidationError as exc:
        raise _invalid("the worker's answer", exc) from None
    atomic_write_json(path, data, sort_keys=False)


def read_answer(path: Path) -> WorkerResult | None:
    """The parent's side: None when the worker wrote nothing (it crashed or was killed)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return WorkerResult.model_validate_json(raw)
    except ValidationError as exc:
        raise _invalid(str(path), exc) from None
