"""Differential fuzzing of the checkpoint reader against pickle + numpy themselves (`pickles.oracle`).

The reader interprets pickle's opcodes itself (harness/model/checkpoint.py). Its contract, tested here as a class: any
bytes give exactly the arrays pickle + numpy build from them (for the subset it allows) or a FormatError: never
another exception, never other arrays. Three generators, each derandomized (a fixed seed) with a budget of
examples that keeps it to a few seconds:

- `pickle.dumps` of state dicts of numpy arrays: every dtype paddle.save writes, both byte orders, 0-d, empty,
  Fortran-order and strided arrays, dict or OrderedDict, with or without paddle's metadata key, protocols 2-5
  (numpy's protocol-5 form of a contiguous array, `_frombuffer`, is refused by name: paddle.save never writes it);
- hand-assembled streams (`Emitter`) reaching what pickle.dumps of numpy arrays never writes: APPEND/APPENDS,
  SETITEM/SETITEMS, TUPLE1-3, EMPTY_TUPLE, POP and POP_MARK, BINPUT/LONG_BINPUT/MEMOIZE with BINGET/LONG_BINGET,
  every integer, text and bytes opcode, GLOBAL and STACK_GLOBAL, FRAME, lists and dicts nested in the metadata,
  each value in a random valid encoding, with pushes and MARKs that are popped again in between;
- mutations of both: opcodes dropped, repeated, swapped or given another argument (re-encoded), then bit flips,
  truncations, insertions, deletions, copies, and splices of two valid streams. The reader may refuse these;
  whatever it accepts, pickle must build exactly the same arrays from.

The reader may refuse more than pickle (paddle.save writes a small subset, docs/checkpoint-format.md), so a
generated stream is checked to read the same only where it stays inside that subset.
"""

from __future__ import annotations

import math
import pickle
import pickletools
import random
import struct
from collections import OrderedDict

import numpy as np
import pickles as P
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.model.checkpoint import PADDLE_META_KEY, FormatError, read

pytestmark = pytest.mark.numerics  # what pickle + numpy build differs by numpy version: run on every stack

# The emitter's random choices make large examples: hypothesis's size health checks do not apply.
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.large_base_example, HealthCheck.too_slow],
)
RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy.core.multiarray._reconstruct (numpy._core in numpy 2)

CHARS = st.one_of(st.characters(exclude_categories=()), st.sampled_from("a\x00\xff\u0100\ud800\udfff\U0001f600"))
NAMES = st.text(CHARS, max_size=12)


@st.composite
def arrays(draw) -> np.ndarray:
    """An array of a dtype paddle.save writes, in either byte order, 0-d to 4-d, C, Fortran or strided."""
    code = draw(st.sampled_from(["f4", "f2", "f8", "u2", "i8", "i4", "u1", "b1"]))
    order = "|" if code in ("u1", "b1") else draw(st.sampled_from("<>"))
    dt = np.dtype(order + code)
    shape = tuple(draw(st.lists(st.integers(0, 3), max_size=4)))
    layout = draw(st.sampled_from(["C", "F", "strided"])) if shape else "C"
    full = (*shape[:-1], shape[-1] * 2) if layout == "strided" else shape
    raw = draw(st.binary(min_size=math.prod(full) * dt.itemsize, max_size=math.prod(full) * dt.itemsize))
    if code == "b1":
        raw = bytes(b & 1 for b in raw)
    arr = np.frombuffer(raw, dt).reshape(full).copy()
    if layout == "F":
        arr = np.asfortranarray(arr)
    return arr[..., ::2] if layout == "strided" else arr


@st.composite
def state_dicts(draw) -> dict:
    names = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
    state = {name: draw(arrays()) for name in names}
    if draw(st.booleans()):  # paddle's structured name -> parameter name table
        state[PADDLE_META_KEY] = {name: f"param_{i}.w_0" for i, name in enumerate(names)}
    return OrderedDict(state) if draw(st.booleans()) else state


def _file(tmp_path, data: bytes):
    path = tmp_path / "fuzz.pdparams"
    path.write_bytes(data)
    return path


def _read_or_refuse(tmp_path, data: bytes) -> P.Arrays | None:
    """The reader's arrays, or None for a FormatError; any other exception fails the test."""
    try:
        return P.state(_file(tmp_path, data))
    except FormatError:
        return None


# ---- pickle.dumps ------------------------------------------------------------------------------------


