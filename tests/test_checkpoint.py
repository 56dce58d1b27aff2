"""Checkpoints: the strict key/shape comparison and the restricted unpickler (no paddle needed)."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from harness.checkpoint import PADDLE_META_KEY, CheckpointError, compare, load_state

MODEL = {"backbone.conv.weight": [8, 3, 3, 3], "backbone.bn._mean": [8], "head.fc.weight": [8, 4]}


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


def test_load_state_reads_numpy_pickles_and_drops_paddles_metadata(tmp_path):
    path = tmp_path / "w.pdparams"
    state = {"a": np.ones((2, 3), dtype="float32"), PADDLE_META_KEY: {"a": "conv_0.w_0"}}
    path.write_bytes(pickle.dumps(state, protocol=4))
    loaded = load_state(path)
    assert list(loaded) == ["a"] and loaded["a"].shape == (2, 3)


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = marker
    path = tmp_path / "evil.pdparams"
    path.write_bytes(pickle.dumps({"a": evil}))
    with pytest.raises(CheckpointError, match=r"refused to load global (posix|os)\.system"):
        load_state(path)
    assert not marker.exists()


@pytest.mark.parametrize("cut", [0, 10, 1000])
def test_truncated_or_foreign_files_are_a_clear_error(tmp_path, cut):
    path = tmp_path / "w.pdparams"
    good = pickle.dumps({"a": np.zeros(1000, dtype="float32")}, protocol=4)
    path.write_bytes(good[:cut])
    with pytest.raises(CheckpointError, match="not a readable paddle checkpoint"):
        load_state(path)
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(CheckpointError, match="not a state dict"):
        load_state(path)
