"""Compressed models end to end: `harness verify --threads 1` on a model with a `slim:` config predicts what
PaddleDetection's own `tools/eval.py --slim_config` predicts on the same files, to the byte, and its COCO
stats are the ones ppdet prints.

Two models of configs/slim/README, the cheapest on a CPU of each kind: PicoDet-S 416 LCNet with PACT
quantisation-aware training (configs/slim/quant/picodet_s_416_lcnet_quant.yml: 1.3 M parameters, every conv
wrapped with fake-quant layers) and PP-YOLO MobileNetV3-large with FPGM filter pruning
(configs/slim/prune/ppyolo_mbv3_large_prune_fpgm.yml: the head's last convs 75 % thinner, found by
parameter names that count up per process). Crafted weights: the transformed model's own random
initialisation (worker `init-weights --slim`), BatchNorm calibrated on the images, the class (and objectness)
biases raised so that every image has plenty of boxes above the threshold. The data: synthetic COCO images;
their ground truth is ppdet's first predictions, so that the AP is neither 0 nor trivially 1.

On the current stack (paddle 3.3.1) pruning cannot run at all: paddleslim 2.6.0, the newest release,
traces the model with paddle 2.6's `_to_static_mode_guard_` (paddleslim/core/dygraph.py), which paddle 3
no longer has. There the test checks that the harness and tools/eval.py both stop on it (and fails once
either runs, so that the finding is revisited).
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

from harness.model.checkpoint import load_state
from harness.zoo.kinds import COCO_STATS

pytestmark = pytest.mark.stack

DATASET = "coco-synthetic"
CASES = {
    "qat": {
        "name": "picodet_s_416_coco_lcnet_quant",
        "config": "configs/picodet/picodet_s_416_coco_lcnet.yml",
        "slim": "configs/slim/quant/picodet_s_416_lcnet_quant.yml",
        # the class logits of each level's head (the quantised conv's own bias)
        "bias": {r"head\.head_cls_list\.\d\._layer\.bias": [(slice(0, 80), -1.0), (slice(0, 1), 1.0)]},
    },
    "prune": {
        "name": "ppyolo_mbv3_large_prune_fpgm",
        "config": "configs/ppyolo/ppyolo_mbv3_large_coco.yml",
        "slim": "configs/slim/prune/ppyolo_mbv3_large_prune_fpgm.yml",
        # 3 anchors x (4 box, objectness, 80 classes): objectness and class 0 up
        "bias": {r"yolo_head\.yolo_output\.\d\.bias": [(slice(4, 255, 85), 2.0), (slice(5, 255, 85), 2.0)]},
    },
}
# (case, stack) where tools/eval.py --slim_config itself cannot build the model: the error both must stop on
CANNOT = {("prune", "current"): "_to_static_mode_guard_"}


def _coco(root: Path, n: int = 3) -> list[Path]:
    """`n` noisy images with bright rectangles, an 80-category COCO file (ppdet maps its labels through it)."""
    import cv2

    rng = np.random.default_rng(5)
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, paths = [], []
    for i in range(1, n + 1):
        im = rng.integers(0, 120, size=(64, 96, 3), dtype=np.uint8)
        for _ in range(3):
            x, y = int(rng.integers(0, 60)), int(rng.integers(0, 36))
            im[y : y + 24, x : x + 32] = rng.integers(150, 255, size=3)
        path = root / "val2017" / f"{i:012d}.jpg"
        cv2.imwrite(str(path), im)
        images.append({"id": i, "file_name": path.name, "width": 96, "height": 64})
        paths.append(path)
    _annotations(root, images, [])
    return paths


def _annotations(root: Path, images: list[dict], boxes: list[dict]) -> None:
    anns = [
        {"id": k + 1, "image_id": b["image_id"], "category_id": b["category_id"], "bbox": b["bbox"], "iscrowd": 0,
         "area": b["bbox"][2] * b["bbox"][3]}
        for k, b in enumerate(boxes)
    ]  # fmt: skip
    cats = [{"id": c, "name": f"class{c}", "supercategory": "x"} for c in range(1, 81)]
    data = {"info": {}, "images": images, "annotations": anns, "categories": cats}
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(data))


def _weights(tree: Path, case: dict, images: list[Path], out: Path, *, slim: bool = True) -> Path:
    raw = out.with_suffix(".init.pdparams")
    worker = [sys.executable, "-m", "harness.model.worker", "init-weights", "--ppdet-root", str(tree)]
    extra = ["--slim", str(tree / case["slim"])] if slim else []
    one_thread(
        [*worker, "--config", str(tree / case["config"]), *extra, "--out", str(raw), "--calibrate", *map(str, images)]
    )
    state = load_state(raw)
    for pattern, changes in case["bias"].items():
        hits = [k for k in state if re.fullmatch(pattern, k)]
        assert hits or not slim, pattern
        for k in hits:
            for where, value in changes:
                state[k][where] = value
    out.write_bytes(pickle.dumps({k: np.ascontiguousarray(a) for k, a in state.items()}, 4))
    return out


def _zoo(path: Path, sources: dict, case: dict, weights: Path) -> Path:
    unused = "http://unused.invalid"
    raw = {
        "version": 2,
        "sources": sources,
        "dataset": {
            "name": DATASET, "images": f"{unused}/val2017.zip", "annotations": f"{unused}/a.zip", "classes": 80,
        },
        "tolerance": {"default": 0.3},
        "models": [
            {"name": case["name"], "config": case["config"], "slim": case["slim"], "weights": weights.as_uri(),
             "expected": {"box_ap": 30.0}},
        ],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _verify(zoo: Path, name: str, data: Path, out: Path, tree: Path, cache: Path) -> dict:
    proc = harness(
        "verify", name, "--zoo", str(zoo), "--ppdet-root", str(tree), "--data", f"{DATASET}={data}", "--out", str(out),
        "--device", "cpu", "--threads", "1", "--no-timing", "--json", cache=cache,
    )  # fmt: skip
    assert proc.stdout.startswith("{"), proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _ppdet(tree: Path, case: dict, data: Path, weights: Path, out: Path, ok: bool = True):
    """tools/eval.py -c CONFIG --slim_config SLIM, pointed at the same files, batch size 1, on the CPU."""
    cfg = {
        "_BASE_": [str(tree / case["config"])],
        "use_gpu": False,
        "worker_num": 0,
        "weights": str(weights),
        "EvalDataset": {
            "dataset_dir": str(data), "image_dir": "val2017", "anno_path": "annotations/instances_val2017.json",
        },
        "EvalReader": {"batch_size": 1},
    }  # fmt: skip
    overlay = out.with_suffix(".yml")
    overlay.write_text(yaml.safe_dump(cfg))
    out.mkdir()
    cmd = ["tools/eval.py", "-c", str(overlay), "--slim_config", case["slim"], "--output_eval", str(out)]
    return one_thread([sys.executable, *cmd], tree, ok)


def _stats(log: str) -> list[float]:
    """The 12 COCOeval.summarize() lines ppdet prints, as printed (3 decimals)."""
    found = re.findall(r"Average (?:Precision|Recall)\s+\(A[PR]\) @\[.*?\] = (-?[0-9.]+)", log)
    assert len(found) >= 12, log[-2000:]
    return [float(x) for x in found[:12]]


@pytest.mark.parametrize("kind", list(CASES))
def test_a_compressed_model_predicts_and_scores_as_tools_eval_with_its_slim_config(
    kind, tmp_path, ppdet_archive, cache
):
    case = CASES[kind]
    tree, stack, sources = pinned_tree(tmp_path, ppdet_archive)
    data = tmp_path / "coco"
    paths = _coco(data)
    images = json.loads((data / "annotations" / "instances_val2017.json").read_text())["images"]
    cannot = CANNOT.get((kind, stack))
    weights = _weights(tree, case, paths, tmp_path / f"{kind}.pdparams", slim=cannot is None)
    zoo = _zoo(tmp_path / "zoo.yaml", sources, case, weights)
    if cannot:  # both stop building the model, on the same paddleslim call
        theirs = _ppdet(tree, case, data, weights, tmp_path / "ppdet", ok=False)
        assert theirs.returncode != 0 and cannot in theirs.stderr, theirs.stderr[-2000:]
        rec = _verify(zoo, case["name"], data, tmp_path / "run", tree, cache)
        assert rec["status"] == "error" and cannot in rec["error"]["message"], rec["error"]
        return

    first = tmp_path / "first"
    _ppdet(tree, case, data, weights, first)
    predicted = json.loads((first / "bbox.json").read_text())
    truth = [b for i in images for b in sorted((p for p in predicted if p["image_id"] == i["id"]),
                                                 key=lambda p: -p["score"])[:3]]  # fmt: skip
    _annotations(data, images, truth)  # ppdet's best boxes become the ground truth: an AP above 0

    rec = _verify(zoo, case["name"], data, tmp_path / "run", tree, cache)
    assert rec.get("error") is None, rec.get("error")
    theirs = tmp_path / "ppdet"
    log = _ppdet(tree, case, data, weights, theirs)
    mine = (tmp_path / "run" / case["name"] / rec["predictions"]["bbox"]).read_bytes()
    assert mine == (theirs / "bbox.json").read_bytes() == (first / "bbox.json").read_bytes()  # to the byte
    assert rec["detections"]["bbox"] >= 30 and len({p["image_id"] for p in predicted}) == 3  # plentiful
    mine_stats = [round(rec["stats"]["bbox"][k], 3) for k in COCO_STATS]
    assert mine_stats == _stats(log.stdout + log.stderr)
    assert 0 < mine_stats[0] < 1

    worker = json.loads((tmp_path / "run" / case["name"] / "worker.json").read_text())
    assert worker["slim"] == {"config": str(tree / case["slim"]), "type": "QAT" if kind == "qat" else "Pruner"}


def test_an_uncompressed_checkpoint_is_refused_for_a_compressed_model(tmp_path, ppdet_archive, cache):
    """The plain config's own weights do not fit the quantised model: the strict loader refuses them."""
    case = CASES["qat"]
    tree, _, sources = pinned_tree(tmp_path, ppdet_archive)
    data = tmp_path / "coco"
    paths = _coco(data)
    weights = _weights(tree, case, paths, tmp_path / "plain.pdparams", slim=False)
    rec = _verify(
        _zoo(tmp_path / "zoo.yaml", sources, case, weights), case["name"], data, tmp_path / "run", tree, cache
    )
    worker = json.loads((tmp_path / "run" / case["name"] / "worker.json").read_text())
    assert rec["status"] == "error" and worker["error_kind"] == "weights_mismatch", worker
    assert "_fake_quant" in json.dumps(worker["weight_check"])  # what the plain checkpoint lacks