@settings(FUZZ, max_examples=150)
@given(state=state_dicts(), protocol=st.integers(2, 5))
def test_what_pickle_dumps_writes_reads_as_pickle_loads_it(tmp_path, state, protocol):
    data = pickle.dumps(state, protocol=protocol)
    arrays = [v for v in state.values() if isinstance(v, np.ndarray)]
    if protocol == 5 and any(a.flags.c_contiguous or a.flags.f_contiguous for a in arrays):
        # numpy's protocol-5 form (_frombuffer over a bytearray): never written by paddle.save, refused by name
        with pytest.raises(FormatError, match=r"refused to load global numpy\.(_)?core\.numeric\._frombuffer"):
            read(_file(tmp_path, data))
        return
    expected = P.oracle(data)
    assert expected is not None
    assert P.state(_file(tmp_path, data)) == expected


# ---- hand-assembled streams --------------------------------------------------------------------------


class Emitter:
    """Writes Python values (and numpy arrays) as a pickle opcode stream, choosing at random among the encodings
    pickle's unpickler accepts: each value can come out as different opcodes, be memoised under the next memo
    index and fetched again, and be surrounded by pushes and MARKs that are popped again."""

    def __init__(self, rnd: random.Random, proto: int) -> None:
        self.rnd, self.proto = rnd, proto
        self.out = bytearray()
        self.memo = 0
        self.known: dict[object, int] = {}  # immutable values (texts, globals, dtypes) -> their memo index
        self.starts: list[int] = []  # where values begin: opcode boundaries, where a frame may end

    def coin(self, p: float = 0.5) -> bool:
        return self.rnd.random() < p

    def put(self, key: object = None) -> None:
        """Maybe memoise the top of the stack (MEMOIZE, BINPUT or LONG_BINPUT) under the next index."""
        if self.coin(0.4):
            return
        how = self.rnd.choice(["memoize", "binput", "long"] if self.memo < 256 else ["memoize", "long"])
        self.out += {
            "memoize": b"\x94",
            "binput": b"q" + bytes([self.memo & 0xFF]),
            "long": b"r" + struct.pack("<I", self.memo),
        }[how]
        if key is not None:
            self.known[key] = self.memo
        self.memo += 1

    def get(self, key: object) -> bool:
        """Fetch a memoised value instead of writing it again (BINGET or LONG_BINGET), sometimes."""
        if key not in self.known or self.coin(0.3):
            return False
        i = self.known[key]
        self.out += b"h" + bytes([i]) if i < 256 and self.coin() else b"j" + struct.pack("<I", i)
        return True

    def noise(self) -> None:
        """Something pushed and popped again, or a MARK and what follows it dropped: no effect on the value."""
        pick = self.rnd.randrange(6)
        if pick == 0:
            self.value(self.rnd.choice([None, True, 7, "x"]))
            self.out += b"0"  # POP of an item
        elif pick == 1:
            self.out += b"(0"  # POP of a MARK (nothing above it)
        elif pick == 2:
            self.out += b"("
            self.value(self.rnd.choice([(), 300, "y", b"z"]))
            self.out += b"1"  # POP_MARK

    def integer(self, n: int) -> None:
        options = []
        if 0 <= n < 256:
            options.append(b"K" + bytes([n]))
        if 0 <= n < 65536:
            options.append(b"M" + struct.pack("<H", n))
        if -(2**31) <= n < 2**31:
            options.append(b"J" + struct.pack("<i", n))
        width = (n + (n < 0)).bit_length() // 8 + 1  # two's complement: -2^63 fits in 8 bytes
        width += width < 8 and self.coin()  # LONG1, sometimes with one sign byte more
        options.append(b"\x8a" + bytes([width]) + n.to_bytes(width, "little", signed=True))
        self.out += self.rnd.choice(options)

    def text(self, s: str) -> None:
        if self.get(("s", s)):
            return
        data = s.encode("utf-8", "surrogatepass")
        options = [b"X" + struct.pack("<I", len(data)), b"\x8d" + struct.pack("<Q", len(data))]
        if len(data) < 256:
            options.append(b"\x8c" + bytes([len(data)]))
        self.out += self.rnd.choice(options) + data
        self.put(("s", s))

    def blob(self, data: bytes) -> None:
        """Bytes: BINBYTES*, protocol 2's _codecs.encode(text, 'latin1'), or bytes() for b''."""
        pick = self.rnd.randrange(5)
        if pick == 0:
            self.call("_codecs", "encode", (data.decode("latin-1"), "latin1"))
        elif pick == 1 and not data:
            self.call("__builtin__" if self.proto < 3 and self.coin() else "builtins", "bytes", ())
        elif len(data) < 256 and self.coin():
            self.out += b"C" + bytes([len(data)]) + data
        else:
            self.out += self.rnd.choice([b"B" + struct.pack("<I", len(data)), b"\x8e" + struct.pack("<Q", len(data))])
            self.out += data
        self.put()  # never fetched again: an array's bytes are its own

    def glob(self, module: str, name: str) -> None:
        if self.get(("g", module, name)):
            return
        if self.coin():
            self.out += b"c" + module.encode() + b"\n" + name.encode() + b"\n"
        else:
            self.text(module)
            self.text(name)
            self.out += b"\x93"
        self.put(("g", module, name))

    def call(self, module: str, name: str, args: tuple) -> None:
        self.glob(module, name)
        self.value(args)
        self.out += b"R"

    def sequence(self, items: list, end: bytes) -> None:
        """MARK, the items, `end` (TUPLE, APPENDS, SETITEMS)."""
        self.out += b"("
        for item in items:
            self.value(item)
        self.out += end

    def value(self, v: object) -> None:  # one branch per type
        self.starts.append(len(self.out))
        if self.coin(0.1):
            self.noise()
        if v is None or v is True or v is False:
            self.out += {None: b"N", True: b"\x88", False: b"\x89"}[v]
        elif isinstance(v, int):
            self.integer(v)
        elif isinstance(v, str):
            self.text(v)
        elif isinstance(v, bytes):
            self.blob(v)
        elif isinstance(v, np.dtype):
            self.dtype(v)
        elif isinstance(v, np.ndarray):
            self.array(v)
        elif isinstance(v, tuple):
            if 1 <= len(v) <= 3 and self.coin():
                for item in v:
                    self.value(item)
                self.out += bytes([0x84 + len(v)])
            elif not v and self.coin():
                self.out += b")"
            else:
                self.sequence(list(v), b"t")
            self.put()
        elif isinstance(v, list):
            self.out += b"]"
            self.put()
            self.items(v, b"a", b"e", 1)
        elif isinstance(v, dict):
            if isinstance(v, OrderedDict) or self.coin(0.2):
                self.call("collections", "OrderedDict", ())
            else:
                self.out += b"}"
            self.put()
            self.items([x for kv in v.items() for x in kv], b"s", b"u", 2)
        else:
            raise TypeError(type(v))

    def items(self, flat: list, one: bytes, many: bytes, step: int) -> None:
        """Add items to the list or dict on the stack: one at a time (APPEND, SETITEM) or in MARKed runs (APPENDS,
        SETITEMS; an empty run too)."""
        i = 0
        while i < len(flat) or (not flat and self.coin(0.2)):
            if flat and self.coin():
                for item in flat[i : i + step]:
                    self.value(item)
                self.out += one
                i += step
            else:
                n = step * self.rnd.randrange(0, 3)  # 0: an empty run
                self.sequence(flat[i : i + n], many)
                i += n
                if not flat:
                    return

    def dtype(self, dt: np.dtype) -> None:
        """numpy.dtype(typestr, False, True) and its BUILD state, as numpy pickles it; shared once memoised."""
        if self.get(("d", dt.str)):
            return
        self.call("numpy", "dtype", (dt.str[1:], False, True))
        self.put(("d", dt.str))
        order = dt.str[0] if dt.itemsize > 1 else "|"
        if order == "<" and self.coin(0.2):
            order = "="  # native on these machines
        self.value((3, order, None, None, None, -1, -1, 0))
        self.out += b"b"

    def array(self, arr: np.ndarray) -> None:
        """_reconstruct(ndarray, (0,), b'b') and BUILD ([1,] shape, dtype, fortran, bytes), as numpy pickles it."""
        self.glob(RECONSTRUCT.__module__, RECONSTRUCT.__name__)
        self.out += b"("
        self.glob("numpy", "ndarray")
        self.value((0,))
        self.blob(b"b")
        self.out += b"t"
        self.put()
        self.out += b"R"
        self.put()
        fortran = arr.ndim > 1 and self.coin()
        flag = self.rnd.choice([fortran, int(fortran)])
        state = (arr.shape, arr.dtype, flag, arr.tobytes(order="F" if fortran else "C"))
        self.value((1, *state) if self.coin(0.8) else state)
        self.out += b"b"

    def stream(self, top: dict) -> bytes:
        """PROTO, the value, STOP; from protocol 4 in FRAMEs and unframed runs split where opcodes begin (as
        pickle.dumps writes large bytes outside its frames)."""
        self.value(top)
        body = bytes(self.out) + b"."
        ends = sorted({*self.rnd.sample(self.starts, min(3, len(self.starts))), len(body)} - {0})
        out, at = bytearray(b"\x80" + bytes([self.proto])), 0
        for end in ends:
            if self.proto >= 4 and self.coin(0.7):
                out += b"\x95" + struct.pack("<Q", end - at)
            out += body[at:end]
            at = end
        return bytes(out)


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), NAMES, st.binary(max_size=8))
META = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.lists(inner, max_size=4).map(tuple), st.dictionaries(NAMES, inner, max_size=3)
    ),
    max_leaves=12,
)


