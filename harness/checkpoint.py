"""`.pdparams` checkpoints: read them without trusting them, and compare them with the model they claim to fit.

Why both here: ppdet's eval path never fails on a checkpoint that does not fit the model (missing keys
keep their random init, extra keys are "not used", mis-shaped ones are skipped, and a file whose keys all
carry a `model.` prefix loads nothing at all). The harness therefore compares keys and shapes itself and
refuses to evaluate anything but an exact fit.

A `.pdparams` is a pickle (paddle.save: a dict of name -> numpy array, pickle protocol 4; older files
protocol 2). Unpickling runs whatever the file names, and even numpy's own reconstructors, allowed by
name, let a file build arrays without data, views over freed buffers or object fields. So this module does
not unpickle at all: it interprets the small subset of pickle opcodes that paddle's format needs (see
docs/checkpoint-format.md) and builds nothing but inert records of (shape, dtype, bytes). Arrays are made
afterwards, with `np.frombuffer` over their own bytes (copied where byte order or layout needs it), only
from records that pass every check:

- a dtype from `DTYPES` (what paddle.save writes), never object, void, structured or complex;
- the byte count is exactly prod(shape) x itemsize; every array has its own bytes, used once;
- every length the file claims is checked against what is left of the file *before* anything is read,
  and the number of opcodes is bounded by the file size, so memory stays linear in the file;
- every float value is finite (the tensors that are not are named);
- a value is cast to the model's dtype only where no value changes (paddle's bfloat16-as-uint16 storage
  is a reinterpretation, as paddle documents).

The anchors are `torch.load(weights_only=True)` (an allow-listed unpickler) and numpy's
`allow_pickle=False`; neither checks finiteness or the model's shapes, and torch still calls the
allow-listed constructors. Every byte read is hashed, so the sha256 recorded with a result is the hash of
the very bytes that were evaluated.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.errors import HarnessError

# paddle.save writes this metadata key next to the parameters (structured name -> parameter name).
PADDLE_META_KEY = "StructuredToParameterName@@"
SHOW = 5  # names of each kind quoted in a message

# numpy type strings paddle.save writes (bfloat16 is stored as uint16), and their names.
DTYPES = {
    "f4": "float32",
    "f2": "float16",
    "f8": "float64",
    "u2": "uint16",
    "i8": "int64",
    "i4": "int32",
    "u1": "uint8",
    "b1": "bool",
}
MAX_DIMS = 32
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


# ---- the opcode interpreter ----------------------------------------------------------------------


class _Refused(Exception):
    """Raised inside the interpreter; turned into a FormatError naming the file and the offset."""


class _Global:
    """An allow-listed global: a name, never the real object. Only REDUCE gives it meaning."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind


class _Stub:
    """An inert record of a REDUCE call and its BUILD state; its state can be set exactly once."""

    __slots__ = ("args", "built", "state")

    def __init__(self, args: tuple) -> None:
        self.args, self.built = args, False
        self.state: object = None

    def build(self, state: object) -> None:
        if self.built:
            raise _Refused(f"{type(self).__name__.strip('_').lower()} state set twice")
        self.state, self.built = state, True


class _Array(_Stub):
    """numpy.core.multiarray._reconstruct(ndarray, ...), then BUILD (version, shape, dtype, fortran, bytes)."""


class _Dtype(_Stub):
    """numpy.dtype(typestr, align, copy), then BUILD (3, byteorder, None, None, None, -1, -1, 0)."""


class _Latin1(_Stub):
    """_codecs.encode(text, 'latin1'): how pickle protocol 2 stores bytes (older paddle files)."""


_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy._core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy", "ndarray"): "ndarray",
    ("numpy", "dtype"): "dtype",
    ("collections", "OrderedDict"): "ordereddict",
    ("_codecs", "encode"): "encode",
    ("__builtin__", "bytes"): "bytes",  # protocol 2 writes b"" as bytes()
    ("builtins", "bytes"): "bytes",
}
_MADE_BY = {"reconstruct": _Array, "dtype": _Dtype, "encode": _Latin1}


