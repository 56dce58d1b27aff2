"""Eval geometry from the config itself: the Resize of its EvalReader, changed only on purpose.

Why from the config: families evaluate at different geometries — R-CNNs keep the ratio to [800, 1333],
PP-YOLOE and RT-DETR resize to a square 640, PP-YOLO documents one checkpoint at 320/416/512/608 — so no
size may be assumed in code (timm's `resolve_data_config`: each model's facts come from the model).

Two changes exist, both recorded with the result:
- a documented `input_size` (the README's number for that size): the target becomes that square size;
- `--eval-size PX` (smoke tests on a CPU): that target scaled so its short side is PX, whatever its shape
  ([800, 1333] -> [320, 533]; [640, 640] -> [320, 320]); the AP is then not comparable.
A config whose EvalReader has no Resize evaluates each image at its own size (CenterNet's WarpAffine with
`keep_res`): there is nothing to scale or set, so neither `--eval-size` nor a documented `input_size`
applies (CenterNet's README column "512x512" is its training size; `tools/eval.py` with the config is what
gives the documented number). Recorded as `unscaled`, and the report says so.
Both apply to the EvalReader and the TestReader (what export writes to infer_cfg.yml), to the TestReader's
fixed input shape, so timing and TensorRT shapes follow, and to the eval size the model itself was built
for (the shared `eval_size` of PP-YOLOE's head and RT-DETR's transformer).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class Geometry(BaseModel):
    """The eval geometry a result was measured at (what `apply` decided): the config's own target, the one
    used, what changed it, or why nothing could be scaled (`unscaled`)."""

    model_config = ConfigDict(extra="forbid")

    config: list[int] | None = None
    eval: list[int] | None = None
    changed_by: Literal["eval_size", "input_size"] | None = None
    unscaled: str | None = None


def _resize(reader: dict) -> dict | None:
    """The parameters of the reader's Resize transform (the dict ppdet's Compose will read), if any."""
    for t in (reader or {}).get("sample_transforms") or []:
        if isinstance(t, dict) and isinstance(t.get("Resize"), dict):
            return t["Resize"]
    return None


def target(cfg: dict, reader: str = "EvalReader") -> list[int] | None:
    """The reader's Resize target as [h, w] (an int target means a square)."""
    resize = _resize(cfg.get(reader) or {})
    if resize is None or "target_size" not in resize:
        return None
    t = resize["target_size"]
    return [int(t), int(t)] if isinstance(t, int | float) else [int(x) for x in t]


def scaled(size: list[int], short: int) -> list[int]:
    factor = short / min(size)
    return [round(x * factor) for x in size]


def keep_ratio_scale(size: list[int] | None, short: int, h: int, w: int) -> float:
    """The factor a ratio-keeping Resize to `size`, itself scaled so its short side is `short` (as --eval-size
    scales it), gives an h x w image: its short side to `short`, its long side at most the target's long side
    ([800, 1333] at 320 -> 320 and 533.25). Without a Resize (`size` None) each image keeps its own size, as
    such a config evaluates it (see the module's docstring)."""
    if size is None:
        return 1.0
    return min(short / min(h, w), short * max(size) / min(size) / max(h, w))


def _shared_sizes(cfg: Any, own: list[int], new: list[int]) -> None:
    """The model's own copies of the eval size: ppdet shares a top-level `eval_size` with heads and
    transformers that precompute anchors or positional embeddings for it (PP-YOLOE, RT-DETR); components may
    also set their own. Each one equal to the old target follows the new one, else the model breaks."""

    def same(value: Any) -> bool:
        return isinstance(value, list | tuple) and [int(x) for x in value] == own

    if same(cfg.get("eval_size")):
        cfg["eval_size"] = list(new)
    for key, size in (("eval_height", 0), ("eval_width", 1)):
        if cfg.get(key) == own[size]:
            cfg[key] = new[size]
    for value in list(cfg.values()):
        if isinstance(value, dict) and same(value.get("eval_size")):
            value["eval_size"] = list(new)


def apply(cfg: Any, *, short: int | None = None, square: int | None = None) -> Geometry:
    """Change the config's eval (and export) geometry as asked; returns what was decided (`Geometry`: the
    config's own target, the target used, what changed it, or why nothing could be scaled)."""
    own = target(cfg)
    if short is None and square is None:
        return Geometry(config=own, eval=own)
    if own is None:  # each image at its own size (no Resize): nothing to scale or to set
        names = [
            next(iter(t)) for t in (cfg.get("EvalReader") or {}).get("sample_transforms") or [] if isinstance(t, dict)
        ]
        why = f"no Resize in the EvalReader ({', '.join(names)}): each image at its own size"
        if square is not None:
            why += f"; the documented {square}x{square} is not an eval size for this config"
        return Geometry(unscaled=why)
    base = [square, square] if square is not None else own
    new = scaled(base, short) if short is not None else base
    if new == own:
        return Geometry(config=own, eval=own)
    for reader in ("EvalReader", "TestReader"):
        resize = _resize(cfg.get(reader) or {})
        if resize is not None and "target_size" in resize:
            old = resize["target_size"]
            resize["target_size"] = new[0] if isinstance(old, int | float) and new[0] == new[1] else list(new)
    _shared_sizes(cfg, own, new)
    shape = ((cfg.get("TestReader") or {}).get("inputs_def") or {}).get("image_shape")
    if isinstance(shape, list) and len(shape) >= 2 and all(isinstance(x, int) and x > 0 for x in shape[-2:]):
        shape[-2:] = new  # a fixed export shape (square models) follows the new size
    return Geometry(config=own, eval=new, changed_by="eval_size" if short is not None else "input_size")
