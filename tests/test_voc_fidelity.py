"""A Pascal VOC model of the pinned zoo, end to end: `harness verify --threads 1` predicts what PaddleDetection's own
`tools/eval.py` predicts on the same files, to the byte, and the harness's mAP is the one VOCMetric prints.

The model: PicoDet-S 320 VOC (configs/picodet/legacy_model/picodet_s_320_voc.yml, the smallest VOC config of
the zoo that builds on a CPU: 1 M parameters), with crafted weights: the real config's random initialisation,
BatchNorm calibrated on the images (worker `init-weights --calibrate`), its classification biases raised
from ppdet's prior of 0.01 to 0.27 so that every image has its 100 boxes above the 0.025 threshold, and its
classification weights scaled up so that the scores differ from box to box (not 100 tied boxes in a corner). The data:
three synthetic VOC images (tests/synthetic_voc.py) with difficult objects, one image without objects, served
as a `voc` dataset the test's own zoo file names per model. Runs on every stack (paddle 3.3.1 and 2.6.2).
"""

from __future__ import annotations

import json
import pickle
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import harness
from oracle import one_thread, pinned_tree
from synthetic_voc import synthetic_voc

from harness.model.checkpoint import load_state

pytestmark = pytest.mark.stack

MODEL = "picodet_s_320_voc"
CONFIG = "configs/picodet/legacy_model/picodet_s_320_voc.yml"


def _weights(tree: Path, images: list[Path], out: Path) -> None:
    """Random weights of the real config, BatchNorm calibrated, the class biases at logit -1 (0.27)."""
    f32 = out.with_suffix(".init.pdparams")
    worker = [sys.executable, "-m", "harness.model.worker", "init-weights", "--ppdet-root", str(tree)]
    one_thread([*worker, "--config", str(tree / CONFIG), "--out", str(f32), "--calibrate", *map(str, images)])
    state = load_state(f32)
    for name, array in state.items():  # rows 0-19 of the shared conv: the class logits (then 32 box bins)
        if re.fullmatch(r"head\.head_cls\d\.bias", name):
            array[:20] = -1.0
            array[0] = 1.0  # aeroplanes above the rest: the class of the test's objects
        elif re.fullmatch(r"head\.head_cls\d\.weight", name):
            array[:20] *= 100.0  # logits that vary with the image: the top 100 boxes spread over it
    out.write_bytes(pickle.dumps({k: np.ascontiguousarray(a) for k, a in state.items()}, 4))


def _zoo(path: Path, sources: dict, weights: Path) -> Path:
    raw = {
        "version": 2,
        "sources": sources,
        "dataset": {  # the default dataset, unused here
            "name": "coco-val2017",
            "images": "http://images.cocodataset.org/zips/val2017.zip",
            "annotations": "http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
        },
        "datasets": {
            "voc07": {
                "layout": "voc",
                "images": "http://host.invalid/VOCtest_06-Nov-2007.tar",  # never fetched: --data voc07=DIR
                "image_dir": ".",
                "annotation_file": "test.txt",
                "files": {"label_list": "label_list.txt"},
                "classes": 20,
            }
        },
        "tolerance": {"default": 0.3},
        "tables": {
            "picodet-voc": {
                "readme": "configs/picodet/legacy_model/README.md",
                "heading": "VOC",
                "columns": ["Model", "mAP", "Download", "Config"],
                "metrics": {"mAP": "voc_ap"},
                "weights": "Download",
                "config": "Config",
            }
        },
        "models": [
            {
                "name": MODEL,
                "table": "picodet-voc",
                "dataset": "voc07",
                "config": CONFIG,
                "weights": weights.as_uri(),
                "labels": {"Model": "PicoDet-S"},
                "expected": {"voc_ap": 50.0},
            }
        ],
    }
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _overlay(tree: Path, weights: Path, root: Path, path: Path) -> Path:
    """tools/eval.py's config: the real one, pointed at the same files, batch size 1, on the CPU."""
    cfg = {
        "_BASE_": [str(tree / CONFIG)],
        "use_gpu": False,
        "worker_num": 0,
        "weights": str(weights),
        "EvalDataset": {"dataset_dir": str(root), "anno_path": "test.txt", "label_list": "label_list.txt"},
        "EvalReader": {"batch_size": 1},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_voc_model_predicts_and_scores_as_ppdets_own_eval(tmp_path, ppdet_archive, cache):
    tree, _, sources = pinned_tree(tmp_path, ppdet_archive)
    # aeroplanes the size of the boxes the random head draws (about 17 x 11 px here), so that some are found
    voc = synthetic_voc(
        tmp_path / "voc", 4, size=(96, 64), empty=(1,), difficult=0.3, seed=3, use=1, objects=(2, 4), scale=(0.15, 0.25)
    )
    weights = tmp_path / "picodet-voc.pdparams"
    _weights(tree, sorted((voc.root / "JPEGImages").iterdir()), weights)
    zoo = _zoo(tmp_path / "zoo.yaml", sources, weights)

    run = tmp_path / "run"
    out = harness(
        "verify",
        MODEL,
        "--zoo",
        str(zoo),
        "--ppdet-root",
        str(tree),
        "--data",
        f"voc07={voc.root}",
        "--out",
        str(run),
        "--device",
        "cpu",
        "--threads",
        "1",
        "--no-timing",
        "--json",
        cache=cache,
    )
    rec = json.loads(out.stdout)
    assert rec.get("error") is None, (rec.get("error"), out.stderr[-3000:])
    assert rec["dataset"]["name"] == "voc07" and rec["dataset"]["layout"] == "voc"
    assert rec["scoring"] == {"voc": {"map_type": "11point"}}

    theirs = tmp_path / "ppdet"
    theirs.mkdir()  # VOCMetric writes into it, and does not make it
    cfg = _overlay(tree, weights, voc.root, tmp_path / "overlay.yml")
    log = one_thread([sys.executable, "tools/eval.py", "-c", str(cfg), "--output_eval", str(theirs)], tree)
    printed = re.search(r"mAP\(0\.50, 11point\) = ([0-9.]+)%", log.stdout + log.stderr)
    assert printed, (log.stdout + log.stderr)[-2000:]

    mine = run / MODEL / "predictions"
    assert (mine / "voc.ppdet.json").read_bytes() == (theirs / "bbox.json").read_bytes()  # ppdet's own bytes
    batches = json.loads((theirs / "bbox.json").read_text())
    rows = json.loads((mine / "voc.json").read_text())
    assert len(batches["bbox"]) == 3  # the image without objects is not evaluated (ppdet's allow_empty: False)
    assert [r["bbox"] for r in rows] == [b for batch in batches["bbox"] for b in batch]  # every box, in order
    assert len(rows) == 300 and len({r["image"] for r in rows}) == 3  # 100 a image: plentiful

    ap = rec["stats"]["voc"]["AP"]
    assert f"{100.0 * ap:.2f}" == printed.group(1)  # the mAP VOCMetric prints, formatted as it formats it
    assert rec["metrics"]["voc_ap"]["measured"] == round(100 * ap, 4)
    assert ap > 0  # some boxes hit: the number is not a trivial 0 on both sides

    again = harness("rescore", str(run), cache=cache)  # from the record alone: its layout, files and map_type
    assert again.returncode in (0, 1), again.stderr[-2000:]
    assert json.loads((run / MODEL / "result.json").read_text())["stats"] == rec["stats"]