class _Reader:
    """The file, read once: every byte hashed, every claimed length checked against what is left first."""

    def __init__(self, f, size: int) -> None:
        self.f, self.size, self.pos = f, size, 0
        self.sha = hashlib.sha256()

    def take(self, n: int) -> bytes:
        if n > self.size - self.pos:
            raise _Refused(f"claims {n} bytes, only {self.size - self.pos} are left in the file")
        data = self.f.read(n)
        if len(data) != n:  # the file shrank under us
            raise OSError(f"file ended at byte {self.pos + len(data)} of {self.size} while reading")
        self.pos += n
        self.sha.update(data)
        return data

    def blob(self, n: int) -> bytearray:
        """An array's bytes, read into their own (mutable) buffer: an array can then use them as its memory,
        so reading costs the file's size once, not twice."""
        if n > self.size - self.pos:
            raise _Refused(f"claims {n} bytes, only {self.size - self.pos} are left in the file")
        buf = bytearray(n)
        if self.f.readinto(buf) != n:
            raise OSError(f"file ended before byte {self.pos + n} of {self.size} while reading")
        self.pos += n
        self.sha.update(buf)
        return buf

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "little")

    def line(self, limit: int = 256) -> str:
        out = bytearray()
        while (c := self.take(1)) != b"\n":
            out += c
            if len(out) > limit:
                raise _Refused("text line too long")
        return out.decode("ascii", "strict")

    def rest(self) -> int:
        """Hash whatever follows the pickle's STOP; returns how many bytes that was."""
        extra = 0
        while chunk := self.f.read(1 << 20):
            self.sha.update(chunk)
            extra += len(chunk)
        return extra


def _reduce(func: object, args: object) -> object:
    if not isinstance(func, _Global) or not isinstance(args, tuple):
        raise _Refused("REDUCE of something that is not an allowed global")
    if func.kind in ("ordereddict", "bytes"):
        if args:
            raise _Refused(f"{func.kind} called with arguments")
        return {} if func.kind == "ordereddict" else b""
    if func.kind not in _MADE_BY:
        raise _Refused(f"{func.kind} cannot be called")
    return _MADE_BY[func.kind](args)


def _pop_mark(stack: list, marks: list[int]) -> list:
    if not marks:
        raise _Refused("no MARK on the stack")
    at = marks.pop()
    items = stack[at:]
    del stack[at:]
    return items


def _setitems(target: object, items: list) -> None:
    if not isinstance(target, dict) or len(items) % 2:
        raise _Refused("SETITEMS on something that is not a dict")
    for key, value in zip(items[::2], items[1::2], strict=True):
        if type(key) not in (str, int):
            raise _Refused(f"dict key of type {type(key).__name__}")
        target[key] = value


