"""Checkpoints: the opcode interpreter, the checks on every array, exact casts and the key/shape comparison.

The hostile files are written opcode by opcode (tests/pickles.py): each is a file that the restricted
unpickler of the previous version accepted (using only numpy's own, allow-listed reconstructors) and that
produced an AP for bytes it had not faithfully loaded. No paddle needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pickles as P
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.model.checkpoint import (
    PADDLE_META_KEY,
    FormatError,
    LocalError,
    WeightsError,
    assign,
    compare,
    conform,
    load_state,
    read,
)

pytestmark = pytest.mark.numerics  # numpy / pycocotools differ by stack: run on every stack

MODEL = {"backbone.conv.weight": [8, 3, 3, 3], "backbone.bn._mean": [8], "head.fc.weight": [8, 4]}
F4 = np.arange(6, dtype="<f4").tobytes()


def _file(tmp_path, data: bytes, name: str = "w.pdparams"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _separate(arrays: list[np.ndarray]) -> bool:
    """No two arrays can see each other's memory (a write to one never changes another)."""
    return not any(np.may_share_memory(a, b) for i, a in enumerate(arrays) for b in arrays[i + 1 :])


# ---- keys and shapes --------------------------------------------------------------------------------


def test_exact_fit_is_ok():
    check = compare(dict(MODEL), MODEL)
    assert check.ok and check.matched == 3 and check.as_json()["ok"]


def test_prefixed_keys_are_all_unexpected_and_the_hint_names_the_prefix():
    check = compare({f"model.{k}": v for k, v in MODEL.items()}, MODEL)
    assert not check.ok and check.matched == 0
    assert len(check.missing) == len(check.unexpected) == 3
    assert "'model.'" in check.hint()
    assert "3 missing, 3 unexpected, 0 mis-shaped; 0 match" in check.summary()


def test_one_missing_key_is_named():
    file = dict(MODEL)
    del file["head.fc.weight"]
    check = compare(file, MODEL)
    assert not check.ok and check.missing == ["head.fc.weight"] and "missing: head.fc.weight" in check.summary()


def test_one_changed_shape_is_named_with_both_shapes():
    file = {**MODEL, "head.fc.weight": [81, 4]}
    check = compare(file, MODEL)
    assert not check.ok and check.mismatched == [("head.fc.weight", [81, 4], [8, 4])]
    assert "head.fc.weight file [81, 4] vs model [8, 4]" in check.summary()


# ---- what paddle.save writes is read exactly --------------------------------------------------------


STATE = {
    "a": np.arange(6, dtype="float32").reshape(2, 3),
    "b": np.array([True]),
    "c": np.array([True]),
    "d": np.zeros((0, 3), "float32"),
    "e": np.arange(4, dtype=">i8"),
    "f": np.asfortranarray(np.ones((2, 3))),
    "g": np.array([1.5, -2], dtype="float16"),
    "h": np.arange(3, dtype="uint8"),
    "i": np.arange(2, dtype="i4"),
    "j": np.array([16256], dtype="uint16"),
}


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_numpy_pickles_of_every_paddle_dtype_read_exactly(tmp_path, protocol):
    """Protocol 4 is paddle.save's; 2 and 3 are older files (protocol 2 stores bytes via _codecs.encode)."""
    data = pickle.dumps({**STATE, PADDLE_META_KEY: {"a": "conv_0.w_0"}}, protocol=protocol)
    ckpt = read(_file(tmp_path, data))
    assert ckpt.sha256 == hashlib.sha256(data).hexdigest() and ckpt.size == len(data)
    out = dict(ckpt.arrays())
    assert list(out) == list(STATE)  # the metadata key is dropped
    for k, v in STATE.items():
        assert np.array_equal(out[k], v) and out[k].dtype == v.dtype.newbyteorder("=")
        assert out[k].flags.c_contiguous and out[k].flags.writeable
    assert _separate(list(out.values()))


def test_a_pickle_that_would_run_code_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    with pytest.raises(FormatError, match=r"refused to load global (posix|os)\.system"):
        read(_file(tmp_path, pickle.dumps({"a": Evil()})))
    assert not marker.exists()


