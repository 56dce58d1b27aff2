"""The pickle opcode interpreter behind harness.model.checkpoint: paddle's checkpoint format, and nothing else.

It runs the small subset of pickle opcodes that paddle.save writes (docs/checkpoint-format.md) and builds only
str, int, bool, None, tuple, list, dict, bytes and inert records of the few allowed calls (numpy's array and
dtype reconstructors, OrderedDict, protocol 2's latin1 bytes), each exactly as pickle + numpy would build it or
refused (`Refused`): tests/test_checkpoint_fuzz.py checks it against pickle itself, differentially. Nothing it
reads is ever called or imported. harness.model.checkpoint turns what it builds into checked arrays.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np

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


class Refused(Exception):
    """Raised inside the interpreter; turned into a FormatError naming the file and the offset."""


def brief(obj: object, quote: bool = True, limit: int = 40) -> str:
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


def name_of(name: str) -> str:
    """A tensor's name (from the file) for a message: cut, with its length, when long."""
    return brief(name, quote=False, limit=80)


def _flag(obj: object) -> bool | None:
    """A bool as picklers write one (NEWTRUE/NEWFALSE, or the ints 0 and 1); None for anything else."""
    return bool(obj) if type(obj) in (bool, int) and obj in (0, 1) else None


def _ints(obj: object) -> list[int] | None:
    """A tuple of at most MAX_DIMS plain ints (a shape) as a list; None for anything else."""
    return list(obj) if type(obj) is tuple and len(obj) <= MAX_DIMS and all(type(d) is int for d in obj) else None


@dataclass
class Tensor:
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
        raise Refused("BUILD on something that is not an array or dtype")

    def build(self, state: object) -> None:
        if self.built:
            raise Refused(f"{self.what} state set twice")
        self.value, self.built = self.setstate(state), True


class _Latin1(_Stub):
    """_codecs.encode(text, 'latin1'): how pickle protocol 2 stores bytes (older paddle files)."""

    __slots__ = ()

    def call(self, args: tuple) -> bytes:
        if not (len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1")):
            raise Refused("_codecs.encode called with other arguments than (text, 'latin1')")
        try:
            return args[0].encode("latin-1")
        except UnicodeEncodeError:  # what pickle raises too: a character above U+00FF is no latin1 byte
            raise Refused("latin1 bytes that hold a character above U+00FF") from None


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
            raise Refused(f"dtype {brief(typestr)} is not one paddle.save writes ({', '.join(DTYPES.values())})")
        return np.dtype(typestr)

    def setstate(self, state: object) -> np.dtype:
        dt = cast(np.dtype, self.value)
        plain = (None, None, None, -1, -1, 0)  # no names, fields or sub-array; default size, alignment, flags
        if type(state) is not tuple or state[:1] != (3,) or state[2:] != plain or state[1] not in ("<", ">", "|", "="):
            raise Refused(f"dtype {dt.str[1:]!r} carries fields, a sub-array or flags (a structured dtype)")
        return dt.newbyteorder(state[1]) if state[1] in "<>" and dt.itemsize > 1 else dt


class Array(_Stub):
    """numpy.core.multiarray._reconstruct(ndarray, (0,), b'b'), then BUILD ([1,] shape, dtype, fortran, bytes)."""

    __slots__ = ()
    what = "array"

    def call(self, args: tuple) -> None:
        ndarray = len(args) == 3 and isinstance(args[0], _Global) and args[0].kind == "ndarray"
        if not ndarray or _ints(args[1]) != [0] or _bytes(args[2]) != b"b":
            raise Refused("_reconstruct called with other arguments than numpy's (ndarray, (0,), b'b')")

    def setstate(self, state: object) -> Tensor:
        """numpy's checks of ndarray.__setstate__, made before any array exists, and bounds numpy would hit later."""
        if type(state) is tuple and len(state) == 5 and state[0] == 1:
            state = state[1:]
        if type(state) is not tuple or len(state) != 4:
            raise Refused("array state is not (shape, dtype, fortran, bytes)")
        shape, dtype, fortran, data = state
        if not isinstance(dtype, _Dtype) or not dtype.built:
            raise Refused("array dtype is not a plain numpy dtype")
        dt, dims, blob = cast(np.dtype, dtype.value), _ints(shape), _bytes(data)
        if dims is None or min(dims, default=0) < 0 or math.prod(d for d in dims if d) * dt.itemsize >= MAX_BYTES:
            raise Refused(f"array shape ({brief(shape)}) is not a tuple of sizes")  # bounded with a 0 in it too
        if blob is None or _flag(fortran) is None:
            raise Refused("array data is not bytes, or its order flag not a bool")
        want = math.prod(dims) * dt.itemsize
        if len(blob) != want:
            raise Refused(f"array of shape {dims} and dtype {dt.name} needs {want} bytes, has {len(blob)}")
        return Tensor(tuple(dims), dt, bool(fortran), blob)


GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy._core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy", "ndarray"): "ndarray",
    ("numpy", "dtype"): "dtype",
    ("collections", "OrderedDict"): "ordereddict",
    ("_codecs", "encode"): "encode",
    ("__builtin__", "bytes"): "bytes",  # protocol 2 writes b"" as bytes(); pickle maps the name below protocol 3
    ("builtins", "bytes"): "bytes",
}
_MADE_BY: dict[str, type[_Stub]] = {"reconstruct": Array, "dtype": _Dtype, "encode": _Latin1}


