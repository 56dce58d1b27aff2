"""Pickle streams written opcode by opcode, for checkpoints that no honest pickler would produce.

`pickle.dumps` cannot make a file whose array has no data, whose dtype hides an object field, or whose
length field claims 2^63 bytes; these helpers can. Each returns the bytes of a fragment; `state_dict`
wraps fragments into a whole file the way paddle.save lays out a state dict.

`oracle` is the other side of the differential tests: what pickle + numpy themselves build from a stream
(limited to the reader's allow-listed globals, so it never runs anything else), in the form `state` gives
the reader's arrays.
"""

from __future__ import annotations

import io
import pickle
import struct
import warnings
from pathlib import Path

import numpy as np

from harness.model.checkpoint import PADDLE_META_KEY, read
from harness.model.unpickler import DTYPES, GLOBALS

PROTO2, PROTO4 = b"\x80\x02", b"\x80\x04"
STOP = b"."
MARK = b"("
EMPTY_DICT, EMPTY_LIST, EMPTY_TUPLE = b"}", b"]", b")"
SETITEM, SETITEMS = b"s", b"u"
APPEND, APPENDS = b"a", b"e"
TUPLE = b"t"
TUPLE1, TUPLE2, TUPLE3 = b"\x85", b"\x86", b"\x87"
REDUCE, BUILD = b"R", b"b"
MEMOIZE = b"\x94"
POP, POP_MARK = b"0", b"1"
STACK_GLOBAL = b"\x93"
NEWTRUE, NEWFALSE, NONE = b"\x88", b"\x89", b"N"


def text(s: str) -> bytes:
    data = s.encode()
    return b"\x8c" + bytes([len(data)]) + data if len(data) < 256 else b"X" + struct.pack("<I", len(data)) + data


def integer(n: int) -> bytes:
    if 0 <= n < 256:
        return b"K" + bytes([n])
    if -(2**31) <= n < 2**31:
        return b"J" + struct.pack("<i", n)
    data = n.to_bytes((n + (n < 0)).bit_length() // 8 + 1, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data  # LONG1


def blob(data: bytes, claim: int | None = None) -> bytes:
    """BINBYTES8 with `data`; `claim` writes another length than the data's (a lie about the size)."""
    return b"\x8e" + struct.pack("<Q", len(data) if claim is None else claim) + data


def glob(module: str, name: str) -> bytes:
    return text(module) + text(name) + b"\x93"


def get(i: int) -> bytes:
    return b"j" + struct.pack("<I", i)


def put(i: int) -> bytes:
    return b"r" + struct.pack("<I", i)


def tup(*items: bytes) -> bytes:
    return MARK + b"".join(items) + TUPLE


def dtype(typestr: str = "f4", order: str = "<", state: bytes | None = None) -> bytes:
    """numpy.dtype(typestr, False, True) with BUILD (3, order, None, None, None, -1, -1, 0), or another state."""
    st = (
        state
        if state is not None
        else tup(integer(3), text(order), NONE, NONE, NONE, integer(-1), integer(-1), integer(0))
    )
    return glob("numpy", "dtype") + tup(text(typestr), NEWFALSE, NEWTRUE) + REDUCE + st + BUILD


def reconstruct() -> bytes:
    """_reconstruct(ndarray, (0,), b'b'): an empty array object, before its BUILD."""
    return (
        glob("numpy.core.multiarray", "_reconstruct")
        + tup(glob("numpy", "ndarray"), integer(0) + TUPLE1, blob(b"b"))
        + REDUCE
    )


def array_state(shape: tuple[int, ...], dt: bytes, data: bytes, fortran: bool = False) -> bytes:
    return tup(integer(1), tup(*(integer(d) for d in shape)), dt, NEWTRUE if fortran else NEWFALSE, data)


def array(shape: tuple[int, ...], data: bytes, typestr: str = "f4", order: str = "<") -> bytes:
    """A complete ndarray as numpy pickles it (protocol 4)."""
    return reconstruct() + array_state(shape, dtype(typestr, order), blob(data)) + BUILD


def state_dict(*items: tuple[str, bytes], tail: bytes = b"") -> bytes:
    """{name: value, ...} as a whole pickle file; `tail` goes after STOP."""
    body = b"".join(text(k) + v for k, v in items)
    return PROTO4 + EMPTY_DICT + MARK + body + SETITEMS + STOP + tail


def latin1(chars: str) -> bytes:
    """_codecs.encode(chars, 'latin1'): how protocol 2 stores a bytes object."""
    return glob("_codecs", "encode") + text(chars) + text("latin1") + TUPLE2 + REDUCE


def nested(depth: int, memo: int = 0) -> bytes:
    """A tuple (t, t) of (t, t) ... `depth` deep, over memo entries memo..memo+depth: 2^depth leaves (and
    characters of repr) in 16 bytes per level. Building it is linear; repr, hash or == are not."""
    out = EMPTY_TUPLE + put(memo)
    for i in range(depth):
        out += get(memo + i) + get(memo + i) + TUPLE2 + put(memo + i + 1)
    return out


# ---- the oracle: pickle + numpy themselves ---------------------------------------------------------


class _AllowListed(pickle.Unpickler):
    """pickle's own (C) unpickler, finding only the globals the reader allows (with pickle's own protocol-2
    name mapping): nothing else can run, and whatever the reader accepts, this can build."""

    def find_class(self, module: str, name: str):
        if (module, name) not in GLOBALS:
            raise pickle.UnpicklingError(f"not allow-listed: {module}.{name}")
        return super().find_class(module, name)


Arrays = list[tuple[str, tuple[str, tuple[int, ...], bytes]]]


def _canonical(name: object, arr: object) -> tuple[str, tuple[str, tuple[int, ...], bytes]] | None:
    if type(name) is not str or type(arr) is not np.ndarray or arr.dtype.name not in DTYPES.values():
        return None
    if not arr.size:  # numpy builds empty arrays whose shape it then cannot copy (0 x 2^47 x 2^47)
        return name, (arr.dtype.name, arr.shape, b"")
    native = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("="), order="C")
    return name, (arr.dtype.name, arr.shape, native.tobytes())


def oracle(data: bytes) -> Arrays | None:
    """What pickle + numpy build from `data`: its arrays in order, as (name, (dtype name, shape, native C-order
    bytes)), without paddle's metadata key; None when pickle fails, or builds anything but a non-empty dict
    of such arrays under str names (then the reader must refuse the file)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            top = _AllowListed(io.BytesIO(data)).load()
    except Exception:  # whatever pickle or numpy raise: pickle builds nothing from these bytes
        return None
    if not isinstance(top, dict):
        return None
    out = [_canonical(k, v) for k, v in top.items() if not (type(k) is str and k == PADDLE_META_KEY)]
    return None if not out or None in out else out


def state(path: Path) -> Arrays:
    """The reader's arrays of the file at `path`, in the oracle's form (raises what `read` raises)."""
    return [(k, (a.dtype.name, a.shape, a.tobytes())) for k, a in read(path).arrays()]
