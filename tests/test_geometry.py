"""Eval geometry from the config: the real configs' EvalReader/TestReader, changed only on purpose."""

from __future__ import annotations

import copy
import subprocess

import pytest
import yaml
from conftest import CURRENT

from harness.model import geometry
from harness.zoo.configs import _Untagged


@pytest.fixture(scope="module")
def reader(ppdet_archive, tmp_path_factory):
    """`reader(path)` -> the EvalReader/TestReader of a real reader file of the pinned tree (no ppdet needed)."""
    root = tmp_path_factory.mktemp("ppdet")
    subprocess.run(["tar", "-xzf", ppdet_archive(CURRENT), "-C", root], check=True)
    tree = root / f"PaddleDetection-{CURRENT}"

    def load(rel: str) -> dict:
        return yaml.load((tree / rel).read_text(), Loader=_Untagged)  # a SafeLoader subclass

    return load


def test_rcnn_keep_ratio_target_is_scaled_by_its_short_side(reader):
    cfg = reader("configs/faster_rcnn/_base_/faster_fpn_reader.yml")
    assert geometry.target(cfg) == [800, 1333]
    geo = geometry.apply(cfg, short=320)
    assert geo == geometry.Geometry(config=[800, 1333], eval=[320, 533], changed_by="eval_size")
    assert geometry.target(cfg) == [320, 533] and geometry.target(cfg, "TestReader") == [320, 533]


def test_a_square_model_is_scaled_square_and_its_export_shape_follows(reader):
    cfg = reader("configs/ppyoloe/_base_/ppyoloe_plus_reader.yml")
    assert geometry.target(cfg) == [640, 640]
    geo = geometry.apply(cfg, short=320)
    assert geo.eval == [320, 320] and cfg["TestReader"]["inputs_def"]["image_shape"][-2:] == [320, 320]


def test_a_documented_input_size_sets_a_square_target(reader):
    cfg = reader("configs/ppyolo/_base_/ppyolo_reader.yml")
    own = geometry.target(cfg)
    geo = geometry.apply(copy.deepcopy(cfg), square=320)
    assert geo == geometry.Geometry(config=own, eval=[320, 320], changed_by="input_size")


def test_nothing_asked_changes_nothing(reader):
    cfg = reader("configs/rtdetr/_base_/rtdetr_reader.yml")
    before = copy.deepcopy(cfg)
    assert geometry.apply(cfg) == geometry.Geometry(config=[640, 640], eval=[640, 640]) and cfg == before


def test_each_image_at_its_own_size_is_left_alone_and_says_so(reader):
    """CenterNet's EvalReader warps each image at its own resolution (keep_res): --eval-size has nothing to
    scale, and the README's "512x512" (its training size) is not an eval size: both say so, nothing changes."""
    cfg = reader("configs/centernet/_base_/centernet_reader.yml")
    before = copy.deepcopy(cfg)
    geo = geometry.apply(cfg, short=160)
    assert geo.eval is None and geo.changed_by is None and "WarpAffine" in geo.unscaled and cfg == before
    geo = geometry.apply(cfg, square=512)
    assert "the documented 512x512 is not an eval size" in geo.unscaled and cfg == before


def test_eval_size_scales_the_documented_size_and_an_equal_size_is_no_change(reader):
    cfg = reader("configs/ppyolo/_base_/ppyolo_reader.yml")
    own = geometry.target(cfg)
    assert geometry.apply(copy.deepcopy(cfg), square=own[0]) == geometry.Geometry(config=own, eval=own)
    geo = geometry.apply(copy.deepcopy(cfg), square=416, short=208)
    assert geo == geometry.Geometry(config=own, eval=[208, 208], changed_by="eval_size")


def test_the_models_own_eval_size_follows(reader):
    """PP-YOLOE's head and RT-DETR's transformer precompute anchors for the shared top-level `eval_size`."""
    cfg = {**reader("configs/rtdetr/_base_/rtdetr_reader.yml"), **reader("configs/rtdetr/_base_/rtdetr_r50vd.yml")}
    assert cfg["eval_size"] == [640, 640]
    geometry.apply(cfg, short=320)
    assert cfg["eval_size"] == [320, 320]
    head = {"eval_size": [640, 640], "other": 1}
    cfg = {**reader("configs/ppyoloe/_base_/ppyoloe_plus_reader.yml"), "PPYOLOEHead": head}
    geometry.apply(cfg, short=320)
    assert head["eval_size"] == [320, 320] and cfg["eval_height"] == 320


def test_the_batchnorm_calibration_resizes_as_the_config_does(reader):
    """The rehearsal's random weights are calibrated on images resized as the config's EvalReader resizes them at
    the rehearsal's short side: an R-CNN's [800, 1333] keeps its ratio (what the worker hard-coded as 1333/800), a
    square target bounds the long side at that side, and a config without a Resize leaves each image as it is."""
    rcnn = geometry.target(reader("configs/faster_rcnn/_base_/faster_fpn_reader.yml"))
    assert geometry.keep_ratio_scale(rcnn, 320, 240, 320) == 320 / 240  # the short side binds
    assert geometry.keep_ratio_scale(rcnn, 320, 100, 400) == 320 * 1333 / 800 / 400  # the long side binds
    square = geometry.target(reader("configs/ppyoloe/_base_/ppyoloe_plus_reader.yml"))
    assert geometry.keep_ratio_scale(square, 320, 240, 480) == 320 / 480
    centernet = geometry.target(reader("configs/centernet/_base_/centernet_reader.yml"))
    assert centernet is None and geometry.keep_ratio_scale(centernet, 320, 240, 480) == 1.0