class Reader:
    """The file, read once: every byte hashed, every claimed length checked against what is left first."""

    def __init__(self, f, size: int) -> None:
        self.f, self.size, self.pos = f, size, 0
        self.frame_end = 0  # where the current FRAME ends (pickle: an opcode and its argument never cross it)
        self.sha = hashlib.sha256()

    def check(self, n: int) -> None:
        if n > self.size - self.pos:
            raise Refused(f"claims {n} bytes, only {self.size - self.pos} are left in the file")
        if self.pos < self.frame_end < self.pos + n:  # pickle's unpicklers disagree on such a file: refused
            raise Refused("an opcode crosses the end of its frame")

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
            raise Refused("text that is not UTF-8") from None

    def line(self, limit: int = 256) -> str:
        start, out = self.pos, bytearray()
        while (c := self.take(1)) != b"\n":
            out += c
            if len(out) > limit:
                raise Refused("text line too long")
        if not out.isascii() or start < self.frame_end < self.pos:
            raise Refused("GLOBAL name that is not ASCII, or crosses the end of its frame")
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
    kind = GLOBALS.get((module, name)) if isinstance(module, str) and isinstance(name, str) else None
    if kind is None or (module == "__builtin__" and proto >= 3):
        raise Refused(f"refused to load global {brief(module, quote=False)}.{brief(name, quote=False)}")
    return _Global(kind)


def _reduce(func: object, args: object) -> object:
    if not isinstance(func, _Global) or type(args) is not tuple:
        raise Refused("REDUCE of something that is not an allowed global")
    if func.kind in ("ordereddict", "bytes"):
        if args:
            raise Refused(f"{func.kind} called with arguments")
        return {} if func.kind == "ordereddict" else b""
    if func.kind not in _MADE_BY:
        raise Refused(f"{func.kind} cannot be called")
    return _MADE_BY[func.kind](args)


# pickle's unpickler keeps the items since the last MARK apart: an opcode never takes an item from below it.
def _pop(stack: list, marks: list[int], n: int, what: str) -> list:
    """The top `n` items, all above the last MARK."""
    if len(stack) - n < (marks[-1] if marks else 0):
        raise Refused(f"{what} on a short stack")
    items = stack[-n:]
    del stack[-n:]
    return items


def _top(stack: list, marks: list[int], what: str) -> object:
    """The top item, above the last MARK."""
    if len(stack) <= (marks[-1] if marks else 0):
        raise Refused(f"{what} on a short stack")
    return stack[-1]


