"""A keypoint model of the pinned zoo, verified by the harness, predicts and scores what PaddleDetection's own
`tools/eval.py` predicts and scores on the same files.

PP-TinyPose 128x96 (configs/keypoint/tiny_pose, the smallest keypoint model of both pins: a top-down model that
predicts 17 keypoints in each person box of the annotation file, `use_gt_bbox: True`) with crafted weights: the
real config's random initialisation, its BatchNorm statistics calibrated on the images (worker `init-weights
--calibrate`: uncalibrated, the backbone's output is all zeros and every keypoint sits in a crop's corner), and
the heatmap head's bias raised by 0.3 so that keypoint confidences pass ppdet's visibility threshold (0.2) and
the OKS rescoring gives each person another, non-zero score. The data are tests/keypoints.py's synthetic people
on 3 small images. `harness verify --threads 1` (a zoo file written here, its model on a `coco-keypoints`
dataset) must write keypoints_results.json byte for byte as tools/eval.py writes it, and its 10 stats must be
the ones ppdet's KeyPointTopDownCOCOEval prints; `--parallel 2` must merge back the same predictions. Runs on
every stack (the config is the same at both pins).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import keypoints
import numpy as np
import pytest
import yaml
from conftest import harness, ppdet_tree

from harness.fetch import source
from harness.model.checkpoint import load_state
from harness.zoo.kinds import KEYPOINT_STATS
from harness.zoo.manifest import Source, load_zoo

pytestmark = pytest.mark.stack

CONFIG = "configs/keypoint/tiny_pose/tinypose_128x96.yml"
MODEL = "tinypose_128x96"
DATASET = "coco-kpt-synthetic"
ANNOTATIONS = "annotations/person_keypoints_val2017.json"


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    """One paddle process at OMP_NUM_THREADS=1, as `--threads 1` runs the worker."""
    out = subprocess.run(
        cmd, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _weights(root: Path, images: list[Path], out: Path) -> Path:
    """The config's random weights, BatchNorm calibrated on `images`, the heatmap head's bias raised by 0.3."""
    raw = out.with_name("random.pdparams")
    worker = [sys.executable, "-m", "harness.model.worker", "init-weights", "--ppdet-root", str(root)]
    _run([*worker, "--config", str(root / CONFIG), "--out", str(raw), "--calibrate", *map(str, images)])
    state = load_state(raw)
    state["final_conv.bias"] = (state["final_conv.bias"] + np.float32(0.3)).astype(np.float32)
    out.write_bytes(pickle.dumps(state, protocol=4))
    return out


class _Tags(yaml.SafeLoader):
    """A config read as plain data: a `!Class` section as its mapping (ppdet's loader builds the object)."""


_Tags.add_multi_constructor("!", lambda loader, tag, node: loader.construct_mapping(node, deep=True))


def _overlay(root: Path, data: Path, weights: Path, out: Path, path: Path) -> Path:
    """tools/eval.py's config: the real one, its EvalDataset declared again (a tagged object cannot be
    overridden key by key) with the config's own arguments and the worker's paths, batch size 1 as the worker
    evaluates, predictions to `out`."""
    text = (root / CONFIG).read_text()
    tag = re.search(r"^EvalDataset:\s*\n\s*!(\w+)", text, re.M)
    assert tag is not None and tag.group(1) == "KeypointTopDownCocoDataset"
    args = yaml.load(text, Loader=_Tags)["EvalDataset"]
    args.update(dataset_dir=str(data), image_dir="val2017", anno_path=ANNOTATIONS)
    top = {"_BASE_": [str(root / CONFIG)], "use_gpu": False, "worker_num": 0, "weights": str(weights)}
    top |= {"save_dir": str(out), "EvalReader": {"batch_size": 1}}
    dataset = yaml.safe_dump({"EvalDataset": args}).replace("EvalDataset:", f"EvalDataset: !{tag.group(1)}", 1)
    path.write_text(yaml.safe_dump(top) + dataset)
    return path


def _eval(root: Path, data: Path, weights: Path, out: Path, cfg: Path, *, only: bool = False):
    """tools/eval.py on the data: the predictions' bytes (`only`: --save_prediction_only), else its log."""
    flags = ["--save_prediction_only"] if only else []
    done = _run([sys.executable, "tools/eval.py", "-c", str(_overlay(root, data, weights, out, cfg)), *flags], root)
    return (out / "keypoints_results.json").read_bytes() if only else done.stdout + done.stderr


def _truth_from(predicted: list[dict], people: dict) -> dict:
    """The people with ppdet's keypoints for their boxes as ground truth (visible), the i-th person's moved by
    i x 4 % of its box: from exact to far, so that OKS spans COCOeval's thresholds. A prediction belongs to the
    box whose centre (of the box as ppdet clips it) is nearest its `center`."""
    images = {img["id"]: img for img in people["images"]}
    out = json.loads(json.dumps(people))
    scored = [a for a in out["annotations"] if a["num_keypoints"] and not a["iscrowd"]]
    for i, ann in enumerate(scored):
        img = images[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        x1, y1 = max(0, x), max(0, y)
        x2, y2 = min(img["width"] - 1, x1 + max(0, w - 1)), min(img["height"] - 1, y1 + max(0, h - 1))
        centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
        mine = [p for p in predicted if p["image_id"] == ann["image_id"]]
        pred = min(mine, key=lambda p: float(np.linalg.norm(np.array(p["center"]) - centre)))
        k = np.array(pred["keypoints"], dtype=float).reshape(-1, 3)
        k[:, 0] += 0.04 * i * w
        k[:, 1] += 0.04 * i * h
        k[:, 2] = 2
        ann["keypoints"] = [round(float(v), 2) for v in k.flatten()]
        ann["num_keypoints"] = len(k)
    return out


def _ppdets_stats(log: str) -> list[float]:
    """The 10 stats KeyPointTopDownCOCOEval.log prints (`| AP | Ap .5 | ... |`, then `| 0.123 | ...`)."""
    lines = log.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("| AP | Ap .5"))
    return [float(x) for x in lines[head + 2].strip("| ").split(" | ")]


def _zoo(path: Path, pin: Source, stack: str, archive: Path, weights: Path) -> Path:
    """A zoo of the one model, on a `coco-keypoints` dataset of its own (the default dataset is not used)."""
    unused = "http://unused.invalid"
    zoo = {
        "version": 2,
        "sources": {
            stack: {
                "repository": f"{unused}/PaddleDetection",
                "commit": pin.commit,
                "tree": ppdet_tree(pin.commit),
                "paddle": pin.paddle,
                "archive": {"url": str(archive)},
            }
        },
        "dataset": {"name": "coco-val2017", "images": f"{unused}/val2017.zip", "annotations": f"{unused}/a.zip"},
        "datasets": {
            DATASET: {
                "layout": "coco-keypoints",
                "images": f"{unused}/val2017.zip",
                "annotations": f"{unused}/annotations_trainval2017.zip",
                "annotation_file": ANNOTATIONS,
                "classes": ["person"],
            }
        },
        "tolerance": {"default": 0.3},
        "models": [
            {
                "name": MODEL,
                "config": CONFIG,
                "weights": {"url": str(weights)},
                "expected": {"kpt_ap": 58.4},  # configs/keypoint/tiny_pose/README.md, COCO val2017
                "dataset": DATASET,
            }
        ],
    }
    path.write_text(yaml.safe_dump(zoo, sort_keys=False))
    return path


def _verify(zoo: Path, data: Path, out: Path, cache: Path, *extra: str) -> dict:
    proc = harness(
        "verify", MODEL, "--zoo", str(zoo), "--out", str(out), "--data", f"{DATASET}={data}", "--device", "cpu",
        "--no-timing", "--threads", "1", "--json", *extra, cache=cache,
    )  # fmt: skip
    assert proc.returncode == 1 and proc.stdout.startswith("{"), proc.stderr[-3000:]  # random weights: a fail
    return json.loads(proc.stdout)


def test_a_keypoint_model_predicts_and_scores_what_ppdets_own_eval_does(cache, ppdet_archive, tmp_path):
    zoo, _ = load_zoo(Path(__file__).resolve().parents[1] / "zoo.yaml")
    stack, pin = zoo.source()
    archive = ppdet_archive(pin.commit)
    tree = source.prepare(
        Source(repository="unused", commit=pin.commit, tree=ppdet_tree(pin.commit), paddle=pin.paddle,
               archive={"url": str(archive)})
    )  # fmt: skip
    if not (tree.root / CONFIG).is_file():
        pytest.skip(f"{CONFIG} is not in PaddleDetection {pin.commit[:8]}")
    data = tmp_path / "coco-kpt"
    people = keypoints.dataset(3, size=(96, 72))  # images listed in descending id order, as COCO's are unsorted
    (data / "annotations").mkdir(parents=True)
    (data / ANNOTATIONS).write_text(json.dumps(people))
    images = keypoints.write_images(people, data / "val2017")
    weights = _weights(tree.root, images, tmp_path / "tinypose.pdparams")
    zoo_path = _zoo(tmp_path / "zoo.yaml", pin, stack, archive, weights)

    # ppdet's predictions of these boxes become (jittered) ground truth: random weights would score 0 on
    # anything else, and a comparison of zeros shows nothing. The model sees images and boxes only, so it
    # predicts the same on the new ground truth (checked below: the same bytes).
    first = _eval(tree.root, data, weights, tmp_path / "ppdet-first", tmp_path / "first.yml", only=True)
    people = _truth_from(json.loads((tmp_path / "ppdet-first" / "keypoints_results.json").read_text()), people)
    (data / ANNOTATIONS).write_text(json.dumps(people))

    rec = _verify(zoo_path, data, tmp_path / "run", cache)
    assert set(rec["stats"]) == {"keypoints"} and set(rec["stats"]["keypoints"]) == set(KEYPOINT_STATS)
    assert rec["dataset"]["name"] == DATASET and rec["dataset"]["num_images"] == 3
    ours = (tmp_path / "run" / MODEL / rec["predictions"]["keypoints_results"]).read_bytes()

    log = _eval(tree.root, data, weights, tmp_path / "ppdet", tmp_path / "overlay.yml")
    written = (tmp_path / "ppdet" / "keypoints_results.json").read_bytes()
    assert written == first  # the ground truth's keypoints are not the model's input
    predicted = json.loads(written)
    people_scored = [a for a in people["annotations"] if a["num_keypoints"] and not a["iscrowd"]]
    assert len(predicted) == len(people_scored) == rec["detections"]["keypoints_results"]  # one per person box
    assert len({p["score"] for p in predicted}) == len(predicted) and min(p["score"] for p in predicted) > 0.2
    assert ours == written  # byte for byte
    mine = [rec["stats"]["keypoints"][s] for s in KEYPOINT_STATS]
    assert [round(x, 3) for x in mine] == _ppdets_stats(log)  # as ppdet's KeyPointTopDownCOCOEval prints them
    assert 0 < mine[0] < 1 and mine[1] > mine[2]  # AP neither 0 nor 1; AP50 above AP75: the jitter tells

    two = _verify(zoo_path, data, tmp_path / "two", cache, "--parallel", "2")
    merged = (tmp_path / "two" / MODEL / two["predictions"]["keypoints_results"]).read_bytes()
    assert json.loads(merged) == predicted and two["stats"] == rec["stats"]  # the file's image order restored
    assert [u["images"] for u in two["parallel"]["units"]] == [2, 1]
