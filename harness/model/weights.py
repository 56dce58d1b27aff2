"""Loading a checkpoint into a built model: strict (an exact fit of keys and shapes, finite values, exact casts)
and of the very bytes the harness verified; worker.json's fields when it is refused.

The model is any object with paddle's `state_dict()` whose tensors have `shape`, `dtype` and `set_value`: this
module imports no paddle itself (the worker built the model), checkpoint.py does the reading and the checks.
"""

from __future__ import annotations

from pathlib import Path

from harness.core.files import sha256_or_none
from harness.model import checkpoint


def dtype_name(dtype) -> str:
    """paddle's dtype as numpy names it (`paddle.float32` -> `float32`; bfloat16 has no numpy twin)."""
    return str(dtype).removeprefix("paddle.")


def load(model, weights: Path, expected_sha256: str | None) -> dict:
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
        ckpt, {k: dtype_name(v.dtype) for k, v in params.items()}, lambda name, arr: params[name].set_value(arr)
    )
    return {**check.as_json(), "dtype_casts": casts, "sha256": ckpt.sha256, "size": ckpt.size}


class ChangedError(checkpoint.CheckpointError):
    """The bytes read are not the bytes the harness verified (a cache entry that rotted keeping its size and
    mtime, or was replaced): the entry goes, its pin stays (the pin is right, the copy is not)."""


def refusal(exc: checkpoint.CheckpointError) -> dict:
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
