"""`.pdparams` checkpoints: read them without trusting them, and compare them with the model they claim to fit.

Why both here: ppdet's eval path never fails on a checkpoint that does not fit the model (missing keys
keep their random init, extra keys are "not used", mis-shaped ones are skipped, and a file whose keys all
carry a `model.` prefix loads nothing at all). The harness therefore compares keys and shapes itself and
refuses to evaluate anything but an exact fit.

A `.pdparams` is a pickle (paddle.save: a dict of name -> numpy array, pickle protocol 4; older files
protocol 2). Unpickling runs whatever the file names, and even numpy's own reconstructors, allowed by
name, let a file build arrays without data, views over freed buffers or object fields. So this module does
not unpickle at all: it interprets the small subset of pickle opcodes that paddle's format needs (see
docs/checkpoint-format.md) and builds nothing but inert records of (shape, dtype, bytes): any bytes give
what pickle + numpy would build from them, or a FormatError (tests/test_checkpoint_fuzz.py, differentially).
Arrays are made afterwards, with `np.frombuffer` over their own bytes (copied where byte order or layout needs
it), only from records that pass every check:

- a dtype from `DTYPES` (what paddle.save writes), never object, void, structured or complex;
- the byte count is exactly prod(shape) x itemsize; every array has its own bytes, used once;
- every length the file claims is checked against what is left of the file *before* anything is read,
  and the number of opcodes is bounded by the file size, so memory stays linear in the file; no message
  quotes what the file built (`_brief`), so messages stay short too;
- every float value is finite (the tensors that are not are named);
- a value is cast to the model's dtype only where no value changes; uint16 for a floating parameter is
  bfloat16 (paddle's storage of it), widened exactly; integers never become floats.

The anchors are `torch.load(weights_only=True)` (an allow-listed unpickler) and numpy's
`allow_pickle=False`; neither checks finiteness or the model's shapes, and torch still calls the
allow-listed constructors. Every byte read is hashed, so the sha256 recorded with a result is the hash of
the very bytes that were evaluated.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

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
MAX_BYTES = 1 << 48  # of one array, counting its non-zero dimensions (numpy refuses shapes beyond 2^63 bytes)
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


def _brief(obj: object, quote: bool = True, limit: int = 40) -> str:
    """A value read from the file, for a message: a text (cut to `limit`, its length said) or a number as itself,
    anything else by its type and size. Never the repr of what the file built: a tuple nested by memo references
    is a few bytes of file and 2^depth characters of repr (or a RecursionError)."""
    if isinstance(obj, str):
        text = repr(obj[:limit]) if quote else obj[:limit]
        return text if len(obj) <= limit else f"{text}… ({len(obj)} characters)"
    if obj is None or type(obj) in (bool, int):  # at most 64 bits: LONG1 is limited to 8 bytes
        return repr(obj)
    size = f" of {len(obj)}" if isinstance(obj, tuple | list | dict | bytes | bytearray) else ""
    return f"{type(obj).__name__.strip('_').lower()}{size}"


def _name(name: str) -> str:
    """A tensor's name (from the file) for a message: cut, with its length, when long."""
    return _brief(name, quote=False, limit=80)


def _flag(obj: object) -> bool | None:
    """A bool as picklers write one (NEWTRUE/NEWFALSE, or the ints 0 and 1); None for anything else."""
    return bool(obj) if type(obj) in (bool, int) and obj in (0, 1) else None


def _ints(obj: object) -> list[int] | None:
    """A tuple of at most MAX_DIMS plain ints (a shape) as a list; None for anything else."""
    return list(obj) if type(obj) is tuple and len(obj) <= MAX_DIMS and all(type(d) is int for d in obj) else None


@dataclass
class _Tensor:
    """One array as the file stores it; `data` is dropped once the array is built."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    data: bytes | bytearray | None


class _Global:
    """An allow-listed global: a name, never the real object. Only REDUCE gives it meaning."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind


