"""A bfloat16 checkpoint evaluates as PaddleDetection's own loader reads it, bit for bit.

paddle.save writes a bfloat16 tensor as numpy uint16 (its bits), and paddle.load reads uint16 back as a bfloat16
tensor that ppdet's load_pretrain_weight casts to the parameter's float32 (a widening: the bits become float32's
upper half). The harness's reader once cast those bits as integers (0x3F80 -> 16256.0) and evaluated the model.
Here a float32 checkpoint of the real Faster R-CNN config, truncated to bfloat16, is evaluated by the worker and
by PaddleDetection's `tools/eval.py` on the same file, images and eval size, single-threaded: the predictions
must be the same bytes. Runs on every stack (paddle 3.3.1 and 2.6.2).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, ppdet_tree

from harness.fetch import source
from harness.model import protocol
from harness.model.checkpoint import load_state
from harness.model.geometry import scaled
from harness.nightly.synthetic import synthetic_coco
from harness.zoo.manifest import Source, load_zoo

pytestmark = pytest.mark.stack

SHORT = 160  # eval size (short side): the cheapest that still gives the FPN's coarsest level a few cells


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    """One paddle process at OMP_NUM_THREADS=1 (`--threads 1`): the same kernels, in the same order, on both sides."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _overlay(config: Path, weights: Path, images: Path, annotations: Path, path: Path) -> Path:
    """tools/eval.py's config: the real one, pointed at the same data and eval size as the worker's (as
    scripts/bench_eval.py `overlay` builds it; the eval size is the config's own target scaled, geometry.apply)."""
    norm = {"is_scale": True, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    cfg = {
        "_BASE_": [str(config)],
        "use_gpu": False,
        "worker_num": 0,
        "weights": str(weights),
        "EvalDataset": {
            "name": "COCODataSet",
            "dataset_dir": str(images.parent),
            "allow_empty": True,
            "image_dir": images.name,
            "anno_path": annotations.name,
        },
        "EvalReader": {
            "batch_size": 1,
            "sample_transforms": [
                {"Decode": {}},
                {"Resize": {"interp": 2, "target_size": scaled([800, 1333], SHORT), "keep_ratio": True}},
                {"NormalizeImage": norm},
                {"Permute": {}},
            ],
        },
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def _bfloat16(f32: Path, out: Path) -> int:
    """The checkpoint with every tensor truncated to bfloat16 (the upper 16 bits), as paddle.save writes it."""
    state = load_state(f32)
    assert {a.dtype.name for a in state.values()} == {"float32"}
    out.write_bytes(pickle.dumps({k: (a.view(np.uint32) >> 16).astype(np.uint16) for k, a in state.items()}, 4))
    return len(state)


def test_a_bfloat16_checkpoint_predicts_what_ppdets_own_eval_predicts(cache, ppdet_archive, tmp_path):
    zoo, _ = load_zoo(REPO / "zoo.yaml")
    _, pin = zoo.source()
    archive = {"url": str(ppdet_archive(pin.commit))}
    tree = source.prepare(
        Source(repository="unused", commit=pin.commit, tree=ppdet_tree(pin.commit), paddle=pin.paddle, archive=archive)
    )
    config = tree.config(zoo.models[0])  # Faster R-CNN: the cheapest model of the zoo
    data = tmp_path / "coco"
    coco = synthetic_coco(data, 2, size=(96, 64))
    annotations = data / "instances.json"
    annotations.write_text(json.dumps(coco))
    images = data / "val2017"
    f32 = tmp_path / "f32.pdparams"
    calibrate = ["--short-side", str(SHORT), "--calibrate", *map(str, sorted(images.iterdir()))]
    worker = [sys.executable, "-m", "harness.model.worker"]
    _run(
        [
            *worker,
            "init-weights",
            "--ppdet-root",
            str(tree.root),
            "--config",
            str(config),
            "--out",
            str(f32),
            *calibrate,
        ]
    )
    bf16 = tmp_path / "bf16.pdparams"
    tensors = _bfloat16(f32, bf16)

    ours = tmp_path / "harness"
    spec = protocol.Spec(
        ppdet_root=str(tree.root),
        config=str(config),
        weights=str(bf16),
        images=str(images),
        annotations=str(annotations),
        out=str(ours),
        device="cpu",
        eval_short=SHORT,
        workers=0,
    )
    protocol.write_spec(tmp_path / "spec.json", spec)
    _run([*worker, "eval", "--spec", str(tmp_path / "spec.json")])
    answer = json.loads((ours / protocol.ANSWER).read_text())
    assert answer["status"] == "ok", answer.get("error")

    theirs = tmp_path / "ppdet"
    cfg = _overlay(config, bf16, images, annotations, tmp_path / "overlay.yml")
    _run(
        [sys.executable, "tools/eval.py", "-c", str(cfg), "--output_eval", str(theirs), "--save_prediction_only"],
        tree.root,
    )
    predicted = (theirs / "bbox.json").read_bytes()
    assert len(json.loads(predicted)) > 50  # calibrated random weights: boxes, not an empty file on both sides
    assert (ours / "predictions" / "bbox.json").read_bytes() == predicted
    casts = answer["weight_check"]["dtype_casts"]  # recorded as what it is
    assert len(casts) == tensors and set(casts.values()) == {"bfloat16 -> float32"}
