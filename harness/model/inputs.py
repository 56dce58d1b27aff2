"""What a run needs before any model: the options it was given, and the inputs every model shares (the
PaddleDetection source tree and the COCO data, prepared once), and the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.core.errors import UsageError
from harness.fetch import dataset, source
from harness.fetch.dataset import CocoData
from harness.fetch.source import SourceTree
from harness.model.timing import Method
from harness.zoo.lockfile import LockFile
from harness.zoo.manifest import Zoo

# Measured on these machines (docs/stacks.md): 2 cores, 800 px, Faster R-CNN; Mask R-CNN is slower still.


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
    workers: int | None = None  # data-loader processes; None: the config's worker_num on a GPU, 0 on a CPU
    progress: bool | None = None
    threads: int | None = None  # CPU threads (OMP_NUM_THREADS; paddle's own default is 1)
    gpu: str | None = None  # CUDA_VISIBLE_DEVICES for the worker (one model per GPU in `harness run --gpus`)
    gpus: tuple[str, ...] = ()  # `verify --gpus`: slice i of `--parallel` runs on gpus[i mod len]
    parallel: int | str = 1  # K slices of the images, one worker each (slices.py); `run` also takes "auto"
    run_id: str | None = None  # recorded in every result; shards of one nightly share it
    timing: bool = True
    backends: tuple[str, ...] = ("dygraph",)
    method: Method = field(default_factory=Method)
    scorer: str | None = None  # faster-coco-eval (default) | pycocotools

    @property
    def slices(self) -> int:
        """K of `--parallel K` for one model; "auto" is the run queue's to resolve (it replaces it per model)."""
        if isinstance(self.parallel, str):
            raise ValueError(f"--parallel {self.parallel!r} reached a single model unresolved")
        return self.parallel


@dataclass(frozen=True)
class Inputs:
    """What every model of a run shares: the source tree and the dataset, prepared once."""

    stack: str
    tree: SourceTree
    data: CocoData
    device: str


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


def prepare(zoo: Zoo, lock: LockFile, opts: Options) -> Inputs:
    stack, pin = zoo.source(opts.stack)
    tree = source.checkout(opts.ppdet_root, pin) if opts.ppdet_root else source.prepare(pin)
    data = dataset.prepare(
        zoo.dataset, lock, data_dir=opts.data, subset=opts.subset, seed=opts.seed, locked=opts.locked
    )
    return Inputs(stack, tree, data, resolve_device(opts.device))