class _Stub:
    """The inert record of one allowed call (REDUCE) and of its BUILD state. The arguments are checked when it is
    made and the state when it is set, as the real call and numpy's __setstate__ would check them: a stream that
    pickle + numpy reject at an opcode is refused at that opcode, even if the object is dropped afterwards."""

    __slots__ = ("built", "value")
    what = "object"

    def __init__(self, args: tuple) -> None:
        self.value: object = self.call(args)
        self.built = False

    def call(self, args: tuple) -> object:
        raise NotImplementedError

    def setstate(self, state: object) -> object:
        raise _Refused("BUILD on something that is not an array or dtype")

    def build(self, state: object) -> None:
        if self.built:
            raise _Refused(f"{self.what} state set twice")
        self.value, self.built = self.setstate(state), True


class _Latin1(_Stub):
    """_codecs.encode(text, 'latin1'): how pickle protocol 2 stores bytes (older paddle files)."""

    __slots__ = ()

    def call(self, args: tuple) -> bytes:
        if not (len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1")):
            raise _Refused("_codecs.encode called with other arguments than (text, 'latin1')")
        try:
            return args[0].encode("latin-1")
        except UnicodeEncodeError:  # what pickle raises too: a character above U+00FF is no latin1 byte
            raise _Refused("latin1 bytes that hold a character above U+00FF") from None


def _bytes(obj: object) -> bytes | bytearray | None:
    """The bytes a value of the file stands for (bytes, or protocol 2's latin1 text); None if it is not bytes."""
    if type(obj) in (bytes, bytearray):
        return obj  # type: ignore[return-value]  # checked just above
    return obj.value if isinstance(obj, _Latin1) else None  # type: ignore[return-value]  # _Latin1.call's bytes


class _Dtype(_Stub):
    """numpy.dtype(typestr, False, True), then BUILD (3, byteorder, None, None, None, -1, -1, 0)."""

    __slots__ = ()
    what = "dtype"

    def call(self, args: tuple) -> np.dtype:
        typestr = args[0] if len(args) == 3 else None  # with align False and copy True, as numpy pickles it
        if not (isinstance(typestr, str) and typestr in DTYPES and _flag(args[1]) is False and _flag(args[2])):
            raise _Refused(f"dtype {_brief(typestr)} is not one paddle.save writes ({', '.join(DTYPES.values())})")
        return np.dtype(typestr)

    def setstate(self, state: object) -> np.dtype:
        dt = cast(np.dtype, self.value)
        plain = (None, None, None, -1, -1, 0)  # no names, fields or sub-array; default size, alignment, flags
        if type(state) is not tuple or state[:1] != (3,) or state[2:] != plain or state[1] not in ("<", ">", "|", "="):
            raise _Refused(f"dtype {dt.str[1:]!r} carries fields, a sub-array or flags (a structured dtype)")
        return dt.newbyteorder(state[1]) if state[1] in "<>" and dt.itemsize > 1 else dt


class _Array(_Stub):
    """numpy.core.multiarray._reconstruct(ndarray, (0,), b'b'), then BUILD ([1,] shape, dtype, fortran, bytes)."""

    __slots__ = ()
    what = "array"

    def call(self, args: tuple) -> None:
        ndarray = len(args) == 3 and isinstance(args[0], _Global) and args[0].kind == "ndarray"
        if not ndarray or _ints(args[1]) != [0] or _bytes(args[2]) != b"b":
            raise _Refused("_reconstruct called with other arguments than numpy's (ndarray, (0,), b'b')")

    def setstate(self, state: object) -> _Tensor:
        """numpy's checks of ndarray.__setstate__, made before any array exists, and bounds numpy would hit later."""
        if type(state) is tuple and len(state) == 5 and state[0] == 1:
            state = state[1:]
        if type(state) is not tuple or len(state) != 4:
            raise _Refused("array state is not (shape, dtype, fortran, bytes)")
        shape, dtype, fortran, data = state
        if not isinstance(dtype, _Dtype) or not dtype.built:
            raise _Refused("array dtype is not a plain numpy dtype")
        dt, dims, blob = cast(np.dtype, dtype.value), _ints(shape), _bytes(data)
        if dims is None or min(dims, default=0) < 0 or math.prod(d for d in dims if d) * dt.itemsize >= MAX_BYTES:
            raise _Refused(f"array shape ({_brief(shape)}) is not a tuple of sizes")  # bounded with a 0 in it too
        if blob is None or _flag(fortran) is None:
            raise _Refused("array data is not bytes, or its order flag not a bool")
        want = math.prod(dims) * dt.itemsize
        if len(blob) != want:
            raise _Refused(f"array of shape {dims} and dtype {dt.name} needs {want} bytes, has {len(blob)}")
        return _Tensor(tuple(dims), dt, bool(fortran), blob)


_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy._core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy", "ndarray"): "ndarray",
    ("numpy", "dtype"): "dtype",
    ("collections", "OrderedDict"): "ordereddict",
    ("_codecs", "encode"): "encode",
    ("__builtin__", "bytes"): "bytes",  # protocol 2 writes b"" as bytes(); pickle maps the name below protocol 3
    ("builtins", "bytes"): "bytes",
}
_MADE_BY: dict[str, type[_Stub]] = {"reconstruct": _Array, "dtype": _Dtype, "encode": _Latin1}


