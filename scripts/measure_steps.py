#!/usr/bin/env python3
"""The tries of scripts/measure_tasks.py: each runs inside a stack's scratch venv, as
`<venv>/bin/python scripts/measure_steps.py <step> --src <PaddleDetection> --work <dir>`.

Why a separate file: these import paddle and PaddleDetection, the driver never does. Module-level imports stay
free of zlib (no shutil, tarfile): whether zlib is loaded before paddle is one of the things measured
(paddle 2.6.2 exports its own zlib symbols; reports/tasks-measured.md). A failing step exits non-zero with
the measured failure in its output; the driver reads it from the log.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
from pathlib import Path

# The config each task evaluates (and the slim config for the compressed row).
TASK_CONFIGS = {
    "slim": ("configs/picodet/picodet_s_416_coco_lcnet.yml", "configs/slim/quant/picodet_s_416_lcnet_quant.yml"),
    "rotated": ("configs/rotate/ppyoloe_r/ppyoloe_r_crn_s_3x_dota.yml", None),
    "mot": ("configs/mot/fairmot/fairmot_dla34_30e_576x320.yml", None),
    "face": ("configs/face_detection/blazeface_1000e.yml", None),
}
TOOL_TIMEOUT = 180  # one tools/ run on 1-4 tiny images takes seconds; past this it hangs (a crashed loader thread)
PRELOAD = "MEASURE_PRELOAD_ZLIB"  # set by the driver for the retry with zlib imported before paddle


def run_step(name: str, src: Path, work: Path) -> int:
    """One try step; a Python exception or a non-zero tools/ exit is the measured failure (see the log)."""
    if os.environ.get(PRELOAD):
        import zlib  # noqa: F401  (before paddle: the retry's workaround)
    os.chdir(work)  # every config's dataset_dir is relative ("dataset/coco"): the synthetic data lies here
    STEPS[name](src, work)
    return 0


def ppdet_on_path(src: Path) -> None:
    sys.path.insert(0, str(src))


def random_weights(src: Path, config: str, out: Path, slim: str | None = None) -> Path:
    """The config's model with its own random initialisation, saved as the checkpoint the eval loads."""
    ppdet_on_path(src)
    import paddle

    paddle.set_device("cpu")
    from ppdet.core.workspace import create, load_config

    cfg = load_config(str(src / config))
    model = create(cfg.architecture)
    if slim:  # the quantised model's own parameters, as ppdet.slim.build_slim_model(mode='eval') builds it
        load_config(str(src / slim))
        quanter = create(cfg.slim)
        quanter.quant_config["activation_preprocess_type"] = None
        model = quanter(model)
        n = sum("quant" in type(m).__name__.lower() for m in model.sublayers())
        print(f"quantised model built: {n} quant layers", flush=True)
        if not n:
            raise SystemExit("the slim config built no quant layers")
    paddle.save(model.state_dict(), str(out))
    return out


def tool_output(
    src: Path, tool: str, config: str, opts: list[str], extra: list[str] | None = None, env: dict | None = None
) -> tuple[int, str]:
    """PaddleDetection's own tools/<tool> as a user runs it (cwd = the synthetic dataset's root); its output is
    echoed and returned. With $MEASURE_PRELOAD_ZLIB the same script runs with zlib imported before paddle."""
    path = str(src / "tools" / tool)
    args = ["-c", str(src / config), *(extra or []), "-o", *opts]
    if os.environ.get(PRELOAD):
        code = f"import zlib, runpy, sys; sys.argv[0] = {path!r}; runpy.run_path({path!r}, run_name='__main__')"
        cmd = [sys.executable, "-c", code, *args]
    else:
        cmd = [sys.executable, path, *args]
    print("$", " ".join(cmd), flush=True)
    try:
        proc = subprocess.run(
            cmd, env={**os.environ, **(env or {})}, check=False, capture_output=True, text=True, timeout=TOOL_TIMEOUT
        )
    except subprocess.TimeoutExpired as exc:
        text = (exc.stdout or b"").decode(errors="replace") + (exc.stderr or b"").decode(errors="replace")
        print(text[-8000:], f"\ntools/{tool} hung: no exit within {TOOL_TIMEOUT} s", flush=True)
        return 124, text
    print(proc.stdout[-8000:], proc.stderr[-8000:], sep="\n", flush=True)
    return proc.returncode, proc.stdout + proc.stderr