def _pop_mark(stack: list, marks: list[int]) -> list:
    if not marks:
        raise Refused("no MARK on the stack")
    at = marks.pop()
    items = stack[at:]
    del stack[at:]
    return items


def _set_into(m: _Machine, items: list) -> None:
    """SETITEM, SETITEMS: `items` (already popped) into the dict below them."""
    target = m.top("SETITEMS")
    if not isinstance(target, dict) or len(items) % 2:
        raise Refused("SETITEMS on something that is not a dict")
    for key, value in zip(items[::2], items[1::2], strict=True):
        if type(key) not in (str, int):
            raise Refused(f"dict key of type {type(key).__name__}")
        target[key] = value


def _append_to(m: _Machine, items: list) -> None:
    """APPEND, APPENDS: `items` (already popped) onto the list below them."""
    target = m.top("APPEND")
    if not isinstance(target, list):
        raise Refused("APPEND to something that is not a list")
    target.extend(items)


class _Stop(Exception):
    """Not an error: how STOP hands its object out of the loop (pickle's own _Stop)."""

    def __init__(self, value: object) -> None:
        self.value = value


class _Machine:
    """The interpreter's state: the file, the stack, the MARKs, the memo and the protocol PROTO declared."""

    __slots__ = ("marks", "memo", "proto", "r", "stack")

    def __init__(self, r: Reader) -> None:
        self.r = r
        self.stack: list = []
        self.marks: list[int] = []
        self.memo: dict[int, object] = {}
        self.proto = 0

    def pop(self, n: int, what: str) -> list:
        return _pop(self.stack, self.marks, n, what)

    def top(self, what: str) -> object:
        return _top(self.stack, self.marks, what)

    def pop_mark(self) -> list:
        return _pop_mark(self.stack, self.marks)

    def push(self, obj: object) -> None:
        self.stack.append(obj)


def _proto(m: _Machine) -> None:
    m.proto = m.r.uint(1)
    if not 2 <= m.proto <= 5:
        raise Refused("unsupported pickle protocol")


def _frame(m: _Machine) -> None:
    """FRAME: after the end of the previous one; its length must fit the file."""
    r = m.r
    n = r.uint(8)
    if n > r.size - r.pos or r.pos < r.frame_end:
        raise Refused("frame longer than the file, or inside another")
    r.frame_end = r.pos + n


def _stop(m: _Machine) -> None:
    if len(m.stack) != 1 or m.marks:
        raise Refused("STOP with an unbalanced stack")
    raise _Stop(m.stack[0])


def _long1(m: _Machine) -> None:
    n = m.r.uint(1)
    if n > 8:
        raise Refused("integer wider than 64 bits")
    m.push(m.r.sint(n))


def _stack_global(m: _Machine) -> None:
    module, name = m.pop(2, "STACK_GLOBAL")
    m.push(_global(module, name, m.proto))


def _build(m: _Machine) -> None:
    (state,) = m.pop(1, "BUILD")
    target = m.top("BUILD")
    if not isinstance(target, _Stub):
        raise Refused("BUILD on something that is not an array or dtype")
    target.build(state)


def _put(m: _Machine, idx: int) -> None:
    """MEMOIZE, BINPUT, LONG_BINPUT: the top item as memo entry `idx`."""
    if idx > len(m.memo):  # picklers number entries in order; pickle's memo table grows to twice an index
        raise Refused(f"memo entry {idx} stored before entry {len(m.memo)}")
    m.memo[idx] = m.top("memo store")


def _get(m: _Machine, idx: int) -> None:
    """BINGET, LONG_BINGET."""
    if idx not in m.memo:
        raise Refused(f"memo {idx} read before it was stored")
    m.push(m.memo[idx])


def _pop_one(m: _Machine) -> None:
    """POP: of the MARK itself when nothing is above it, as pickle does."""
    if m.marks and m.marks[-1] == len(m.stack):
        m.marks.pop()
    else:
        m.pop(1, "POP")


