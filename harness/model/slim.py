"""Compressed models (PaddleSlim quantisation-aware training, filter pruning, distillation + pruning): the model
its config builds, transformed by its slim config the way `tools/eval.py -c CONFIG --slim_config SLIM` does
it (ppdet/slim/__init__.py `build_slim_model(cfg, slim_cfg, mode='eval')`, the same at both pinned commits),
except for the weights: ppdet loads them non-strictly into the transformed model, the harness's strict loader
(weights.py) loads the verified bytes afterwards.

Why the transformation must be replayed and not skipped: a QAT checkpoint holds the quantisation scales of
the layers PaddleSlim wrapped (`...conv._layer.weight`, `..._fake_quant_input._scale`), a pruned one has
fewer filters than its config builds; neither fits the untransformed model, and the strict loader refuses
it (weights_mismatch) instead of loading half of it as ppdet's `load_pretrain_weight` would.

`load_config(slim)` merges the slim yml into ppdet's process-global config, and tools/eval.py does it after
its `-o` options: a QAT/Pruner config changes the architecture (PP-YOLO's FPN width) before the model is
built, DistillPrune's (whose `_BASE_` is the teacher's whole config) everything after it. The harness's own
changes (the dataset's paths, batch size 1, the geometry) are applied after that merge, so that they hold
whatever it brought. Pruning names parameters by their creation names (`conv2d_27.w_0`), which count up per
process: the model is built under a fresh name generator, as in tools/eval.py's process where it is the
first model built (in the audit's worker it is not).

Used in the worker process only (paddle, ppdet and paddleslim imported inside the functions).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError

# `slim:` of a slim config -> when ppdet merges the slim config for an eval (mode='eval'):
#   before  merged, then the model built and transformed by `create(cfg.slim)` (ppdet's last branch)
#   after   the model built from the config, then merged, then pruned by `create(cfg.pruner)` (DistillPrune)
#   none    nothing: an eval of a distilled student is the plain student (build_slim_model returns cfg as is)
#   merge   merged, then the plain model built: nothing in it changes for an eval
WHEN = {
    "QAT": "before",  # quantisation-aware training (PACT too: QAT's activation_preprocess_type)
    "Pruner": "before",  # FPGM or L1-norm filter pruning
    "PrunerQAT": "before",
    "DistillPrune": "after",
    "Distill": "none",
    # sparse weights of the plain shapes: ppdet merges the slim config and sets `unstructured_prune`, which only
    # its training loop reads (trainer.py: "only enabled in the train mode"); the model is the plain one
    "UnstructuredPruner": "merge",
}
# Not replayed: their weights load *before* the transformation (PTQ, OFA); no zoo checkpoint uses them.
REFUSED = {"PTQ", "OFA"}


def slim_type(slim: Path) -> str:
    """The `slim:` key of a slim config, read as ppdet reads it (yaml.Loader: its tags are ppdet's)."""
    import yaml

    with slim.open() as f:
        raw = yaml.load(f, Loader=yaml.Loader)  # as ppdet reads it: its yaml tags are registered there
    kind = raw.get("slim") if isinstance(raw, dict) else None
    if kind in WHEN:
        return kind
    why = "not replayed (weights load before its transformation)" if kind in REFUSED else "unknown"
    raise HarnessError(
        f"{slim}: slim type {kind!r} is {why}; the harness builds {', '.join(WHEN)}",
        hint="a compressed model's `slim:` must name a quantisation, pruning or distillation config",
    )


def guard():
    """A fresh parameter-name generator: pruned_params name `conv2d_27.w_0` as a fresh process counts."""
    from paddle.utils import unique_name

    return unique_name.guard()


def build(cfg: Any, slim: Path, create_model: Callable[[], Any], settle: Callable[[], Any]) -> tuple[Any, str, Any]:
    """Build and transform the model as build_slim_model(cfg, slim, mode='eval') does, without its weights.

    `create_model` builds cfg.architecture (the caller's guards around it: no pretrained downloads);
    `settle` applies the harness's overrides and geometry to the merged config and returns the geometry.
    Returns (model, slim type, geometry). Sets cfg's `slim`, `slim_type` and `model` as ppdet sets them, so
    that ppdet's Trainer treats the model as tools/eval.py's."""
    from ppdet.core.workspace import create, load_config

    kind = slim_type(slim)
    when = WHEN[kind]
    if when == "none":
        geo = settle()
        with guard():
            return create_model(), kind, geo
    if when == "merge":
        load_config(str(slim))
        geo = settle()
        with guard():
            model = create_model()
        cfg["slim_type"] = cfg.slim
        cfg["slim"] = create(cfg.slim)
        cfg["unstructured_prune"] = True
        cfg["model"] = model
        return model, kind, geo
    if when == "before":
        load_config(str(slim))
        geo = settle()
        with guard():
            model = create_model()
        transform = create(cfg.slim)
        cfg["slim_type"] = cfg.slim
        model = _transformed(transform, model, slim)
        cfg["slim"] = transform
    else:  # DistillPrune: the student is built from its own config, then the slim config is merged
        with guard():
            model = create_model()
        load_config(str(slim))
        geo = settle()
        model = _transformed(create(cfg.pruner), model, slim)
        cfg["slim_type"] = cfg.slim
    cfg["model"] = model
    return model, kind, geo


def _transformed(transform: Callable[[Any], Any], model: Any, slim: Path) -> Any:
    """`transform(model)`; paddleslim 2.6.0's pruning on paddle 3 named as what it is (a stack limit, not the
    model's fault): it traces the model with paddle 2's `_to_static_mode_guard_`, which paddle 3 removed."""
    try:
        return transform(model)
    except AttributeError as exc:
        if "_to_static_mode_guard_" not in str(exc):
            raise
        import paddle

        raise HarnessError(
            f"{slim}: PaddleSlim 2.6.0 cannot prune on paddle {paddle.__version__} ({exc}); tools/eval.py "
            "--slim_config fails the same way",
            hint="evaluate pruned models on the previous stack (paddle 2.6): docs/stacks.md, PaddleSlim",
        ) from None