def run_tool(
    src: Path, tool: str, config: str, opts: list[str], extra: list[str] | None = None, env: dict | None = None
) -> str:
    """tool_output, raising the measured failure when the tool does not exit 0."""
    rc, out = tool_output(src, tool, config, opts, extra, env)
    if rc == 124:
        raise SystemExit(f"tools/{tool} hung: no exit within {TOOL_TIMEOUT} s")
    if rc:
        raise SystemExit(f"tools/{tool} exited {rc}")
    return out


def image(path: Path, size: tuple[int, int], boxes: list[tuple[int, int, int, int]]) -> None:
    """A synthetic photo: noise background and filled rectangles where the ground truth says objects are."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    d = ImageDraw.Draw(im)
    for x, y, w, h in boxes:
        d.rectangle([x, y, x + w, y + h], fill=(220, 40, 40))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, quality=95)


def coco_json(path: Path, images: list[tuple[str, int, int, list]], ncat: int, poly: bool = False) -> None:
    """A tiny instances json: every category id 1..ncat (the model's classes map onto them)."""
    anns, imgs = [], []
    for i, (name, w, h, boxes) in enumerate(images, 1):
        imgs.append({"id": i, "file_name": name, "width": w, "height": h})
        for x, y, bw, bh in boxes:
            a = {"id": len(anns) + 1, "image_id": i, "category_id": 1, "bbox": [x, y, bw, bh], "area": bw * bh}
            a["iscrowd"] = 0
            a["segmentation"] = [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]
            anns.append(a)
    cats = [{"id": c, "name": f"class{c}", "supercategory": "none"} for c in range(1, ncat + 1)]
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"info": {"description": "synthetic"}, "licenses": [], "images": imgs, "annotations": anns}
    path.write_text(json.dumps({**doc, "categories": cats}))


def step_slim_import(src: Path, work: Path) -> None:
    import paddle
    import paddleslim

    print("paddle", paddle.__version__, "paddleslim", getattr(paddleslim, "__version__", "?"), "imported", flush=True)
    from paddleslim.dygraph.quant import QAT  # what ppdet/slim/quant.py uses

    print("paddleslim.dygraph.quant.QAT", QAT, flush=True)


def step_slim_eval(src: Path, work: Path) -> None:
    """tools/eval.py -c <PicoDet-S LCNet> --slim_config <its QAT config>: ppdet.slim.build_slim_model(mode='eval')."""
    config, slim = TASK_CONFIGS["slim"]
    ims = [("000000000001.jpg", 320, 320, [(40, 60, 120, 100)]), ("000000000002.jpg", 320, 320, [(150, 30, 90, 200)])]
    for name, w, h, boxes in ims:
        image(work / "dataset/coco/val2017" / name, (w, h), boxes)
    coco_json(work / "dataset/coco/annotations/instances_val2017.json", ims, 80)
    weights = random_weights(src, config, work / "random.pdparams", slim)
    opts = ["use_gpu=false", f"weights={weights}", "worker_num=0", "EvalReader.batch_size=1"]
    run_tool(src, "eval.py", config, opts, ["--slim_config", str(src / slim)])


def step_rotated_op(src: Path, work: Path) -> None:
    """ext_op's rbox_iou against shapely's polygon IoU on three rotated boxes (cx, cy, w, h, angle rad)."""
    import numpy as np
    import paddle
    from ext_op import rbox_iou
    from shapely.geometry import Polygon

    def poly(b):
        cx, cy, w, h, a = b
        c, s = np.cos(a), np.sin(a)
        pts = [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]
        return Polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts])

    b1 = np.array([[50, 50, 40, 20, 0.3], [100, 100, 30, 30, 0.0]], dtype="float32")
    b2 = np.array([[55, 52, 40, 20, -0.2], [60, 40, 25, 10, 1.0], [100, 100, 30, 30, 0.7854]], dtype="float32")
    got = rbox_iou(paddle.to_tensor(b1), paddle.to_tensor(b2)).numpy()
    want = np.array([[poly(x).intersection(poly(y)).area / poly(x).union(poly(y)).area for y in b2] for x in b1])
    print("rbox_iou", got.round(4).tolist(), "shapely", want.round(4).tolist(), flush=True)
    if not np.allclose(got, want, atol=1e-3):
        raise SystemExit("ext_op rbox_iou disagrees with shapely")