# One handler per allowed opcode, as pickle.py's `dispatch`: the table is the allow-list. Arguments are read in
# the order written (GLOBAL's two lines; a length, then its bytes), items popped before the target is looked at.
DISPATCH: dict[bytes, Callable[[_Machine], object]] = {
    b"\x80": _proto,  # PROTO
    b"\x95": _frame,  # FRAME
    b".": _stop,  # STOP
    b"(": lambda m: m.marks.append(len(m.stack)),  # MARK
    b"}": lambda m: m.push({}),  # EMPTY_DICT
    b"]": lambda m: m.push([]),  # EMPTY_LIST
    b")": lambda m: m.push(()),  # EMPTY_TUPLE
    b"t": lambda m: m.push(tuple(m.pop_mark())),  # TUPLE
    b"\x85": lambda m: m.push(tuple(m.pop(1, "TUPLE"))),  # TUPLE1
    b"\x86": lambda m: m.push(tuple(m.pop(2, "TUPLE"))),  # TUPLE2
    b"\x87": lambda m: m.push(tuple(m.pop(3, "TUPLE"))),  # TUPLE3
    b"s": lambda m: _set_into(m, m.pop(2, "SETITEM")),  # SETITEM
    b"u": lambda m: _set_into(m, m.pop_mark()),  # SETITEMS
    b"a": lambda m: _append_to(m, m.pop(1, "APPEND")),  # APPEND
    b"e": lambda m: _append_to(m, m.pop_mark()),  # APPENDS
    b"\x8c": lambda m: m.push(m.r.text(m.r.uint(1))),  # SHORT_BINUNICODE
    b"X": lambda m: m.push(m.r.text(m.r.uint(4))),  # BINUNICODE
    b"\x8d": lambda m: m.push(m.r.text(m.r.uint(8))),  # BINUNICODE8
    b"C": lambda m: m.push(m.r.blob(m.r.uint(1))),  # SHORT_BINBYTES
    b"B": lambda m: m.push(m.r.blob(m.r.uint(4))),  # BINBYTES
    b"\x8e": lambda m: m.push(m.r.blob(m.r.uint(8))),  # BINBYTES8
    b"K": lambda m: m.push(m.r.uint(1)),  # BININT1
    b"M": lambda m: m.push(m.r.uint(2)),  # BININT2
    b"J": lambda m: m.push(m.r.sint(4)),  # BININT
    b"\x8a": _long1,  # LONG1
    b"\x88": lambda m: m.push(True),  # NEWTRUE
    b"\x89": lambda m: m.push(False),  # NEWFALSE
    b"N": lambda m: m.push(None),  # NONE
    b"c": lambda m: m.push(_global(m.r.line(), m.r.line(), m.proto)),  # GLOBAL
    b"\x93": _stack_global,  # STACK_GLOBAL
    b"R": lambda m: m.push(_reduce(*m.pop(2, "REDUCE"))),  # REDUCE
    b"b": _build,  # BUILD
    b"\x94": lambda m: _put(m, len(m.memo)),  # MEMOIZE
    b"q": lambda m: _put(m, m.r.uint(1)),  # BINPUT
    b"r": lambda m: _put(m, m.r.uint(4)),  # LONG_BINPUT
    b"h": lambda m: _get(m, m.r.uint(1)),  # BINGET
    b"j": lambda m: _get(m, m.r.uint(4)),  # LONG_BINGET
    b"0": _pop_one,  # POP
    b"1": lambda m: m.pop_mark(),  # POP_MARK
}


def interpret(r: Reader, max_ops: int) -> object:
    """Run the opcode stream; returns the object STOP leaves. Builds only str, int, bool, None, tuple, list,
    dict, bytes and the inert stubs above, each exactly as pickle would (or refuses): an opcode not in
    DISPATCH is refused."""
    m = _Machine(r)
    try:
        for _ in range(max_ops):
            op = r.take(1)
            if (handler := DISPATCH.get(op)) is None:
                raise Refused(f"opcode {op!r} is not part of paddle's checkpoint format")
            handler(m)
    except _Stop as stop:
        return stop.value
    raise Refused(f"more than {max_ops} opcodes: not a checkpoint of this size")