@st.composite
def assembled(draw) -> tuple[bytes, P.Arrays]:
    """A hand-assembled stream and the arrays it holds (the oracle must agree: the stream is valid)."""
    names = draw(st.lists(NAMES.filter(lambda s: s != PADDLE_META_KEY), min_size=1, max_size=3, unique=True))
    top: dict = {name: draw(arrays()) for name in names}
    if draw(st.booleans()):
        top[PADDLE_META_KEY] = draw(META)
    if draw(st.booleans()):
        top = OrderedDict(top)
    rnd = draw(st.randoms(use_true_random=False))
    data = Emitter(rnd, draw(st.integers(2, 5))).stream(top)
    pairs = [(k, v) for k, v in top.items() if k != PADDLE_META_KEY]
    return data, [
        (k, (v.dtype.name, v.shape, v.astype(v.dtype.newbyteorder("="), order="C").tobytes())) for k, v in pairs
    ]


@settings(FUZZ, max_examples=200)
@given(case=assembled())
def test_hand_assembled_streams_read_as_pickle_loads_them(tmp_path, case):
    data, want = case
    assert P.oracle(data) == want  # the stream is valid: pickle itself builds these arrays
    assert P.state(_file(tmp_path, data)) == want


# ---- mutations -----------------------------------------------------------------------------------------