def step_rotated_eval(src: Path, work: Path) -> None:
    """tools/eval.py on a DOTA-style COCO json (polygons); score_threshold lowered so random-weight detections
    exist and RBoxMetric's rbox_iou (ppdet/metrics/map_utils.py) is really reached."""
    config = TASK_CONFIGS["rotated"][0]
    ims = [("P0001__1024__0___0.png", 512, 512, [(100, 120, 200, 80), (300, 300, 90, 150)])]
    for name, w, h, boxes in ims:
        image(work / "dataset/dota/trainval1024/images" / name, (w, h), boxes)
    coco_json(work / "dataset/dota/trainval1024/DOTA_trainval1024.json", ims, 15, poly=True)
    weights = random_weights(src, config, work / "random.pdparams")
    opts = ["use_gpu=false", f"weights={weights}", "worker_num=0", "EvalReader.batch_size=1"]
    # one option per nested dict: ppdet's ArgsParser resets `a.b` for each `a.b.c=` given, keeping the last only
    opts += ["PPYOLOERHead.nms.score_threshold=0.001"]
    # First with ext_op hidden (a stub that fails to import, first on PYTHONPATH): the eval must stop in
    # map_utils' rbox IoU, which proves the metric really reaches ext_op with these detections.
    stub = work / "no_ext_op"
    stub.mkdir(exist_ok=True)
    (stub / "ext_op.py").write_text("raise ImportError('ext_op hidden by measure_tasks.py')\n")
    rc, out = tool_output(src, "eval.py", config, opts, env={"PYTHONPATH": str(stub)})
    if rc == 124:
        raise SystemExit(f"tools/eval.py hung: no exit within {TOOL_TIMEOUT} s")
    if rc == 0 or "import custom_ops error" not in out:
        raise SystemExit("the RBOX eval never reached ext_op's rbox_iou: no detection overlapped the ground truth")
    print(f"without ext_op: tools/eval.py stopped in map_utils' ext_op import (rc {rc}), as expected", flush=True)
    run_tool(src, "eval.py", config, opts)


def step_mot_eval(src: Path, work: Path) -> None:
    """tools/eval_mot.py (ppdet.engine.Tracker.mot_evaluate, MOTMetric via motmetrics) on one 4-frame sequence
    laid out as MOT16 (img1/, gt/gt.txt, seqinfo.ini); thresholds lowered so random weights give tracks."""
    config = TASK_CONFIGS["mot"][0]
    seq = work / "dataset/mot/MOT16/images/train/MOT16-99"
    gt = []
    for f in range(1, 5):
        boxes = [(40 + 10 * f, 60, 60, 150), (300 - 8 * f, 80, 50, 140)]
        image(seq / "img1" / f"{f:06d}.jpg", (640, 360), boxes)
        gt += [f"{f},{i + 1},{x},{y},{w},{h},1,1,1.0" for i, (x, y, w, h) in enumerate(boxes)]
    (seq / "gt").mkdir(parents=True, exist_ok=True)
    (seq / "gt/gt.txt").write_text("\n".join(gt) + "\n")
    (seq / "seqinfo.ini").write_text(
        "[Sequence]\nname=MOT16-99\nimDir=img1\nframeRate=30\nseqLength=4\nimWidth=640\nimHeight=360\nimExt=.jpg\n"
    )
    weights = random_weights(src, config, work / "random.pdparams")
    opts = ["use_gpu=false", f"weights={weights}"]
    opts += [f"JDETracker.{k}" for k in ("conf_thres=0.01", "det_thresh=0.01", "min_box_area=0", "vertical_ratio=0")]
    run_tool(src, "eval_mot.py", config, opts, ["--output_dir", str(work / "output")])
    tracks = (work / "output/mot_results/MOT16-99.txt").read_text().splitlines()
    print(f"MOT result file: {len(tracks)} track boxes", flush=True)
    if not tracks:  # motmetrics would have scored nothing (its accumulator only sees frames with results)
        raise SystemExit("tools/eval_mot.py wrote no track: the MOT metric was not exercised")


