"""Building a config's model in this process, the way PaddleDetection's tools do: its pinned source first on
sys.path, paddle's fatal-signal handler replaced by faulthandler, the eval geometry set (geometry.apply), and no
construction-time downloads of pretrained backbones.

Used by the worker (harness/model/worker.py, always a subprocess of its own: ppdet's config registry is process-global)
for the eval, the rehearsal's random weights and the audit's builds; scripts/bench_*.py use it directly.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from harness.core.errors import HarnessError


def ppdet_on_path(root: Path) -> None:
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
        # extracted again (harness.fetch.stamps). Where bytecode is not written at all (PYTHONDONTWRITEBYTECODE, common
        # in containers) there is nothing to redirect, and a prefix would only hide site-packages' own caches.
        from harness.fetch.cache import cache_root

        sys.pycache_prefix = str(cache_root() / "pycache")
    sys.path.insert(0, str(root))


def crash_handlers() -> None:
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


def resolve_device(requested: str) -> str:
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


def merge_into_objects(cfg, overrides: dict) -> dict:
    """Apply the overrides of a section the config declares with a YAML tag (`EvalDataset:
    !KeypointTopDownCocoDataset`: an object ppdet built while loading) as that object's attributes; return the
    rest, for ppdet's merge_config.

    Why: merge_config merges a dict into a dict (`EvalDataset: {name: COCODataSet, ...}`) but replaces an object
    by the dict, which `create` then refuses ("The module EvalDataset is not registered"). Attributes the object
    derived from its arguments when built are the override's to give (layouts.py: `img_prefix`)."""
    rest = {}
    for key, value in overrides.items():
        target = cfg.get(key)
        if (
            isinstance(value, dict)
            and target is not None
            and not isinstance(target, dict)
            and hasattr(target, "__dict__")
        ):
            for name, v in value.items():
                setattr(target, name, v)
        else:
            rest[key] = value
    return rest


def build_model(
    config: Path,
    *,
    device: str = "cpu",
    overrides: dict | None = None,
    short: int | None = None,
    square: int | None = None,
    slim: Path | None = None,
):
    """Load a real config plus overrides, set its eval geometry (geometry.apply) and build its architecture on
    `device`, without the construction-time downloads of pretrained backbones (no_pretrained_downloads); a
    compressed model transformed by its `slim` config as tools/eval.py --slim_config does (slim.py).
    Returns (cfg, model, geometry, the URLs of pretrained weights not downloaded, the slim type or None)."""
    import paddle
    from ppdet.core.workspace import create, load_config, merge_config

    from harness.model import geometry
    from harness.model import slim as slimming

    cfg = load_config(str(config))

    def merge() -> None:
        merge_config({"use_gpu": device == "gpu", **merge_into_objects(cfg, overrides or {})})

    def settle() -> geometry.Geometry:  # the harness's changes, over whatever a slim config merged
        merge()
        return geometry.apply(cfg, short=short, square=square)

    paddle.set_device("gpu" if device == "gpu" else "cpu")
    with no_pretrained_downloads() as skipped:
        if slim is None:
            geo = settle()
            return cfg, create(cfg.architecture), geo, skipped, None
        merge()  # as tools/eval.py merges its -o options before build_slim_model
        model, kind, geo = slimming.build(cfg, slim, lambda: create(cfg.architecture), settle)
    return cfg, model, geo, skipped, kind
