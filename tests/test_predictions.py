"""Which predictions a model has is read from what PaddleDetection wrote, not from its architecture's name."""

from __future__ import annotations

import pytest

from harness.core.errors import HarnessError
from harness.model.predictions import prediction_files


def _wrote(tmp_path, *names: str):
    for name in names:
        (tmp_path / name).write_text('[{"image_id": 1}]')
    return tmp_path


@pytest.mark.parametrize(
    "wrote, metrics, found",
    [
        (["bbox.json"], ["box_ap"], ["bbox"]),
        (["bbox.json", "mask.json"], ["box_ap", "mask_ap"], ["bbox", "mask"]),  # any R-CNN with masks (Cascade too)
        (["segm.json"], ["mask_ap"], ["segm"]),  # SOLOv2
        (["bbox.json", "mask.json"], ["box_ap"], ["bbox", "mask"]),  # masks nobody documented are still scored
    ],
)
def test_the_files_ppdet_wrote_are_the_predictions(tmp_path, wrote, metrics, found):
    assert sorted(prediction_files(_wrote(tmp_path, *wrote), metrics)) == found


def test_nothing_written_is_zero_detections_for_every_documented_kind(tmp_path):
    files = prediction_files(tmp_path, ["box_ap", "mask_ap"])
    assert sorted(files) == ["bbox", "mask"] and (tmp_path / "mask.json").read_text() == "[]"


def test_a_documented_metric_without_its_predictions_is_an_error_naming_it(tmp_path):
    with pytest.raises(
        HarnessError,
        match=r"the documented mask_ap cannot be measured: PaddleDetection wrote "
        r"bbox.json and no mask predictions",
    ):
        prediction_files(_wrote(tmp_path, "bbox.json"), ["box_ap", "mask_ap"])


def test_two_files_of_one_kind_are_an_error_not_one_lost(tmp_path):
    """mask.json and segm.json both serve mask AP: one result can be scored from only one of them, so neither
    is silently dropped (the old table kept whichever came last)."""
    with pytest.raises(HarnessError, match=r"wrote mask.json and segm.json: two files of mask predictions"):
        prediction_files(_wrote(tmp_path, "bbox.json", "mask.json", "segm.json"), ["box_ap", "mask_ap"])
