"""`.pdparams` checkpoints: read them safely, and compare them with the model they claim to be for.

Why both here: ppdet's eval path never fails on a checkpoint that does not fit the model (missing keys
keep their random init, extra keys are "not used", mis-shaped ones are skipped, and a file whose keys all
carry a `model.` prefix loads nothing at all). The harness therefore compares keys and shapes itself and
refuses to evaluate anything but an exact fit.

A `.pdparams` is a pickle. Unpickling runs whatever the file names, so a hostile file could execute code;
the reader below admits only what paddle's save format needs (numpy arrays, dtypes and plain containers).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError

# paddle.save writes this metadata key next to the parameters (structured name -> parameter name).
PADDLE_META_KEY = "StructuredToParameterName@@"
SHOW = 5  # names of each kind quoted in a message

_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("collections", "OrderedDict"),
}


class CheckpointError(HarnessError):
    """The checkpoint cannot be read, is not a state dict, or does not fit the model."""


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refused to load global {module}.{name}")
        return super().find_class(module, name)


def load_state(path: Path) -> dict:
    """The parameters of a `.pdparams` file (name -> numpy array), read without executing code."""
    try:
        with path.open("rb") as f:
            state = _Restricted(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable paddle checkpoint: {exc}",
                              hint="re-fetch the weights (`harness fetch MODEL`); a truncated or corrupt "
                              "download, or not a .pdparams at all") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a state dict (found {type(state).__name__})",
                              hint="point weights: at a .pdparams saved with paddle.save(model.state_dict())")
    state.pop(PADDLE_META_KEY, None)
    return state


@dataclass(frozen=True)
class WeightCheck:
    """How a checkpoint fits a model: only an exact fit (all three lists empty) may be evaluated."""

    missing: list[str] = field(default_factory=list)  # in the model, not in the file
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the model
    mismatched: list[tuple[str, list[int], list[int]]] = field(default_factory=list)  # name, file, model
    matched: int = 0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def hint(self) -> str:
        """Name the common cause when there is one: every key wearing (or missing) the same prefix."""
        if self.missing and len(self.missing) == len(self.unexpected):
            for extra, want in ((self.unexpected, self.missing), (self.missing, self.unexpected)):
                prefix = _common_prefix(extra, want)
                if prefix:
                    verb = "carries" if extra is self.unexpected else "lacks"
                    return f"every key in the file {verb} the prefix {prefix!r}: save the state dict without it"
        return "check that the weights belong to this config (zoo.yaml: weights and config)"

    def summary(self) -> str:
        parts = [f"{len(self.missing)} missing", f"{len(self.unexpected)} unexpected",
                 f"{len(self.mismatched)} mis-shaped"]
        lines = [f"weights do not fit the model ({', '.join(parts)}; {self.matched} match)"]
        if self.missing:
            lines.append("  missing: " + _names(self.missing))
        if self.unexpected:
            lines.append("  unexpected: " + _names(self.unexpected))
        if self.mismatched:
            shown = ", ".join(f"{n} file {f} vs model {m}" for n, f, m in self.mismatched[:SHOW])
            lines.append(f"  mis-shaped: {shown}" + (" …" if len(self.mismatched) > SHOW else ""))
        return "\n".join(lines)

    def as_json(self) -> dict:
        return {"ok": self.ok, "matched": self.matched, "missing": len(self.missing),
                "unexpected": len(self.unexpected), "mismatched": len(self.mismatched),
                "first_missing": self.missing[:SHOW], "first_unexpected": self.unexpected[:SHOW],
                "first_mismatched": [list(m) for m in self.mismatched[:SHOW]]}


def _names(names: list[str]) -> str:
    return ", ".join(names[:SHOW]) + (f" … (+{len(names) - SHOW})" if len(names) > SHOW else "")


def _common_prefix(longer: list[str], shorter: list[str]) -> str | None:
    first = longer[0]
    for target in shorter:
        if first.endswith("." + target):
            prefix = first[: len(first) - len(target)]
            if all(k.startswith(prefix) for k in longer) and {k[len(prefix):] for k in longer} == set(shorter):
                return prefix
    return None


def compare(file_shapes: dict[str, list[int]], model_shapes: dict[str, list[int]]) -> WeightCheck:
    """Keys and shapes of a checkpoint against a model's state dict. Pure: no paddle needed."""
    missing = sorted(set(model_shapes) - set(file_shapes))
    unexpected = sorted(set(file_shapes) - set(model_shapes))
    common = sorted(set(model_shapes) & set(file_shapes))
    mismatched = [(k, list(file_shapes[k]), list(model_shapes[k])) for k in common
                  if list(file_shapes[k]) != list(model_shapes[k])]
    return WeightCheck(missing, unexpected, mismatched, len(common) - len(mismatched))
