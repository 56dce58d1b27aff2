"""Pickle streams written opcode by opcode, for checkpoints that no honest pickler would produce.

`pickle.dumps` cannot make a file whose array has no data, whose dtype hides an object field, or whose
length field claims 2^63 bytes; these helpers can. Each returns the bytes of a fragment; `state_dict`
wraps fragments into a whole file the way paddle.save lays out a state dict.
"""

from __future__ import annotations

import struct

PROTO4 = b"\x80\x04"
STOP = b"."
MARK = b"("
EMPTY_DICT = b"}"
SETITEMS = b"u"
TUPLE = b"t"
TUPLE1, TUPLE3 = b"\x85", b"\x87"
REDUCE, BUILD = b"R", b"b"
MEMOIZE = b"\x94"
NEWTRUE, NEWFALSE, NONE = b"\x88", b"\x89", b"N"


def text(s: str) -> bytes:
    data = s.encode()
    return b"\x8c" + bytes([len(data)]) + data if len(data) < 256 else b"X" + struct.pack("<I", len(data)) + data


def integer(n: int) -> bytes:
    if 0 <= n < 256:
        return b"K" + bytes([n])
    return b"J" + struct.pack("<i", n)


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