def _interpret(r: _Reader, max_ops: int) -> object:  # noqa: C901, PLR0912, PLR0915  # one branch per allowed opcode: the allow-list reads as one dispatch
    """Run the opcode stream; returns the object STOP leaves. Builds only str, int, bool, None, tuple, list,
    dict, bytes and the inert stubs above."""
    stack: list = []
    marks: list[int] = []
    memo: dict[int, object] = {}
    for _ in range(max_ops):
        op = r.take(1)
        if op == b"\x80":  # PROTO
            if not 2 <= r.uint(1) <= 5:
                raise _Refused("unsupported pickle protocol")
        elif op == b"\x95":  # FRAME: framing only; its length must fit the file
            if r.uint(8) > r.size - r.pos:
                raise _Refused("frame longer than the file")
        elif op == b".":  # STOP
            if len(stack) != 1 or marks:
                raise _Refused("STOP with an unbalanced stack")
            return stack[0]
        elif op == b"(":
            marks.append(len(stack))
        elif op == b"}":
            stack.append({})
        elif op == b"]":
            stack.append([])
        elif op == b")":
            stack.append(())
        elif op == b"t":
            stack.append(tuple(_pop_mark(stack, marks)))
        elif op in (b"\x85", b"\x86", b"\x87"):  # TUPLE1..3
            n = op[0] - 0x84
            if len(stack) < n + (marks[-1] if marks else 0):
                raise _Refused("tuple of missing items")
            items = tuple(stack[-n:])
            del stack[-n:]
            stack.append(items)
        elif op == b"s":  # SETITEM
            if len(stack) < 3:
                raise _Refused("SETITEM on a short stack")
            value, key = stack.pop(), stack.pop()
            _setitems(stack[-1], [key, value])
        elif op == b"u":
            pairs = _pop_mark(stack, marks)
            _setitems(stack[-1] if stack else None, pairs)
        elif op in (b"a", b"e"):  # APPEND, APPENDS
            added = _pop_mark(stack, marks) if op == b"e" else [stack.pop()] if len(stack) > 1 else None
            if added is None or not stack or not isinstance(stack[-1], list):
                raise _Refused("APPEND to something that is not a list")
            stack[-1].extend(items)
        elif op in (b"\x8c", b"X", b"\x8d"):  # SHORT_BINUNICODE, BINUNICODE, BINUNICODE8
            n = r.uint({b"\x8c": 1, b"X": 4, b"\x8d": 8}[op])
            stack.append(r.take(n).decode("utf-8", "surrogatepass"))
        elif op in (b"C", b"B", b"\x8e"):  # SHORT_BINBYTES, BINBYTES, BINBYTES8
            stack.append(r.blob(r.uint({b"C": 1, b"B": 4, b"\x8e": 8}[op])))
        elif op == b"K":
            stack.append(r.uint(1))
        elif op == b"M":
            stack.append(r.uint(2))
        elif op == b"J":
            stack.append(struct.unpack("<i", r.take(4))[0])
        elif op == b"\x8a":  # LONG1
            n = r.uint(1)
            if n > 8:
                raise _Refused("integer wider than 64 bits")
            stack.append(int.from_bytes(r.take(n), "little", signed=True))
        elif op in (b"\x88", b"\x89", b"N"):
            stack.append({b"\x88": True, b"\x89": False, b"N": None}[op])
        elif op in (b"c", b"\x93"):  # GLOBAL, STACK_GLOBAL
            if op == b"c":
                module, name = r.line(), r.line()
            else:
                if len(stack) < 2:
                    raise _Refused("STACK_GLOBAL on a short stack")
                name, module = stack.pop(), stack.pop()
            kind = _GLOBALS.get((module, name)) if isinstance(module, str) and isinstance(name, str) else None
            if kind is None:
                raise _Refused(f"refused to load global {module}.{name}")
            stack.append(_Global(kind))
        elif op == b"R":
            if len(stack) < 2:
                raise _Refused("REDUCE on a short stack")
            args, func = stack.pop(), stack.pop()
            stack.append(_reduce(func, args))
        elif op == b"b":  # BUILD
            if len(stack) < 2 or not isinstance(stack[-2], _Stub):
                raise _Refused("BUILD on something that is not an array or dtype")
            state = stack.pop()
            stack[-1].build(state)
        elif op in (b"\x94", b"q", b"r"):  # MEMOIZE, BINPUT, LONG_BINPUT
            if not stack:
                raise _Refused("memo store from an empty stack")
            memo[len(memo) if op == b"\x94" else r.uint(1 if op == b"q" else 4)] = stack[-1]
        elif op in (b"h", b"j"):  # BINGET, LONG_BINGET
            idx = r.uint(1 if op == b"h" else 4)
            if idx not in memo:
                raise _Refused(f"memo {idx} read before it was stored")
            stack.append(memo[idx])
        elif op == b"0":
            if not stack:
                raise _Refused("POP from an empty stack")
            stack.pop()
        elif op == b"1":
            _pop_mark(stack, marks)
        else:
            raise _Refused(f"opcode {op!r} is not part of paddle's checkpoint format")
    raise _Refused(f"more than {max_ops} opcodes: not a checkpoint of this size")


# ---- from stubs to checked tensor records -----------------------------------------------------------


