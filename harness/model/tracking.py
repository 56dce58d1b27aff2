"""The eval of a JDE-style tracker (FairMOT, JDE: one checkpoint, detector and embedding in one model), as
PaddleDetection's `tools/eval_mot.py` runs it, with the harness's model.

eval_mot builds a `Tracker` (ppdet/engine/tracker.py), loads the config's weights into it and calls
`mot_evaluate` over the sorted sequences of `{dataset_dir}/{data_root}`: per sequence, the frames of `img1/`
through `EvalMOTReader`, the model's detections and embeddings into its `JDETracker`, one result file
`mot_results/<seq>.txt` (`frame,id,x,y,w,h,score,-1,-1,-1`), then its MOTMetric. Here the same `Tracker` and
`mot_evaluate` run, with two differences only: the Tracker holds the model the worker built and strictly
loaded (weights.load) instead of building and loading its own (ppdet's `create` answers the architecture with
it while the Tracker is made, so whatever the Tracker does to its model at construction it does to this one),
and ppdet's MOTMetric is not run: its summary is not the reported number, the harness scores the result
files itself (harness/core/motmetric.py), in the parent. ppdet's result files stay under
`predictions/mot_results/`; `mot.json` holds their rows, one object a line of each file, parsed as ppdet's
`read_mot_results` parses them, with the sequence named: the file the harness scores.

DeepSORT and ByteTrack (a detector and a ReID model, two checkpoints), CenterTrack and multi-class MCMOT
(`metric: MCMOT`) are not evaluated: refused by name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.files import atomic_write_bytes, digests
from harness.model import protocol

ARCHITECTURES = ("FairMOT", "JDE")  # ppdet's MOT_ARCH_JDE: one checkpoint, evaluated by _eval_seq_jde
OURS, RESULTS = "mot.json", "mot_results"


def is_tracker(cfg) -> bool:
    """A config whose eval is eval_mot's (a MOT metric), not tools/eval.py's."""
    return str(cfg.get("metric", "")) in ("MOT", "MCMOT", "KITTI")


def check(cfg, layout: str) -> None:
    """A tracker config on a mot dataset, of an architecture the harness evaluates; else a HarnessError."""
    metric, arch = str(cfg.get("metric", "")), cfg.architecture
    if not is_tracker(cfg):
        if layout == "mot":
            raise HarnessError(
                f"{arch} (metric {metric or 'unset'}) is not a tracker: a mot dataset is for MOT configs",
                hint="evaluate it on a detection dataset (its config's EvalDataset)",
            )
        return
    if layout != "mot":
        raise HarnessError(
            f"{arch} is a tracker (metric {metric}): it is evaluated on a mot dataset (MOTChallenge sequences), "
            f"not a {layout} one",
            hint="name a dataset with `layout: mot` for the model in the zoo file",
        )
    if metric != "MOT" or arch not in ARCHITECTURES:
        raise HarnessError(
            f"{arch} with metric {metric}: the harness evaluates single-checkpoint JDE-style trackers "
            f"({', '.join(ARCHITECTURES)}, metric MOT) only",
            hint="DeepSORT/ByteTrack (separate detector and ReID weights) and multi-class MCMOT are not built",
        )


def _tracker(cfg, model):
    """ppdet's Tracker in eval mode, holding `model`: its `create(architecture)` answered with it."""
    from ppdet.engine import tracker as module

    create = module.create
    module.create = lambda name, *a, **k: model if name == cfg.architecture else create(name, *a, **k)
    try:
        tracker = module.Tracker(cfg, mode="eval")
    finally:
        module.create = create
    if tracker.model is not model:
        raise HarnessError("ppdet's Tracker did not take the harness's model", hint="report this with the config")
    tracker._metrics = []  # the harness scores the result files itself (motmetric.py), in the parent
    return tracker


def evaluate(cfg, model, preds: Path) -> dict:
    """Track every sequence with ppdet's mot_evaluate; returns the answer's prediction fields."""
    from harness.fetch import motdata

    dataset = cfg["EvalMOTDataset"]
    data_root = f"{dataset.dataset_dir}/{dataset.data_root}"  # eval_mot's own join
    seqs = sorted(os.listdir(data_root))
    frames = sum(len(motdata.images(Path(data_root, s))) for s in seqs if os.path.isdir(os.path.join(data_root, s)))
    tracker = _tracker(cfg, model)
    done = [0]

    def progress(layer, inputs, outputs):  # one forward a frame: the parent's progress bar
        done[0] += 1
        print(f"{protocol.PROGRESS} {done[0]} {frames}", flush=True)

    hook = model.register_forward_post_hook(progress)
    try:
        tracker.mot_evaluate(
            data_root=data_root, seqs=seqs, output_dir=str(preds), data_type="mot", model_type=cfg.architecture
        )
    finally:
        hook.remove()
    rows = []
    for seq in seqs:
        path = preds / RESULTS / f"{seq}.txt"
        if path.is_file():
            rows.extend(read_results(seq, path))
    out = preds / OURS
    atomic_write_bytes(out, json.dumps(rows).encode())
    files = {"mot": str(out)}
    return {
        "predictions": files,
        "detections": {"mot": len(rows)},
        "num_images": done[0],
        "predictions_sha256": digests(files),
    }


def read_results(seq: str, path: Path) -> list[dict]:
    """One result file's lines as rows, parsed as read_mot_results parses a result (frame and id integers,
    box and score floats); a line it would skip (fewer than 7 fields) is an error: ppdet never writes one."""
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split(",")
        try:
            if len(fields) < 7:
                raise ValueError(f"{len(fields)} fields")
            rows.append(
                {
                    "sequence": seq,
                    "frame": int(fields[0]),
                    "id": int(fields[1]),
                    "bbox": [float(v) for v in fields[2:6]],
                    "score": float(fields[6]),
                }
            )
        except ValueError as exc:
            raise HarnessError(f"{path}:{n}: not a row of ppdet's MOT results ({exc}): {line[:80]!r}") from None
    return rows
