"""`.pdparams` checkpoints: read them without trusting them, and compare them with the model they claim to fit.

Why both here: ppdet's eval path never fails on a checkpoint that does not fit the model (missing keys
keep their random init, extra keys are "not used", mis-shaped ones are skipped, and a file whose keys all
carry a `model.` prefix loads nothing at all). The harness therefore compares keys and shapes itself and
refuses to evaluate anything but an exact fit.

A `.pdparams` is a pickle (paddle.save: a dict of name -> numpy array, pickle protocol 4; older files
protocol 2). Unpickling runs whatever the file names, and even numpy's own reconstructors, allowed by
name, let a file build arrays without data, views over freed buffers or object fields. So this module does
not unpickle at all: it interprets (harness/model/unpickler.py) the small subset of pickle opcodes that paddle's
format needs (see docs/checkpoint-format.md) and builds nothing but inert records of (shape, dtype, bytes):
any bytes give what pickle + numpy would build from them, or a FormatError (tests/test_checkpoint_fuzz.py,
differentially).
Arrays are made afterwards, with `np.frombuffer` over their own bytes (copied where byte order or layout needs
it), only from records that pass every check:

- a dtype from `unpickler.DTYPES` (what paddle.save writes), never object, void, structured or complex;
- the byte count is exactly prod(shape) x itemsize; every array has its own bytes, used once;
- every length the file claims is checked against what is left of the file *before* anything is read,
  and the number of opcodes is bounded by the file size, so memory stays linear in the file; no message
  quotes what the file built (`brief`), so messages stay short too;
- every float value is finite (the tensors that are not are named);
- a value is cast to the model's dtype only where no value changes; uint16 for a floating parameter is
  bfloat16 (paddle's storage of it), widened exactly; integers never become floats.

The anchors are `torch.load(weights_only=True)` (an allow-listed unpickler) and numpy's
`allow_pickle=False`; neither checks finiteness or the model's shapes, and torch still calls the
allow-listed constructors. Every byte read is hashed, so the sha256 recorded with a result is the hash of
the very bytes that were evaluated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np

from harness.core.errors import HarnessError
from harness.model.unpickler import Array, Reader, Refused, Tensor, brief, interpret, name_of

# paddle.save writes this metadata key next to the parameters (structured name -> parameter name).
PADDLE_META_KEY = "StructuredToParameterName@@"
SHOW = 5  # names of each kind quoted in a message

READ_HINT = (
    "re-fetch the weights (`harness fetch MODEL`); a truncated or corrupt download, or not a .pdparams "
    "written by paddle.save"
)


class CheckpointError(HarnessError):
    """The checkpoint cannot be used: see the subclasses for what that means for the cache."""


class FormatError(CheckpointError):
    """The bytes are not a paddle checkpoint (truncated, hostile, another format): re-fetching may help, and
    a pin learned from these bytes is worthless."""


class LocalError(CheckpointError):
    """This machine could not read the file (I/O error, file gone, out of memory). The bytes may be fine:
    nothing is evicted and no pin is forgotten."""


class WeightsError(CheckpointError):
    """A readable checkpoint that must not be evaluated: it does not fit the model, or its values are not
    finite, or they would change when cast to the model's dtype."""

    def __init__(self, message: str, *, hint: str | None = None, check: WeightCheck | None = None) -> None:
        super().__init__(message, hint=hint)
        self.check = check


# ---- from stubs to checked tensor records -----------------------------------------------------------


def _tensor(value: object, seen: set[int]) -> Tensor:
    """A state dict's value: an array whose state was checked when it was set, with bytes of its own."""
    if not isinstance(value, Array):
        raise Refused("value is not a numpy array")
    if not value.built:
        raise Refused("array without data (no state)")
    t = cast(Tensor, value.value)
    if t.data is not None and len(t.data) > 1:  # empty and 1-byte bytes are shared singletons in CPython's pickles
        if id(t.data) in seen:
            raise Refused("array data used by more than one array")
        seen.add(id(t.data))
    return Tensor(t.shape, t.dtype, t.fortran, t.data)  # a record of its own: the same array under two names


@dataclass
class Checkpoint:
    """A checkpoint whose structure has been checked; arrays are built one at a time by `arrays()`."""

    path: Path
    sha256: str  # of every byte of the file, as read
    size: int
    tensors: dict[str, Tensor]

    def shapes(self) -> dict[str, list[int]]:
        return {k: list(t.shape) for k, t in self.tensors.items()}

    def arrays(self) -> Iterator[tuple[str, np.ndarray]]:
        """Each tensor as a native-order, C-contiguous, writable array with memory of its own, built once.

        A native C-order array uses the buffer its bytes were read into (no copy: no other array can see
        that buffer, see `_tensor`); anything else (another byte order, Fortran order, protocol 2's latin1
        text, the shared 0/1-byte objects) is copied. Either way reading costs about the file size."""
        for name, t in self.tensors.items():
            data, t.data = t.data, None
            if data is None:
                raise RuntimeError(f"{name}: arrays() can only be read once")
            native = t.dtype.newbyteorder("=")
            if not data:
                arr = np.zeros(t.shape, dtype=native)
            elif type(data) is bytearray and len(data) > 1 and t.dtype.isnative and not t.fortran:
                arr = np.frombuffer(data, dtype=native).reshape(t.shape)  # its own bytes become its memory
            else:
                view = np.frombuffer(data, dtype=t.dtype).reshape(t.shape, order="F" if t.fortran else "C")
                arr = np.array(view, dtype=native, order="C", copy=True)
            del data
            yield name, arr