OPCODES = b"(}])t\x85\x86\x87suae0123RbhjqrN\x88\x89KMJ\x8aX\x8c\x8dCB\x8e\x93c\x94\x95\x80."


def _unframed(data: bytes) -> bytes:
    """The stream without the FRAME opcode pickle.dumps puts after PROTO (pickle reads it the same): a mutation
    that moves bytes then does not just make the frame's length wrong."""
    return data[:2] + data[11:] if data[2:3] == b"\x95" else data


def _opcodes(data: bytes) -> list[bytes]:
    """A valid stream cut where its opcodes begin (pickletools reads it)."""
    starts = [pos for _, _, pos in pickletools.genops(data)]
    return [data[a:b] for a, b in zip(starts, [*starts[1:], len(data)], strict=True)]


@st.composite
def reworded(draw, data: bytes) -> bytes:
    """`data` with one to three opcodes dropped, repeated, swapped, or given another argument (a text, an integer,
    a memo index: re-encoded, so the stream stays readable and reaches further than a flipped bit)."""
    ops = _opcodes(data)
    out = Emitter(draw(st.randoms(use_true_random=False)), 4)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(ops) - 2))  # never STOP
        how = draw(st.sampled_from(["drop", "repeat", "swap", "argument"]))
        if how == "drop":
            del ops[i]
        elif how == "repeat":
            ops.insert(i, ops[i])
        elif how == "swap":
            ops[i], ops[i + 1] = ops[i + 1], ops[i]
        elif ops[i][:1] in (b"\x8c", b"X", b"\x8d"):
            text = draw(st.text(CHARS, max_size=8)).encode("utf-8", "surrogatepass")
            ops[i] = b"X" + struct.pack("<I", len(text)) + text
        elif ops[i][:1] in (b"K", b"M", b"J", b"\x8a"):
            out.out.clear()
            out.integer(draw(st.integers(-300, 300) | st.integers(-(2**63), 2**63 - 1)))
            ops[i] = bytes(out.out)
        elif ops[i][:1] in (b"h", b"q"):
            ops[i] = ops[i][:1] + bytes([draw(st.integers(0, 40))])
    return b"".join(ops)


@st.composite
def mutated(draw) -> bytes:
    """A valid stream (pickle.dumps or hand-assembled) changed: opcodes reworded, then bytes flipped, cut,
    inserted, deleted or copied, or spliced with another stream."""

    def base() -> bytes:
        if draw(st.booleans()):
            data = pickle.dumps(draw(state_dicts()), protocol=draw(st.sampled_from([2, 2, 3, 4])))
        else:
            data = draw(assembled())[0]
        return _unframed(data) if draw(st.booleans()) else data

    data = bytearray(draw(reworded(_unframed(base()))) if draw(st.booleans()) else base())
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["flip", "cut", "insert", "opcode", "delete", "copy", "splice"]))
        if how == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "cut":
            del data[at:]
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif how == "opcode" and at < len(data):
            data[at] = draw(st.sampled_from(OPCODES))
        elif how == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif how == "copy":  # a run of the stream again, elsewhere: opcodes that are valid on their own
            start = draw(st.integers(0, len(data)))
            data[at:at] = data[start : start + draw(st.integers(1, 64))]
        elif how == "splice":
            other = base()
            data = data[:at] + other[draw(st.integers(0, len(other))) :]
    return bytes(data)


@settings(FUZZ, max_examples=500)
@given(data=mutated())
def test_mutated_streams_read_as_pickle_loads_them_or_are_format_errors(tmp_path, data):
    got = _read_or_refuse(tmp_path, data)
    if got is not None:  # the reader accepted: pickle + numpy must build exactly these arrays
        assert got == P.oracle(data)