class _Reader:
    """The file, read once: every byte hashed, every claimed length checked against what is left first."""

    def __init__(self, f, size: int) -> None:
        self.f, self.size, self.pos = f, size, 0
        self.frame_end = 0  # where the current FRAME ends (pickle: an opcode and its argument never cross it)
        self.sha = hashlib.sha256()

    def check(self, n: int) -> None:
        if n > self.size - self.pos:
            raise _Refused(f"claims {n} bytes, only {self.size - self.pos} are left in the file")
        if self.pos < self.frame_end < self.pos + n:  # pickle's unpicklers disagree on such a file: refused
            raise _Refused("an opcode crosses the end of its frame")

    def take(self, n: int) -> bytes:
        self.check(n)
        data = self.f.read(n)
        if len(data) != n:  # the file shrank under us
            raise OSError(f"file ended at byte {self.pos + len(data)} of {self.size} while reading")
        self.pos += n
        self.sha.update(data)
        return data

    def blob(self, n: int) -> bytearray:
        """An array's bytes, read into their own (mutable) buffer: an array can then use them as its memory,
        so reading costs the file's size once, not twice."""
        self.check(n)
        buf = bytearray(n)
        if self.f.readinto(buf) != n:
            raise OSError(f"file ended before byte {self.pos + n} of {self.size} while reading")
        self.pos += n
        self.sha.update(buf)
        return buf

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "little")

    def sint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "little", signed=True)

    def text(self, n: int) -> str:
        try:
            return self.take(n).decode("utf-8", "surrogatepass")  # as pickle decodes it
        except UnicodeDecodeError:  # pickle refuses the same bytes
            raise _Refused("text that is not UTF-8") from None

    def line(self, limit: int = 256) -> str:
        start, out = self.pos, bytearray()
        while (c := self.take(1)) != b"\n":
            out += c
            if len(out) > limit:
                raise _Refused("text line too long")
        if not out.isascii() or start < self.frame_end < self.pos:
            raise _Refused("GLOBAL name that is not ASCII, or crosses the end of its frame")
        return out.decode("ascii")

    def rest(self) -> int:
        """Hash whatever follows the pickle's STOP; returns how many bytes that was."""
        extra = 0
        while chunk := self.f.read(1 << 20):
            self.sha.update(chunk)
            extra += len(chunk)
        return extra


def _global(module: object, name: object, proto: int) -> _Global:
    """An allow-listed global, found as pickle finds it: below protocol 3 (and only there) Python 2's
    `__builtin__` is `builtins` (pickle's fix_imports)."""
    kind = _GLOBALS.get((module, name)) if isinstance(module, str) and isinstance(name, str) else None
    if kind is None or (module == "__builtin__" and proto >= 3):
        raise _Refused(f"refused to load global {_brief(module, quote=False)}.{_brief(name, quote=False)}")
    return _Global(kind)