def read(path: Path) -> Checkpoint:
    """The checkpoint at `path`, checked as described above; raises FormatError or LocalError."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(0)
            reader = Reader(f, size)
            try:
                top = interpret(reader, max_ops=1_000_000 + size // 64)
                extra = reader.rest()
                if extra:
                    raise Refused(f"{extra} bytes follow the end of the pickle")
                tensors = _tensors(top)
            except Refused as exc:
                why = str(exc)
            except (OSError, MemoryError):
                raise
            except Exception as exc:  # the last line only: the interpreter is written not to raise on any content
                why = f"the reader failed on its content ({type(exc).__name__})"  # never str(exc): it may quote it
            else:
                return Checkpoint(path, reader.sha.hexdigest(), size, tensors)
    except (OSError, MemoryError) as exc:
        raise LocalError(
            f"{path}: could not read the checkpoint on this machine: {type(exc).__name__}: {exc}",
            hint="check free memory and the disk, then run again (nothing was evicted)",
        ) from None
    raise FormatError(f"{path}: not a readable paddle checkpoint: {why} (at byte {reader.pos})", hint=READ_HINT)


def _tensors(top: object) -> dict[str, Tensor]:
    if not isinstance(top, dict):
        raise Refused(f"not a state dict (found {type(top).__name__})")
    seen: set[int] = set()
    out = {}
    for key, value in top.items():
        if key == PADDLE_META_KEY:
            continue
        if not isinstance(key, str):
            raise Refused(f"state dict key {brief(key)} is not a name")
        try:
            out[key] = _tensor(value, seen)
        except Refused as exc:
            raise Refused(f"{name_of(key)}: {exc}") from None
    if not out:
        raise Refused("the state dict holds no arrays")
    return out


def load_state(path: Path) -> dict[str, np.ndarray]:
    """Every array of a checkpoint by name (for tests and tools; the worker streams with `assign`)."""
    return dict(read(path).arrays())


# ---- values: finiteness and exact casts ---------------------------------------------------------------


# paddle.save writes a bfloat16 tensor as numpy uint16 (its bits), and paddle reads numpy uint16 as bfloat16 on both
# stacks (paddle.load and to_tensor give a bfloat16 tensor; set_value of uint16 into a float32 parameter is refused
# as "dtype paddle.bfloat16"): uint16 in the file for a floating parameter is bfloat16, never an integer.
FLOATING = ("bfloat16", "float16", "float32", "float64")


def file_dtype(arr: np.ndarray, model_dtype: str) -> str:
    """What the file holds for a parameter of `model_dtype`: bfloat16 for uint16 bits and a floating parameter."""
    return "bfloat16" if arr.dtype == np.uint16 and model_dtype in FLOATING else arr.dtype.name


def nonfinite(arr: np.ndarray, model_dtype: str | None = None) -> bool:
    """Any NaN or infinity? (bfloat16 bits are checked by their exponent: all ones is NaN or infinity.)"""
    if arr.dtype.kind == "f":
        return not bool(np.isfinite(arr).all())
    if model_dtype is not None and file_dtype(arr, model_dtype) == "bfloat16":
        return bool(((arr & 0x7F80) == 0x7F80).any())
    return False


def conform(arr: np.ndarray, model_dtype: str) -> np.ndarray:
    """`arr` in the model's dtype, only where no value changes; ValueError saying why otherwise.

    paddle's own loader (ppdet's load_pretrain_weight) casts any dtype with `astype`, which silently drops
    precision or range (bfloat16 65536 -> float16 inf) and turns integers into floats. Here a cast must be exact:
    the values cast back must equal the file's, and integers never become a floating parameter. bfloat16 (uint16
    bits, see FLOATING) is float32's upper half: widened by a shift, as paddle's astype does, bit for bit.
    """
    have = file_dtype(arr, model_dtype)
    if have == model_dtype:
        return arr  # bfloat16 bits for a bfloat16 parameter: set_value takes them as they are
    if have == "bfloat16":
        wide = arr.astype(np.uint32)
        wide <<= 16
        arr = wide.view(np.float32)
        if model_dtype == "float32":
            return arr
    elif model_dtype in FLOATING and arr.dtype.kind != "f":
        raise ValueError(f"{have} values are integers, not {model_dtype} values")
    if model_dtype == "bfloat16":
        bits = conform(arr, "float32").view(np.uint32)
        if (bits & 0xFFFF).any():
            raise ValueError(f"{have} values that bfloat16 cannot hold exactly")
        return (bits >> 16).astype(np.uint16)
    try:
        target = np.dtype(model_dtype)
    except TypeError:
        raise ValueError(f"unknown model dtype {model_dtype}") from None
    with np.errstate(all="ignore"):  # an overflow to inf is a value changed, reported below
        out = arr.astype(target)
        exact = np.array_equal(out.astype(arr.dtype), arr)
    if not exact:
        raise ValueError(f"{have} values that {model_dtype} cannot hold exactly")
    return out


def assign(ckpt: Checkpoint, model_dtypes: dict[str, str], put: Callable[[str, np.ndarray], None]) -> dict:
    """Hand every array, finite and in the model's dtype, to `put(name, array)`, one at a time (so the peak
    is about the file size, not twice it). Names every tensor that is not finite or cannot be cast exactly;
    then nothing may be evaluated. Returns the casts made (name -> "file dtype -> model dtype")."""
    bad_values: list[str] = []
    bad_casts: list[str] = []
    casts: dict[str, str] = {}
    for name, arr in ckpt.arrays():
        want = model_dtypes[name]
        have = file_dtype(arr, want)
        if nonfinite(arr, want):
            bad_values.append(name)
            continue
        try:
            out = conform(arr, want)
        except ValueError as exc:
            bad_casts.append(f"{name_of(name)} ({exc})")
            continue
        if want != have:
            casts[name] = f"{have} -> {want}"
        del arr
        put(name, out)
    problems = []
    if bad_values:
        problems.append(f"{len(bad_values)} tensors hold NaN or infinite values: {_names(bad_values)}")
    if bad_casts:
        problems.append(
            f"{len(bad_casts)} tensors cannot be cast to the model's dtype without changing values: "
            + _names(bad_casts, clip=False)
        )
    if problems:
        raise WeightsError(
            f"{ckpt.path.name}: " + "; ".join(problems),
            hint="these weights cannot reproduce the documented AP: check their origin "
            "(a diverged training run, or a file saved from another model)",
        )
    return casts


# ---- keys and shapes --------------------------------------------------------------------------------


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
                    return f"every key in the file {verb} the prefix {brief(prefix)}: save the state dict without it"
        return "check that the weights belong to this config (zoo.yaml: weights and config)"

    def summary(self) -> str:
        parts = [
            f"{len(self.missing)} missing",
            f"{len(self.unexpected)} unexpected",
            f"{len(self.mismatched)} mis-shaped",
        ]
        lines = [f"weights do not fit the model ({', '.join(parts)}; {self.matched} match)"]
        if self.missing:
            lines.append("  missing: " + _names(self.missing))
        if self.unexpected:
            lines.append("  unexpected: " + _names(self.unexpected))
        if self.mismatched:
            shown = ", ".join(f"{name_of(n)} file {f} vs model {m}" for n, f, m in self.mismatched[:SHOW])
            lines.append(f"  mis-shaped: {shown}" + (" …" if len(self.mismatched) > SHOW else ""))
        return "\n".join(lines)

    def as_json(self) -> dict:
        return {
            "ok": self.ok,
            "matched": self.matched,
            "missing": len(self.missing),
            "unexpected": len(self.unexpected),
            "mismatched": len(self.mismatched),
            "first_missing": self.missing[:SHOW],
            "first_unexpected": [name_of(n) for n in self.unexpected[:SHOW]],
            "first_mismatched": [[name_of(n), f, m] for n, f, m in self.mismatched[:SHOW]],
        }


def _names(names: list[str], clip: bool = True) -> str:
    shown = [name_of(n) if clip else n for n in names[:SHOW]]
    return ", ".join(shown) + (f" … (+{len(names) - SHOW})" if len(names) > SHOW else "")


def _common_prefix(longer: list[str], shorter: list[str]) -> str | None:
    first = longer[0]
    for target in shorter:
        if first.endswith("." + target):
            prefix = first[: len(first) - len(target)]
            if all(k.startswith(prefix) for k in longer) and {k[len(prefix) :] for k in longer} == set(shorter):
                return prefix
    return None


def compare(file_shapes: dict[str, list[int]], model_shapes: dict[str, list[int]]) -> WeightCheck:
    """Keys and shapes of a checkpoint against a model's state dict. Pure: no paddle needed."""
    missing = sorted(set(model_shapes) - set(file_shapes))
    unexpected = sorted(set(file_shapes) - set(model_shapes))
    common = sorted(set(model_shapes) & set(file_shapes))
    mismatched = [
        (k, list(file_shapes[k]), list(model_shapes[k]))
        for k in common
        if list(file_shapes[k]) != list(model_shapes[k])
    ]
    return WeightCheck(missing, unexpected, mismatched, len(common) - len(mismatched))