def step_face_eval(src: Path, work: Path) -> None:
    """tools/eval.py on a two-image WIDER FACE val layout (the split txt, and the four ground-truth .mat files
    that the develop tree's WIDERFaceValDataset reads); records whether an AP comes out or only prediction txts."""
    import numpy as np
    from scipy.io import savemat

    config = TASK_CONFIGS["face"][0]
    root = work / "dataset/wider_face"
    event = "0--Parade"
    ims = [
        ("0_Parade_marchingband_1_1", [(60, 50, 40, 50), (200, 80, 30, 36)]),
        ("0_Parade_Parade_0_2", [(90, 90, 60, 70)]),
    ]
    lines = []
    for name, boxes in ims:
        image(root / "WIDER_val/images" / event / f"{name}.jpg", (320, 240), boxes)
        lines += [f"{event}/{name}.jpg", str(len(boxes))] + [f"{x} {y} {w} {h} 0 0 0 0 0 0" for x, y, w, h in boxes]
    (root / "wider_face_split").mkdir(parents=True, exist_ok=True)
    (root / "wider_face_split/wider_face_val_bbx_gt.txt").write_text("\n".join(lines) + "\n")

    def cell(items):
        arr = np.empty((len(items), 1), dtype=object)
        for i, it in enumerate(items):
            arr[i, 0] = it
        return arr

    files = cell([cell([np.array([n]) for n, _ in ims])])
    boxes = cell([cell([np.array(b, dtype=float) for _, b in ims])])
    gt = root / "WIDER_val/ground_truth"
    gt.mkdir(parents=True, exist_ok=True)
    savemat(
        gt / "wider_face_val.mat", {"event_list": cell([np.array([event])]), "file_list": files, "face_bbx_list": boxes}
    )
    for level in ("easy", "medium", "hard"):
        keep = cell([cell([np.arange(1, len(b) + 1, dtype=np.int32).reshape(-1, 1) for _, b in ims])])
        savemat(gt / f"wider_{level}_val.mat", {"gt_list": keep})
    weights = random_weights(src, config, work / "random.pdparams")
    opts = ["use_gpu=false", f"weights={weights}", "worker_num=0", "multi_scale_eval=false"]
    out = run_tool(src, "eval.py", config, opts)
    aps = re.findall(r"(Easy|Medium|Hard)\s+Val AP: ([0-9.eE+-]+)", out)
    preds = sorted(glob.glob(str(work / "output/pred/**/*.txt"), recursive=True))
    if aps:
        perfect = widerface_perfect(src, [b for _, b in ims])
        line = "runs: WiderFaceMetric (in tree) printed " + ", ".join(f"{k} AP {v}" for k, v in aps)
        line += f"; on predictions equal to the ground truth it gives easy/medium/hard AP {perfect}"
    elif preds:
        line = (
            f"runs but scores nothing: WiderFaceMetric only writes {len(preds)} prediction txt(s) to output/pred; "
            "the AP needs WIDER FACE's external evaluation (eval_tools .m, or WiderFace-Evaluation), not in the tree"
        )
    else:
        raise SystemExit("tools/eval.py exited 0 but printed no AP and wrote no prediction txt")
    (work / "face-outcome.txt").write_text(line + "\n")


def widerface_perfect(src: Path, gts: list[list[tuple[int, int, int, int]]]) -> str:
    """The in-tree WiderFaceMetric fed predictions equal to the ground truth: AP 1.0 each, or the scorer is off."""
    import numpy as np
    import paddle

    ppdet_on_path(src)
    from ppdet.metrics import WiderFaceMetric

    metric = WiderFaceMetric()
    for boxes in gts:
        xywh = np.array(boxes, dtype="float32")
        pred = np.column_stack([np.zeros(len(xywh)), np.full(len(xywh), 0.9), xywh[:, :2], xywh[:, :2] + xywh[:, 2:]])
        ones = paddle.to_tensor(np.ones(len(xywh), dtype="float32"))
        data = {"gt_bbox": [xywh], "gt_ori_bbox": [paddle.to_tensor(xywh)]}
        data |= {f"gt_{k}_ignore": [ones] for k in ("easy", "medium", "hard")}
        metric.update(data, {"bbox": paddle.to_tensor(pred.astype("float32")), "bbox_num": [len(xywh)]})
    metric.accumulate()
    aps = [round(float(a), 4) for a in metric.aps]
    if aps != [1.0, 1.0, 1.0]:
        raise SystemExit(f"WiderFaceMetric gives {aps} on perfect predictions, not 1.0")
    return "/".join(map(str, aps))


STEPS = {
    "slim-import": step_slim_import,
    "slim-eval": step_slim_eval,
    "rotated-op": step_rotated_op,
    "rotated-eval": step_rotated_eval,
    "mot-eval": step_mot_eval,
    "face-eval": step_face_eval,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("step", choices=list(STEPS))
    ap.add_argument("--src", type=Path, required=True, help="the extracted PaddleDetection tree")
    ap.add_argument("--work", type=Path, required=True, help="the task's work directory (synthetic data, outputs)")
    args = ap.parse_args()
    return run_step(args.step, args.src, args.work)


if __name__ == "__main__":
    sys.exit(main())