def _reduce(func: object, args: object) -> object:
    if not isinstance(func, _Global) or type(args) is not tuple:
        raise _Refused("REDUCE of something that is not an allowed global")
    if func.kind in ("ordereddict", "bytes"):
        if args:
            raise _Refused(f"{func.kind} called with arguments")
        return {} if func.kind == "ordereddict" else b""
    if func.kind not in _MADE_BY:
        raise _Refused(f"{func.kind} cannot be called")
    return _MADE_BY[func.kind](args)


# pickle's unpickler keeps the items since the last MARK apart: an opcode never takes an item from below it.
def _pop(stack: list, marks: list[int], n: int, what: str) -> list:
    """The top `n` items, all above the last MARK."""
    if len(stack) - n < (marks[-1] if marks else 0):
        raise _Refused(f"{what} on a short stack")
    items = stack[-n:]
    del stack[-n:]
    return items


def _top(stack: list, marks: list[int], what: str) -> object:
    """The top item, above the last MARK."""
    if len(stack) <= (marks[-1] if marks else 0):
        raise _Refused(f"{what} on a short stack")
    return stack[-1]


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
    dict, bytes and the inert stubs above, each exactly as pickle would (or refuses)."""
    stack: list = []
    marks: list[int] = []
    memo: dict[int, object] = {}
    proto = 0
    for _ in range(max_ops):
        op = r.take(1)
        if op == b"\x80":  # PROTO
            proto = r.uint(1)
            if not 2 <= proto <= 5:
                raise _Refused("unsupported pickle protocol")
        elif op == b"\x95":  # FRAME: after the end of the previous one; its length must fit the file
            n = r.uint(8)
            if n > r.size - r.pos or r.pos < r.frame_end:
                raise _Refused("frame longer than the file, or inside another")
            r.frame_end = r.pos + n
        elif op == b".":  # STOP
            if len(stack) != 1 or marks:
                raise _Refused("STOP with an unbalanced stack")
            return stack[0]
        elif op == b"(":
            marks.append(len(stack))
        elif op in (b"}", b"]", b")"):
            stack.append({} if op == b"}" else [] if op == b"]" else ())
        elif op == b"t":
            stack.append(tuple(_pop_mark(stack, marks)))
        elif op in (b"\x85", b"\x86", b"\x87"):  # TUPLE1..3
            stack.append(tuple(_pop(stack, marks, op[0] - 0x84, "TUPLE")))
        elif op in (b"s", b"u"):  # SETITEM, SETITEMS
            pairs = _pop(stack, marks, 2, "SETITEM") if op == b"s" else _pop_mark(stack, marks)
            _setitems(_top(stack, marks, "SETITEMS"), pairs)
        elif op in (b"a", b"e"):  # APPEND, APPENDS
            added = _pop(stack, marks, 1, "APPEND") if op == b"a" else _pop_mark(stack, marks)
            target = _top(stack, marks, "APPEND")
            if not isinstance(target, list):
                raise _Refused("APPEND to something that is not a list")
            target.extend(added)
        elif op in (b"\x8c", b"X", b"\x8d"):  # SHORT_BINUNICODE, BINUNICODE, BINUNICODE8
            stack.append(r.text(r.uint({b"\x8c": 1, b"X": 4, b"\x8d": 8}[op])))
        elif op in (b"C", b"B", b"\x8e"):  # SHORT_BINBYTES, BINBYTES, BINBYTES8
            stack.append(r.blob(r.uint({b"C": 1, b"B": 4, b"\x8e": 8}[op])))
        elif op in (b"K", b"M"):  # BININT1, BININT2
            stack.append(r.uint(1 if op == b"K" else 2))
        elif op == b"J":
            stack.append(r.sint(4))
        elif op == b"\x8a":  # LONG1
            n = r.uint(1)
            if n > 8:
                raise _Refused("integer wider than 64 bits")
            stack.append(r.sint(n))
        elif op in (b"\x88", b"\x89", b"N"):
            stack.append({b"\x88": True, b"\x89": False, b"N": None}[op])
        elif op in (b"c", b"\x93"):  # GLOBAL, STACK_GLOBAL
            module, name = (r.line(), r.line()) if op == b"c" else _pop(stack, marks, 2, "STACK_GLOBAL")
            stack.append(_global(module, name, proto))
        elif op == b"R":
            func, args = _pop(stack, marks, 2, "REDUCE")
            stack.append(_reduce(func, args))
        elif op == b"b":  # BUILD
            (state,) = _pop(stack, marks, 1, "BUILD")
            target = _top(stack, marks, "BUILD")
            if not isinstance(target, _Stub):
                raise _Refused("BUILD on something that is not an array or dtype")
            target.build(state)
        elif op in (b"\x94", b"q", b"r"):  # MEMOIZE, BINPUT, LONG_BINPUT
            idx = len(memo) if op == b"\x94" else r.uint(1 if op == b"q" else 4)
            if idx > len(memo):  # picklers number entries in order; pickle's memo table grows to twice an index
                raise _Refused(f"memo entry {idx} stored before entry {len(memo)}")
            memo[idx] = _top(stack, marks, "memo store")
        elif op in (b"h", b"j"):  # BINGET, LONG_BINGET
            idx = r.uint(1 if op == b"h" else 4)
            if idx not in memo:
                raise _Refused(f"memo {idx} read before it was stored")
            stack.append(memo[idx])
        elif op == b"0":  # POP: of the MARK itself when nothing is above it, as pickle does
            if marks and marks[-1] == len(stack):
                marks.pop()
            else:
                _pop(stack, marks, 1, "POP")
        elif op == b"1":
            _pop_mark(stack, marks)
        else:
            raise _Refused(f"opcode {op!r} is not part of paddle's checkpoint format")
    raise _Refused(f"more than {max_ops} opcodes: not a checkpoint of this size")


# ---- from stubs to checked tensor records -----------------------------------------------------------


def _tensor(value: object, seen: set[int]) -> _Tensor:
    """A state dict's value: an array whose state was checked when it was set, with bytes of its own."""
    if not isinstance(value, _Array):
        raise _Refused("value is not a numpy array")
    if not value.built:
        raise _Refused("array without data (no state)")
    t = cast(_Tensor, value.value)
    if t.data is not None and len(t.data) > 1:  # empty and 1-byte bytes are shared singletons in CPython's pickles
        if id(t.data) in seen:
            raise _Refused("array data used by more than one array")
        seen.add(id(t.data))
    return _Tensor(t.shape, t.dtype, t.fortran, t.data)  # a record of its own: the same array under two names


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


def _tensors(top: object) -> dict[str, _Tensor]:
    if not isinstance(top, dict):
        raise _Refused(f"not a state dict (found {type(top).__name__})")
    seen: set[int] = set()
    out = {}
    for key, value in top.items():
        if key == PADDLE_META_KEY:
            continue
        if not isinstance(key, str):
            raise _Refused(f"state dict key {_brief(key)} is not a name")
        try:
            out[key] = _tensor(value, seen)
        except _Refused as exc:
            raise _Refused(f"{_name(key)}: {exc}") from None
    if not out:
        raise _Refused("the state dict holds no arrays")
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
            bad_casts.append(f"{_name(name)} ({exc})")
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
                    return f"every key in the file {verb} the prefix {_brief(prefix)}: save the state dict without it"
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
            shown = ", ".join(f"{_name(n)} file {f} vs model {m}" for n, f, m in self.mismatched[:SHOW])
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
            "first_unexpected": [_name(n) for n in self.unexpected[:SHOW]],
            "first_mismatched": [[_name(n), f, m] for n, f, m in self.mismatched[:SHOW]],
        }


def _names(names: list[str], clip: bool = True) -> str:
    shown = [_name(n) if clip else n for n in names[:SHOW]]
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