@dataclass
class _Tensor:
    """One array as the file stores it; `data` is dropped once the array is built."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    data: bytes | bytearray | None


def _dtype(stub: object) -> np.dtype:
    if not isinstance(stub, _Dtype) or not stub.built:
        raise _Refused("array dtype is not a plain numpy dtype")
    args, state = stub.args, stub.state
    known = len(args) == 3 and isinstance(args[0], str) and args[0] in DTYPES
    if not known or args[1] not in (False, 0) or args[2] not in (True, 1):
        raise _Refused(
            f"dtype {args[0] if args else '?'!r} is not one paddle.save writes ({', '.join(DTYPES.values())})"
        )
    if not (
        isinstance(state, tuple)
        and len(state) == 8
        and state[0] == 3
        and state[1] in ("<", ">", "|", "=")
        and state[2:] == (None, None, None, -1, -1, 0)
    ):
        raise _Refused(f"dtype {args[0]!r} carries fields, a sub-array or flags (a structured dtype)")
    dt = np.dtype(args[0])
    return dt.newbyteorder(state[1]) if state[1] in "<>" and dt.itemsize > 1 else dt


def _tensor(stub: object, seen: set[int]) -> _Tensor:
    if (
        not isinstance(stub, _Array)
        or not stub.args
        or not isinstance(stub.args[0], _Global)
        or stub.args[0].kind != "ndarray"
    ):
        raise _Refused("value is not a numpy array")
    if not stub.built:
        raise _Refused("array without data (no state)")
    state = stub.state
    if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
        state = state[1:]
    if not (isinstance(state, tuple) and len(state) == 4):
        raise _Refused("array state is not (shape, dtype, fortran, bytes)")
    shape, dtype, fortran, data = state
    if not (
        isinstance(shape, tuple) and len(shape) <= MAX_DIMS and all(type(d) is int and 0 <= d < 1 << 48 for d in shape)
    ):
        raise _Refused(f"array shape {shape!r} is not a tuple of sizes")
    dt = _dtype(dtype)
    if isinstance(data, _Latin1):
        if len(data.args) != 2 or not isinstance(data.args[0], str) or data.args[1] not in ("latin1", "latin-1"):
            raise _Refused("array data is not latin1-encoded bytes")
        blob, data = data, data.args[0].encode("latin-1")
    elif type(data) in (bytes, bytearray):
        blob = data
    else:
        raise _Refused("array data is not bytes")
    if len(data) > 1:  # empty and 1-byte bytes are shared singletons in CPython's pickles
        if id(blob) in seen:
            raise _Refused("array data used by more than one array")
        seen.add(id(blob))
    want = math.prod(shape) * dt.itemsize
    if len(data) != want:
        raise _Refused(f"array of shape {list(shape)} and dtype {dt.name} needs {want} bytes, has {len(data)}")
    if fortran not in (True, False, 0, 1):
        raise _Refused("array order flag is not a bool")
    return _Tensor(shape, dt, bool(fortran), data)


@dataclass
class Checkpoint:
    """A checkpoint whose structure has been checked; arrays are built one at a time by `arrays()`."""

    path: Path
    sha256: str  # of every byte of the file, as read
    size: int
    tensors: dict[str, _Tensor]

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
            reader = _Reader(f, size)
            try:
                top = _interpret(reader, max_ops=1_000_000 + size // 64)
                extra = reader.rest()
                if extra:
                    raise _Refused(f"{extra} bytes follow the end of the pickle")
                tensors = _tensors(top)
            except _Refused as exc:
                raise FormatError(
                    f"{path}: not a readable paddle checkpoint: {exc} (at byte {reader.pos})", hint=READ_HINT
                ) from None
            except (UnicodeDecodeError, struct.error) as exc:
                raise FormatError(
                    f"{path}: not a readable paddle checkpoint: {exc} (at byte {reader.pos})", hint=READ_HINT
                ) from None
    except (OSError, MemoryError) as exc:
        raise LocalError(
            f"{path}: could not read the checkpoint on this machine: {type(exc).__name__}: {exc}",
            hint="check free memory and the disk, then run again (nothing was evicted)",
        ) from None
    return Checkpoint(path, reader.sha.hexdigest(), size, tensors)


def _tensors(top: object) -> dict[str, _Tensor]:
    if not isinstance(top, dict):
        raise _Refused(f"not a state dict (found {type(top).__name__})")
    seen: set[int] = set()
    out = {}
    for key, value in top.items():
        if key == PADDLE_META_KEY:
            continue
        if not isinstance(key, str):
            raise _Refused(f"state dict key {key!r} is not a name")
        try:
            out[key] = _tensor(value, seen)
        except _Refused as exc:
            raise _Refused(f"{key}: {exc}") from None
    if not out:
        raise _Refused("the state dict holds no arrays")
    return out


def load_state(path: Path) -> dict[str, np.ndarray]:
    """Every array of a checkpoint by name (for tests and tools; the worker streams with `assign`)."""
    return dict(read(path).arrays())


# ---- values: finiteness and exact casts ---------------------------------------------------------------


def nonfinite(arr: np.ndarray, model_dtype: str | None = None) -> bool:
    """Any NaN or infinity? (bfloat16 stored as uint16 is checked by its exponent bits.)"""
    if arr.dtype.kind == "f":
        return not bool(np.isfinite(arr).all())
    if model_dtype == "bfloat16" and arr.dtype == np.uint16:
        return bool(((arr & 0x7F80) == 0x7F80).any())
    return False


def conform(arr: np.ndarray, model_dtype: str) -> np.ndarray:
    """`arr` in the model's dtype, only where no value changes; ValueError saying why otherwise.

    paddle's own loader (ppdet's load_pretrain_weight) casts any dtype with `astype`, which silently
    drops precision, range or an imaginary part. Here a cast must be exact: the values cast back must
    equal the file's. bfloat16 is paddle's one documented reinterpretation: it saves bfloat16 as uint16 bits.
    """
    if arr.dtype.name == model_dtype:
        return arr
    if model_dtype == "bfloat16":
        if arr.dtype == np.uint16:
            return arr  # paddle.save stores bfloat16 as its uint16 bits; set_value reads them back as such
        if arr.dtype == np.float32:
            bits = arr.view(np.uint32)
            if (bits & 0xFFFF).any():
                raise ValueError("float32 values that bfloat16 cannot hold exactly")
            return (bits >> 16).astype(np.uint16)
        raise ValueError(f"{arr.dtype.name} cannot be cast to bfloat16 exactly")
    try:
        target = np.dtype(model_dtype)
    except TypeError:
        raise ValueError(f"unknown model dtype {model_dtype}") from None
    out = arr.astype(target)
    if not np.array_equal(out.astype(arr.dtype), arr):
        raise ValueError(f"{arr.dtype.name} values that {model_dtype} cannot hold exactly")
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
        if nonfinite(arr, want):
            bad_values.append(name)
            continue
        try:
            out = conform(arr, want)
        except ValueError as exc:
            bad_casts.append(f"{name} ({exc})")
            continue
        if want != arr.dtype.name:
            casts[name] = f"{arr.dtype.name} -> {want}"
        del arr
        put(name, out)
    problems = []
    if bad_values:
        problems.append(f"{len(bad_values)} tensors hold NaN or infinite values: {_names(bad_values)}")
    if bad_casts:
        problems.append(
            f"{len(bad_casts)} tensors cannot be cast to the model's dtype without changing values: {_names(bad_casts)}"
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
                    return f"every key in the file {verb} the prefix {prefix!r}: save the state dict without it"
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
            shown = ", ".join(f"{n} file {f} vs model {m}" for n, f, m in self.mismatched[:SHOW])
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
            "first_unexpected": self.unexpected[:SHOW],
            "first_mismatched": [list(m) for m in self.mismatched[:SHOW]],
        }


def _names(names: list[str]) -> str:
    return ", ".join(names[:SHOW]) + (f" … (+{len(names) - SHOW})" if len(names) > SHOW else "")


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
