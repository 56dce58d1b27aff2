"""The zoo as an OpenMMLab model-index (model-index.yml + a metafile), for tools that read that format.

Measured results of a run can be added: each model then also lists its measured AP and inference time.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from harness.files import atomic_write_bytes
from harness.manifest import Zoo

PAPER = {"Title": "Res2Net: A New Multi-scale Backbone Architecture", "URL": "https://arxiv.org/abs/1904.01169"}
EPOCHS = {"1x": 12, "2x": 24}


def metafile(zoo: Zoo, records: list[dict] | None = None) -> dict:
    measured = {r["model"]: r for r in records or []}
    models = []
    for m in zoo.models:
        results = [{"Task": "Object Detection", "Dataset": "COCO", "Metrics": {"box AP": m.metrics.box_ap}}]
        if m.metrics.mask_ap is not None:
            results.append({"Task": "Instance Segmentation", "Dataset": "COCO",
                            "Metrics": {"mask AP": m.metrics.mask_ap}})
        meta = {"Training Resources": "8x GPUs", "Batch Size": 8 * m.images_per_gpu,
                "Epochs": EPOCHS.get(m.schedule, m.schedule), "Backbone": m.backbone}
        rec = measured.get(m.name)
        if rec:
            for r in results:
                key = "box AP" if r["Task"] == "Object Detection" else "mask AP"
                metric = (rec.get("metrics") or {}).get("box_ap" if key == "box AP" else "mask_ap") or {}
                if metric.get("measured") is not None:
                    r["Metrics"][f"measured {key}"] = round(metric["measured"], 2)
            timing = rec.get("timing") or {}
            if timing.get("fps"):
                b = timing["backends"][timing["backend"]]
                meta["inference time (ms/im)"] = [{
                    "value": round(b["latency_ms"]["end_to_end"]["p50"], 1), "batch size": 1,
                    "mode": b["config"].get("precision", "fp32").upper(), "backend": timing["backend"],
                    "hardware": timing.get("device_name"),
                    "resolution": list(timing.get("eval_size") or [800, 1333])}]
        models.append({"Name": m.name, "In Collection": "Res2Net", "Config": m.config, "Metadata": meta,
                       "Results": results, "Weights": m.weights.url})
    return {"Collections": [{"Name": "Res2Net", "Metadata": {"Architecture": ["Res2Net", "FPN"]},
                             "Paper": PAPER}], "Models": models}


def export(zoo: Zoo, out: Path, records: list[dict] | None = None) -> list[Path]:
    meta_rel = "configs/res2net/metafile.yml"
    files = [out / "model-index.yml", out / meta_rel]
    atomic_write_bytes(files[0], yaml.safe_dump({"Import": [meta_rel]}, sort_keys=False).encode())
    atomic_write_bytes(files[1], yaml.safe_dump(metafile(zoo, records), sort_keys=False, allow_unicode=True).encode())
    return files