@pytest.mark.parametrize("cut", [0, 10, 1000])
def test_truncated_files_are_format_errors(tmp_path, cut):
    good = pickle.dumps({"a": np.zeros(1000, dtype="float32")}, protocol=4)
    with pytest.raises(FormatError, match="not a readable paddle checkpoint") as err:
        read(_file(tmp_path, good[:cut]))
    assert "re-fetch the weights" in str(err.value)


# ---- the attacks: each is a FormatError, never an array ---------------------------------------------


ATTACKS = {
    # _reconstruct with the model's shape and no state at all: an array of uninitialised memory
    "no data": (P.state_dict(("a", P.reconstruct())), "array without data"),
    # a second __setstate__ on a built array (the use-after-free: a view kept over the first buffer)
    "state set twice": (
        P.state_dict(
            ("a", P.array((6,), F4) + P.MEMOIZE), ("b", P.get(0) + P.array_state((6,), P.dtype(), P.blob(F4)) + P.BUILD)
        ),
        "array state set twice",
    ),
    # one memoised bytes object behind many big-endian arrays: 16 MB of file, GBs of arrays
    "shared data": (
        P.state_dict(
            ("a", P.reconstruct() + P.array_state((6,), P.dtype("f4", ">"), P.blob(F4) + P.put(0)) + P.BUILD),
            ("b", P.reconstruct() + P.array_state((6,), P.dtype("f4", ">"), P.get(0)) + P.BUILD),
        ),
        "array data used by more than one array",
    ),
    # a structured dtype hiding an object field (pointers read from file bytes)
    "object field": (
        P.state_dict(
            (
                "a",
                P.reconstruct()
                + P.array_state(
                    (1,),
                    P.dtype(
                        "V8",
                        "|",
                        P.tup(
                            P.integer(3),
                            P.text("|"),
                            P.NONE,
                            P.tup(P.text("p")),
                            P.text("fields"),
                            P.integer(8),
                            P.integer(1),
                            P.integer(0),
                        ),
                    ),
                    P.blob(b"\0" * 8),
                )
                + P.BUILD,
            )
        ),
        "'V8' is not one paddle.save writes",
    ),
    "fields in a plain dtype": (
        P.state_dict(
            (
                "a",
                P.reconstruct()
                + P.array_state(
                    (1,),
                    P.dtype(
                        "f4",
                        "<",
                        P.tup(
                            P.integer(3),
                            P.text("<"),
                            P.NONE,
                            P.tup(P.text("p")),
                            P.text("x"),
                            P.integer(-1),
                            P.integer(-1),
                            P.integer(0),
                        ),
                    ),
                    P.blob(b"\0" * 4),
                )
                + P.BUILD,
            )
        ),
        "carries fields, a sub-array or flags",
    ),
    "object dtype": (P.state_dict(("a", P.array((1,), b"\0" * 8, "O", "|"))), "'O' is not one paddle.save writes"),
    "complex64": (P.state_dict(("a", P.array((1,), b"\0" * 8, "c8"))), "'c8' is not one paddle.save writes"),
    # one opcode claiming 2^63 bytes (an OverflowError, a worker crash, before)
    "2^63 bytes": (
        P.state_dict(("a", P.reconstruct() + P.array_state((6,), P.dtype(), P.blob(b"", 1 << 63)) + P.BUILD)),
        "claims 9223372036854775808 bytes, only",
    ),
    "2^40 bytes": (P.PROTO4 + P.blob(b"", 1 << 40) + P.STOP, "claims 1099511627776 bytes"),
    "too few bytes": (P.state_dict(("a", P.array((7,), F4))), "needs 28 bytes, has 24"),
    "too many bytes": (P.state_dict(("a", P.array((5,), F4))), "needs 20 bytes, has 24"),
    "negative shape": (P.state_dict(("a", P.array((-1,), F4))), "is not a tuple of sizes"),
    "not an array": (P.state_dict(("a", P.integer(3))), "a: value is not a numpy array"),
    "not a dict": (P.PROTO4 + P.integer(3) + P.STOP, "not a state dict"),
    "empty": (P.PROTO4 + P.EMPTY_DICT + P.STOP, "holds no arrays"),
    "trailing bytes": (P.state_dict(("a", P.array((6,), F4)), tail=b"\0" * 10), "10 bytes follow the end"),
    "INST": (P.PROTO4 + b"ios\nsystem\n" + P.STOP, "opcode b'i' is not part of paddle's checkpoint format"),
    "NEWOBJ": (P.PROTO4 + P.glob("numpy", "dtype") + P.tup() + b"\x81" + P.STOP, "opcode b'\\x81'"),
    "PERSID": (P.PROTO4 + b"P0\n" + P.STOP, "opcode b'P'"),
    "EXT1": (P.PROTO4 + b"\x82\x01" + P.STOP, "opcode b'\\x82'"),
    "call ndarray": (P.PROTO4 + P.glob("numpy", "ndarray") + P.tup() + P.REDUCE + P.STOP, "ndarray cannot be called"),
    "BUILD a dict": (P.PROTO4 + P.EMPTY_DICT + P.EMPTY_DICT + P.BUILD + P.STOP, "BUILD on something"),
    "memo before put": (P.PROTO4 + P.get(5) + P.STOP, "memo 5 read before it was stored"),
    "endless opcodes": (P.PROTO4 + (P.NONE + b"0") * 600_000 + P.EMPTY_DICT + P.STOP, "more than 1"),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_crafted_checkpoints_are_format_errors_never_arrays(tmp_path, name):
    data, why = ATTACKS[name]
    with pytest.raises(FormatError) as err:
        read(_file(tmp_path, data))
    assert why in str(err.value), str(err.value)


def test_a_shared_blob_costs_nothing_before_it_is_refused(tmp_path):
    """The 4.7 GB case: 16 MB of data behind 300 big-endian arrays is refused while reading (memory bounded
    by the file), not after numpy built 300 copies."""
    big = b"\0" * (16 << 20)
    first = P.reconstruct() + P.array_state((4 << 20,), P.dtype("f4", ">"), P.blob(big) + P.put(0)) + P.BUILD
    more = [
        (f"k{i}", P.reconstruct() + P.array_state((4 << 20,), P.dtype("f4", ">"), P.get(0)) + P.BUILD)
        for i in range(300)
    ]
    with pytest.raises(FormatError, match="used by more than one array"):
        read(_file(tmp_path, P.state_dict(("k", first), *more)))


# ---- messages stay short whatever the file holds -------------------------------------------------------

DEEP = P.nested(60)  # 2^60 leaves in under 1 KB: its repr does not fit in any memory
LINEAR = P.EMPTY_TUPLE + P.TUPLE1 * 200_000  # ((((...),),),) 200,000 deep: repr recurses past any limit
HUGE_REPR = {
    "shape": P.state_dict(
        ("a", P.reconstruct() + P.tup(P.integer(1), DEEP, P.dtype(), P.NEWFALSE, P.blob(F4)) + P.BUILD)
    ),
    "global module": P.PROTO4 + DEEP + P.text("system") + P.STACK_GLOBAL + P.STOP,
    "global name": P.PROTO4 + P.text("os") + DEEP + P.STACK_GLOBAL + P.STOP,
    "dtype": P.state_dict(("a", P.glob("numpy", "dtype") + P.tup(DEEP, P.NEWFALSE, P.NEWTRUE) + P.REDUCE)),
    "linear shape": P.state_dict(
        ("a", P.reconstruct() + P.tup(P.integer(1), LINEAR, P.dtype(), P.NEWFALSE, P.blob(F4)) + P.BUILD)
    ),
}


def test_a_refusal_never_writes_out_what_the_file_built(tmp_path):
    """A 2 KB file whose memo references nest a tuple 60 deep: a message quoting it (its repr) would need 2^60
    characters. Each such file is a format error with a message of a few hundred characters, read here under
    an address-space limit (without one, the reader would grow until the OOM killer acts)."""
    paths = {name: str(_file(tmp_path, data, f"{i}.pdparams")) for i, (name, data) in enumerate(HUGE_REPR.items())}
    assert len(DEEP) < 1000 and len(HUGE_REPR["shape"]) < 2000
    code = textwrap.dedent(f"""
        import json, resource
        from pathlib import Path
        from harness.model.checkpoint import read
        vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + (512 << 20), resource.RLIM_INFINITY))
        for name, path in {paths!r}.items():
            try:
                read(Path(path))
                print(json.dumps([name, "accepted", 0]))
            except Exception as exc:
                print(json.dumps([name, type(exc).__name__, len(str(exc))]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    got = {name: (kind, size) for name, kind, size in map(json.loads, out.stdout.splitlines())}
    assert set(got) == set(HUGE_REPR), out.stdout + out.stderr[-2000:]
    for name, (kind, size) in got.items():
        assert kind == "FormatError" and size < 400, (name, kind, size)


def test_long_names_are_cut_in_every_message(tmp_path):
    name = "n" * 100_000
    with pytest.raises(FormatError) as err:
        read(_file(tmp_path, P.state_dict((name, P.integer(3)))))
    assert len(str(err.value)) < 400 and "(100000 characters)" in str(err.value)
    state = {name: np.array([np.nan], "float32"), "x" + name: np.array([1.5], "float32")}
    with pytest.raises(WeightsError) as err:
        _assign(tmp_path, state, {name: "float32", "x" + name: "int32"})
    assert len(str(err.value)) < 600
    check = compare({name: [1], "y" + name: [2]}, {"a": [1]})
    assert len(check.summary()) < 600 and len(check.hint()) < 400
    assert all(len(n) < 200 for n in check.as_json()["first_unexpected"])


# ---- pickle's own rules: a stream pickle rejects is a format error; one it accepts reads the same ----------

ARRAY = P.array((6,), F4)
# streams that pickle + numpy reject (P.oracle says so too); before, some were read as something pickle never
# builds, some escaped as UnboundLocalError, UnicodeEncodeError or numpy's ValueError
REJECTED = {
    # SETITEM reaching below a MARK, the MARK then dropped by POP_MARK
    "below a mark": P.PROTO4 + P.EMPTY_DICT + P.MARK + P.text("a") + ARRAY + P.SETITEM + P.POP_MARK + P.STOP,
    # POP with a MARK on top pops the MARK (pickle), not the dict below it
    "pop a mark": P.PROTO4
    + P.EMPTY_DICT
    + P.EMPTY_DICT
    + P.MARK
    + P.POP
    + P.MARK
    + P.text("a")
    + ARRAY
    + P.SETITEMS
    + P.POP_MARK
    + P.STOP,
    "APPEND to a tuple": P.state_dict(("a", ARRAY), (PADDLE_META_KEY, P.EMPTY_TUPLE + P.NONE + P.APPEND)),
    "latin1 of U+0100": P.PROTO2
    + P.EMPTY_DICT
    + P.text("a")
    + P.reconstruct()
    + P.array_state((1,), P.dtype("u1", "|"), P.latin1("\u0100"))
    + P.BUILD
    + P.SETITEM
    + P.STOP,
    "python 2 name in protocol 4": P.state_dict(
        ("a", ARRAY),
        (
            "b",
            P.reconstruct()
            + P.array_state((0,), P.dtype(), P.glob("__builtin__", "bytes") + P.tup() + P.REDUCE)
            + P.BUILD,
        ),
    ),
    "_reconstruct without shape": P.state_dict(
        (
            "a",
            P.glob("numpy.core.multiarray", "_reconstruct")
            + P.tup(P.glob("numpy", "ndarray"))
            + P.REDUCE
            + P.array_state((6,), P.dtype(), P.blob(F4))
            + P.BUILD,
        )
    ),
    "bad dtype then dropped": P.state_dict(
        ("a", ARRAY),
        (PADDLE_META_KEY, P.glob("numpy", "dtype") + P.tup(P.text("zz"), P.NEWFALSE, P.NEWTRUE) + P.REDUCE),
    ),
    "wrong byte count then dropped": P.state_dict(("a", ARRAY), (PADDLE_META_KEY, P.array((7,), F4))),
    "BUILD on latin1 bytes": P.PROTO2
    + P.latin1("ab")
    + P.EMPTY_DICT
    + P.BUILD
    + P.POP
    + P.state_dict(("a", ARRAY))[2:],
}
# streams pickle accepts and paddle.save never writes, refused on purpose (docs/checkpoint-format.md)
NARROWER = {
    # picklers number memo entries in order; an index far ahead costs pickle's C unpickler memory (it grows its
    # memo table to twice the index), so an index beyond the next one is a format error
    "memo stored out of order": P.state_dict(("a", ARRAY + P.put(7))),
    # an empty array numpy builds but cannot copy (np.zeros of its shape raises)
    "2^94 zero bytes": P.state_dict(
        ("a", P.reconstruct() + P.array_state((0, 1 << 47, 1 << 47), P.dtype(), P.blob(b"")) + P.BUILD)
    ),
    "items left at STOP": P.PROTO4 + P.NONE + P.state_dict(("a", ARRAY))[2:],
}
# streams pickle accepts, with opcodes pickle.dumps of numpy arrays does not write: read as the same arrays
ACCEPTED = {
    "APPENDS first": P.state_dict(
        (PADDLE_META_KEY, P.EMPTY_LIST + P.MARK + P.text("x") + P.NONE + P.APPENDS), ("a", ARRAY)
    ),
    "APPEND after TUPLE3": P.state_dict(("a", ARRAY), (PADDLE_META_KEY, P.EMPTY_LIST + P.integer(5) + P.APPEND)),
    "POP of a MARK": P.PROTO4 + P.EMPTY_DICT + P.MARK + P.POP + P.MARK + P.text("a") + ARRAY + P.SETITEMS + P.STOP,
    "protocol 2 latin1": P.PROTO2
    + P.EMPTY_DICT
    + P.text("a")
    + P.reconstruct()
    + P.array_state((2,), P.dtype("u1", "|"), P.latin1("\xff\x00"))
    + P.BUILD
    + P.SETITEM
    + P.STOP,
}


@pytest.mark.parametrize("name", list(REJECTED))
def test_streams_pickle_rejects_are_format_errors(tmp_path, name):
    data = REJECTED[name]
    assert P.oracle(data) is None
    with pytest.raises(FormatError):
        P.state(_file(tmp_path, data))


@pytest.mark.parametrize("name", list(NARROWER))
def test_streams_pickle_accepts_but_paddle_never_writes_are_refused(tmp_path, name):
    data = NARROWER[name]
    assert P.oracle(data) is not None
    with pytest.raises(FormatError):
        P.state(_file(tmp_path, data))


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_streams_pickle_accepts_read_the_same(tmp_path, name):
    data = ACCEPTED[name]
    assert P.state(_file(tmp_path, data)) == P.oracle(data) is not None


# ---- values: finiteness and casts ---------------------------------------------------------------------


def _assign(tmp_path, state: dict, model: dict[str, str]):
    ckpt = read(_file(tmp_path, pickle.dumps(state, protocol=4)))
    got: dict[str, np.ndarray] = {}
    casts = assign(ckpt, model, got.__setitem__)
    return casts, got


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_named_and_nothing_is_evaluated(tmp_path, bad):
    state = {f"w{i}": np.ones(3, "float32") for i in range(8)}
    state["w2"][1] = state["w5"][0] = bad
    with pytest.raises(WeightsError, match=r"2 tensors hold NaN or infinite values: w2, w5") as err:
        _assign(tmp_path, state, dict.fromkeys(state, "float32"))
    assert err.value.check is None


def test_exact_casts_are_made_and_recorded_and_lossy_ones_refused(tmp_path):
    ok = {
        "half": np.array([0.5, 1024], "float16"),
        "ints": np.array([1, -7], "int32"),
        "bits": np.array([16256], "uint16"),
    }
    casts, got = _assign(tmp_path, ok, {"half": "float32", "ints": "int64", "bits": "bfloat16"})
    assert casts == {"half": "float16 -> float32", "ints": "int32 -> int64"}  # bfloat16 bits into bfloat16: no cast
    assert got["half"].dtype == np.float32 and got["half"].tolist() == [0.5, 1024]
    assert got["bits"].dtype == np.uint16  # paddle's bfloat16 storage, handed over as bits
    lossy = {"double": np.array([0.1], "float64"), "big": np.array([2**40], "int64"), "frac": np.array([1.5], "f4")}
    with pytest.raises(
        WeightsError,
        match=r"3 tensors cannot be cast .*double \(float64 values that float32 "
        r"cannot hold exactly\), big \(int64 .*int32.*\), frac",
    ):
        _assign(tmp_path, lossy, {"double": "float32", "big": "int32", "frac": "int64"})


def test_bfloat16_casts_are_exact_or_refused():
    exact = np.array([1.0, -2.5], "float32")
    assert conform(exact, "bfloat16").tolist() == [16256, 49184]
    with pytest.raises(ValueError, match="bfloat16 cannot hold"):
        conform(np.array([0.1], "float32"), "bfloat16")


# paddle.save writes a bfloat16 tensor as its uint16 bits, and paddle.load reads uint16 back as bfloat16 (both
# stacks): 1.0, -2.5, 3.140625, the smallest subnormal, -0.0, 65536 (beyond float16), 2^-126 (float16: 0)
BF16 = np.array([0x3F80, 0xC020, 0x4049, 0x0001, 0x8000, 0x4780, 0x0080], "uint16")


def test_bfloat16_bits_for_a_float32_parameter_are_widened_exactly_not_cast_as_integers():
    """0x3F80 is 1.0, not 16256.0: the bits are float32's upper half (paddle's own astype does the same)."""
    out = conform(BF16, "float32")
    assert out.dtype == np.float32 and out.view(np.uint32).tolist() == [b << 16 for b in BF16.tolist()]
    assert out[:3].tolist() == [1.0, -2.5, 3.140625] and np.signbit(out[4])


def test_bfloat16_bits_widen_to_float64_and_to_float16_only_where_exact():
    wide = conform(BF16, "float64")
    assert wide.dtype == np.float64 and wide.tolist() == conform(BF16, "float32").astype("float64").tolist()
    half = conform(BF16[[0, 1, 2, 4]], "float16")
    assert half.dtype == np.float16 and half.tolist() == [1.0, -2.5, 3.140625, 0.0] and np.signbit(half[3])
    for bits in (0x0001, 0x4780, 0x0080):  # below float16's smallest subnormal, above its largest value
        with pytest.raises(ValueError, match="bfloat16 values that float16 cannot hold exactly"):
            conform(np.array([bits], "uint16"), "float16")


def test_a_bfloat16_parameter_takes_the_bits_as_they_are():
    assert conform(BF16, "bfloat16") is BF16


@pytest.mark.parametrize("model", ["float32", "float16", "float64", "bfloat16"])
@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8", "bool"])
def test_integers_are_never_cast_into_a_floating_parameter(dtype, model):
    with pytest.raises(ValueError, match=f"{dtype} values are integers"):
        conform(np.array([1, 0], dtype), model)


def test_bfloat16_files_are_recorded_as_such_and_their_non_finite_bits_named(tmp_path):
    casts, got = _assign(tmp_path, {"w": BF16, "b": BF16[:2]}, {"w": "float32", "b": "float64"})
    assert casts == {"w": "bfloat16 -> float32", "b": "bfloat16 -> float64"}
    assert got["w"].view(np.uint32).tolist() == [b << 16 for b in BF16.tolist()]
    bad = {"ok": BF16, "inf": np.array([0x7F80], "uint16"), "nan": np.array([0xFFC1], "uint16")}
    with pytest.raises(WeightsError, match=r"2 tensors hold NaN or infinite values: inf, nan"):
        _assign(tmp_path, bad, dict.fromkeys(bad, "float32"))


# ---- local faults are not format errors --------------------------------------------------------------


def test_a_vanished_file_is_a_local_error(tmp_path):
    with pytest.raises(LocalError, match="could not read the checkpoint on this machine") as err:
        read(tmp_path / "gone.pdparams")
    assert "nothing was evicted" in str(err.value)


def test_memory_pressure_is_a_local_error_not_a_broken_checkpoint(tmp_path):
    """A genuine 200 MB checkpoint read under an address-space limit (RLIMIT_AS): MemoryError, reported as
    this machine's fault (the worker then neither evicts the file nor forgets its pin)."""
    path = _file(tmp_path, pickle.dumps({"w": np.zeros(50_000_000, "float32")}, protocol=4))
    code = textwrap.dedent(f"""
        import resource, sys
        from pathlib import Path
        from harness.model.checkpoint import LocalError, read
        vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + (64 << 20), resource.RLIM_INFINITY))
        try:
            read(Path({str(path)!r}))
        except LocalError as exc:
            print("LOCAL", exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("LOCAL") and "MemoryError" in out.stdout, out.stdout + out.stderr


def test_load_state_drops_paddles_metadata(tmp_path):
    state = {"a": np.ones((2, 3), dtype="float32"), PADDLE_META_KEY: {"a": "conv_0.w_0"}}
    assert list(load_state(_file(tmp_path, pickle.dumps(state, protocol=4)))) == ["a"]


# ---- property: random opcode streams over the allowed globals -----------------------------------------


FRAGMENTS = [
    P.MARK,
    P.TUPLE,
    P.TUPLE1,
    P.TUPLE3,
    P.EMPTY_DICT,
    P.SETITEMS,
    b"s",
    b"]",
    b"a",
    b"e",
    P.REDUCE,
    P.BUILD,
    P.MEMOIZE,
    b"0",
    b"1",
    P.NONE,
    P.NEWTRUE,
    P.NEWFALSE,
    P.glob("numpy", "ndarray"),
    P.glob("numpy", "dtype"),
    P.glob("numpy.core.multiarray", "_reconstruct"),
    P.glob("collections", "OrderedDict"),
    P.glob("_codecs", "encode"),
    P.text("f4"),
    P.text("<"),
    P.text("latin1"),
    P.text("a"),
    P.text("b"),
    P.reconstruct(),
    P.dtype(),
    P.dtype("u1", "|"),
    P.array((2, 3), F4),
    P.array((6,), F4, "f4", ">"),
    P.array_state((6,), P.dtype(), P.blob(F4)),
    P.array_state((3,), P.dtype(), P.blob(F4)),
    P.tup(P.integer(6)),
    P.tup(P.integer(2), P.integer(3)),
    # opcodes and forms pickle.dumps of numpy arrays does not write (item 7 of the interpreter's bugs)
    P.TUPLE2,
    P.EMPTY_TUPLE,
    P.EMPTY_LIST,
    P.SETITEM,
    P.PROTO2,
    P.latin1("\x00" * 24),
    P.latin1("\u0100"),
    P.glob("__builtin__", "bytes"),
    b"cnumpy\ndtype\n",
    P.integer(1 << 40),
    P.nested(3, memo=40),
]
TOKENS = st.one_of(
    st.sampled_from(FRAGMENTS),
    st.integers(-(2**31), 2**31 - 1).map(P.integer),
    st.integers(0, 40).map(P.get),
    st.integers(0, 40).map(P.put),
    st.builds(P.blob, st.binary(max_size=64), st.one_of(st.none(), st.integers(0, 2**64 - 1))),
    st.binary(min_size=1, max_size=4),  # raw bytes: any opcode at all
)


@settings(
    max_examples=400,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=st.lists(TOKENS, max_size=40), wrap=st.booleans())
def test_random_opcode_streams_never_crash_and_never_yield_unverified_arrays(tmp_path, body, wrap):
    """Any stream is a FormatError or exactly the arrays pickle + numpy build from it (tests/test_checkpoint_fuzz.py
    generates valid streams and mutations of them; this one, token soup)."""
    data = P.state_dict(("k", b"".join(body))) if wrap else P.PROTO4 + b"".join(body) + P.STOP
    path = _file(tmp_path, data, "fuzz.pdparams")
    try:
        ckpt = read(path)
    except FormatError:
        return
    total, arrays = 0, []
    for name, arr in ckpt.arrays():
        assert arr.dtype.kind in "fiub" and arr.flags.writeable and arr.flags.c_contiguous, name
        total += arr.nbytes
        arrays.append(arr)
    assert total <= len(data) and _separate(arrays)  # every array came from its own bytes of the file
    assert P.state(path) == P.oracle(data)
