"""Checkpoints: the opcode interpreter, the checks on every array, exact casts and the key/shape comparison.

The hostile files are written opcode by opcode (tests/pickles.py): each is a file that the restricted
unpickler of the previous version accepted (using only numpy's own, allow-listed reconstructors) and that
produced an AP for bytes it had not faithfully loaded. No paddle needed.
"""

from __future__ import annotations

import hashlib
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

from harness.checkpoint import (
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
            ("a", P.reconstruct() + P.array_state((6,), P.dtype("f4", ">"), P.blob(F4) + P.put(900)) + P.BUILD),
            ("b", P.reconstruct() + P.array_state((6,), P.dtype("f4", ">"), P.get(900)) + P.BUILD),
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
    first = P.reconstruct() + P.array_state((4 << 20,), P.dtype("f4", ">"), P.blob(big) + P.put(900)) + P.BUILD
    more = [
        (f"k{i}", P.reconstruct() + P.array_state((4 << 20,), P.dtype("f4", ">"), P.get(900)) + P.BUILD)
        for i in range(300)
    ]
    with pytest.raises(FormatError, match="used by more than one array"):
        read(_file(tmp_path, P.state_dict(("k", first), *more)))


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
    assert casts == {"half": "float16 -> float32", "ints": "int32 -> int64", "bits": "uint16 -> bfloat16"}
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
        from harness.checkpoint import LocalError, read
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
]
TOKENS = st.one_of(
    st.sampled_from(FRAGMENTS),
    st.integers(-(2**31), 2**31 - 1).map(P.integer),
    st.integers(0, 40).map(P.get),
    st.integers(0, 40).map(P.put),
    st.builds(P.blob, st.binary(max_size=64), st.one_of(st.none(), st.integers(0, 2**64 - 1))),
    st.binary(min_size=1, max_size=4),  # raw bytes: any opcode at all
)


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.lists(TOKENS, max_size=40), wrap=st.booleans())
def test_random_opcode_streams_never_crash_and_never_yield_unverified_arrays(tmp_path, body, wrap):
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
