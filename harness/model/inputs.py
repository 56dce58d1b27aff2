"""What a run needs before any model: the options it was given, and the inputs the models share (the
PaddleDetection source tree and each dataset they are evaluated on, prepared once), and the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.core.errors import HarnessError, UsageError
from harness.fetch import dataset, source
from harness.fetch.dataset import CocoData
from harness.fetch.source import SourceTree
from harness.model.timing import Method
from harness.zoo.lockfile import LockFile
from harness.zoo.manifest import Model, Zoo

# Measured on these machines (docs/stacks.md): 2 cores, 800 px, Faster R-CNN; Mask R-CNN is slower still.


@dataclass(frozen=True)
class Options:
    device: str = "auto"  # auto | cpu | gpu
    subset: int | None = None
    seed: int = 0
    data: Path | None = None  # `--data DIR`: the root of the one dataset the chosen models use
    data_roots: dict[str, Path] = field(default_factory=dict)  # `--data NAME=DIR`, by dataset name
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
    """What the models of a run share: the source tree and their datasets, each prepared once. A dataset that
    could not be prepared is kept as its error: it is the error of each model evaluated on it, and of no other."""

    stack: str
    tree: SourceTree
    datasets: dict[str, CocoData | HarnessError]
    device: str
    default: str = "coco-val2017"  # the zoo's default dataset

    def data_for(self, model: Model) -> CocoData:
        """The prepared dataset `model` is evaluated on; raises its preparation's error."""
        got = self.datasets[model.dataset or self.default]
        if isinstance(got, HarnessError):
            raise got
        return got

    def images_of(self, model: Model) -> int | None:
        """How many images `model` is evaluated on (None: its dataset could not be prepared)."""
        got = self.datasets[model.dataset or self.default]
        return None if isinstance(got, HarnessError) else got.num_images

    @property
    def data(self) -> CocoData:
        """The one dataset of a run whose models share one (verify, a COCO-only nightly)."""
        if len(self.datasets) != 1:
            raise AssertionError(f"Inputs.data with {len(self.datasets)} datasets: ask data_for(model)")
        got = next(iter(self.datasets.values()))
        if isinstance(got, HarnessError):
            raise got
        return got


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


def data_roots(zoo: Zoo, opts: Options, names: list[str]) -> dict[str, Path | None]:
    """Each dataset's `--data` root (None: fetched into the cache): `--data NAME=DIR` for its name, a plain
    `--data DIR` for the one dataset the models use (with several it must be named)."""
    if unknown := sorted(set(opts.data_roots) - {zoo.dataset.name, *zoo.datasets}):
        raise UsageError(
            f"--data {unknown[0]}=...: the zoo has no dataset {unknown[0]!r}",
            hint=f"its datasets: {', '.join(sorted({zoo.dataset.name, *zoo.datasets}))}",
        )
    unnamed = [n for n in names if n not in opts.data_roots]
    if opts.data is not None and len(unnamed) > 1:
        raise UsageError(
            f"--data {opts.data}: the chosen models use {len(unnamed)} datasets ({', '.join(unnamed)})",
            hint="name the one it is: --data NAME=DIR (repeat for each)",
        )
    return {n: opts.data_roots.get(n, opts.data) for n in names}


def prepare(zoo: Zoo, lock: LockFile, opts: Options, models: list[Model] | None = None) -> Inputs:
    """The source tree and the datasets of `models` (default: the zoo's default dataset). A dataset that
    fails is that dataset's models' error; when every one fails, the first error is raised (nothing can run)."""
    stack, pin = zoo.source(opts.stack)
    tree = source.checkout(opts.ppdet_root, pin) if opts.ppdet_root else source.prepare(pin)
    wanted = zoo.datasets_of(models) if models else [zoo.dataset]
    roots = data_roots(zoo, opts, [d.name for d in wanted])
    prepared: dict[str, CocoData | HarnessError] = {}
    for ds in wanted:
        try:
            prepared[ds.name] = dataset.prepare(
                ds, lock, data_dir=roots[ds.name], subset=opts.subset, seed=opts.seed, locked=opts.locked
            )
        except HarnessError as exc:
            prepared[ds.name] = exc
    if all(isinstance(p, HarnessError) for p in prepared.values()):
        raise next(p for p in prepared.values() if isinstance(p, HarnessError))
    return Inputs(stack, tree, prepared, resolve_device(opts.device), zoo.dataset.name)
