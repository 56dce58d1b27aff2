"""A tracker end to end: `harness verify --threads 1` tracks what PaddleDetection's own `tools/eval_mot.py`
tracks on the same sequences, to the byte of its result files, and the harness's MOTA and IDF1 are the ones its
summary prints.

The model: FairMOT DLA-34 576x320 (configs/mot/fairmot/fairmot_dla34_30e_576x320.yml, the cheapest JDE-style
config of the MOT zoo: 21.7 M parameters, about 3 s a frame on one CPU thread), with crafted weights: the real
config's random initialisation, BatchNorm calibrated on the frames (worker `init-weights --calibrate`), the
heatmap head's bias raised from its prior -2.19 to 0 and its weights scaled so that scores pass the tracker's
0.4 threshold and differ from place to place, the box head's bias set so that boxes are person-shaped and above
the tracker's 200 px² minimum: a few hundred tracks a frame, one of them on a walking person. The data: two
synthetic MOT16-named sequences of three frames (harness/nightly/synthetic.py: ignored rows and ignore regions
included), served as a `mot` dataset the test's own zoo file names. Runs on every stack.
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import harness
from oracle import one_thread, pinned_tree

from harness.model.checkpoint import load_state
from harness.nightly.synthetic import synthetic_mot

pytestmark = pytest.mark.stack

MODEL = "fairmot_dla34_30e_576x320"
CONFIG = "configs/mot/fairmot/fairmot_dla34_30e_576x320.yml"


def _weights(tree: Path, images: list[Path], out: Path) -> None:
    f32 = out.with_suffix(".init.pdparams")
    worker = [sys.executable, "-m", "harness.model.worker", "init-weights", "--ppdet-root", str(tree)]
    one_thread([*worker, "--config", str(tree / CONFIG), "--out", str(f32), "--calibrate", *map(str, images)])
    state = load_state(f32)
    state["detector.head.heatmap.2.conv.bias"][:] = 0.0  # sigmoid 0.5: above conf_thres 0.4
    state["detector.head.heatmap.2.conv.weight"] *= 30.0  # scores that vary with the image
    state["detector.head.size.2.conv.bias"][:] = [6, 12, 6, 12]  # ltrb in stride-4 cells: person-shaped boxes
    out.write_bytes(pickle.dumps({k: np.ascontiguousarray(a) for k, a in state.items()}, 4))
    f32.unlink()


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
            "mot16-train": {
                "layout": "mot",
                "images": "http://host.invalid/MOT16.zip",  # never fetched: --data mot16-train=DIR
                "image_dir": "MOT16/images/train",
                "classes": 1,
            }
        },
        "tolerance": {"default": 0.3},
        "tables": {
            "fairmot": {
                "readme": "configs/mot/fairmot/README.md",
                "heading": "MOT16",
                "columns": ["backbone", "MOTA", "IDF1", "download", "config"],
                "metrics": {"MOTA": "mot_mota", "IDF1": "mot_idf1"},
                "weights": "download",
                "config": "config",
            }
        },
        "models": [
            {
                "name": MODEL,
                "table": "fairmot",
                "dataset": "mot16-train",
                "config": CONFIG,
                "weights": weights.as_uri(),
                "labels": {"backbone": "DLA-34"},
                "expected": {"mot_mota": 74.0, "mot_idf1": 76.1},
            }
        ],
    }
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _overlay(tree: Path, weights: Path, root: Path, path: Path) -> Path:
    """tools/eval_mot.py's config: the real one, pointed at the same sequences, on the CPU."""
    path.write_text(
        f"_BASE_: [{tree / CONFIG}]\nuse_gpu: false\nweights: {weights}\n"
        f"EvalMOTDataset:\n  !MOTImageFolder\n    dataset_dir: {root}\n    data_root: MOT16/images/train\n"
        "    keep_ori_im: False\n"
    )
    return path


def _printed(log: str) -> dict[str, str]:
    """The OVERALL row of the summary eval_mot prints, by column (motmetrics' render_summary)."""
    lines = log.splitlines()
    at = max(i for i, line in enumerate(lines) if line.startswith("OVERALL"))
    header = next(lines[i].split() for i in range(at, -1, -1) if lines[i].split()[:1] == ["IDF1"])
    return dict(zip(header, lines[at].split()[1:], strict=True))


def test_a_tracker_tracks_and_scores_as_ppdets_own_eval_mot(tmp_path, ppdet_archive, cache):
    tree, _, sources = pinned_tree(tmp_path, ppdet_archive)
    data = tmp_path / "data"
    frames = synthetic_mot(data / "MOT16/images/train", frames=3, size=(192, 108))
    weights = tmp_path / "fairmot.pdparams"
    _weights(tree, frames[:3], weights)
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
        f"mot16-train={data}",
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
    assert rec["dataset"]["name"] == "mot16-train" and rec["dataset"]["layout"] == "mot"
    assert rec["dataset"]["num_images"] == 6

    theirs = tmp_path / "ppdet"
    cfg = _overlay(tree, weights, data, tmp_path / "overlay.yml")
    log = one_thread([sys.executable, "tools/eval_mot.py", "-c", str(cfg), "--output_dir", str(theirs)], tree)
    printed = _printed(log.stdout + log.stderr)

    mine = run / MODEL / "predictions"
    for seq in ("MOT16-02", "MOT16-04"):  # ppdet's own result files, to the byte
        assert (mine / "mot_results" / f"{seq}.txt").read_bytes() == (
            theirs / "mot_results" / f"{seq}.txt"
        ).read_bytes()
    rows = json.loads((mine / "mot.json").read_text())
    txt = [
        line
        for seq in ("MOT16-02", "MOT16-04")
        for line in (theirs / "mot_results" / f"{seq}.txt").read_text().splitlines()
    ]
    assert len(rows) == len(txt) > 100 and {r["sequence"] for r in rows} == {"MOT16-02", "MOT16-04"}

    stats = rec["stats"]["mot"]
    assert f"{stats['MOTA']:.1%}" == printed["MOTA"] and f"{stats['IDF1']:.1%}" == printed["IDF1"]
    assert printed["IDF1"] != "0.0%" and int(printed["GT"]) > 0  # a track hits: not a trivial 0 on both sides
    assert rec["metrics"]["mot_mota"]["measured"] == round(100 * stats["MOTA"], 4)
    assert rec["metrics"]["mot_idf1"]["measured"] == round(100 * stats["IDF1"], 4)
    assert rec["metrics"]["mot_mota"]["status"] == "fail"  # random weights: far from the documented 74.0

    again = harness("rescore", str(run), cache=cache)  # from the record alone: its layout and sequences
    assert again.returncode in (0, 1), again.stderr[-2000:]
    assert json.loads((run / MODEL / "result.json").read_text())["stats"] == rec["stats"]
