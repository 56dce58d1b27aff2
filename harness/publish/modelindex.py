"""The zoo as an OpenMMLab model-index (model-index.yml + one metafile per table), for tools that read it.

Each README table is a collection; each model lists its documented metrics (box ones as "Object Detection",
mask ones as "Instance Segmentation") and its README labels as metadata. Measured results of a run can be
added: each model then also lists its measured values and inference time.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import yaml

from harness.core.errors import HarnessError
from harness.core.files import atomic_write_bytes
from harness.records.results import Result
from harness.zoo.kinds import KINDS, of_metric
from harness.zoo.manifest import Model, Zoo


def _label(metric: str) -> str:
    """`box_ap` -> `box AP`, `mask_ap50` -> `mask AP50`, `kpt_arm` -> `kpt ARm`: the statistic as its kind spells
    it (kinds.py), model-index's spelling."""
    kind = of_metric(metric)
    prefix, stat = metric.split("_", 1)
    spelled = next((s for s in kind.stats if s.lower() == stat), stat) if kind is not None else stat
    return f"{prefix} {spelled}"


def _dataset(name: str) -> str:
    """A result's `Dataset` as model-index readers name it: COCO for the COCO val2017 sets (boxes, masks and
    keypoints, as OpenMMLab's metafiles write it), else the zoo's dataset name (`visdrone-det-val`)."""
    return "COCO" if name.startswith("coco-val2017") else name


def _model(m: Model, collection: str, rec: Result | None, dataset: str = "coco-val2017") -> dict:
    results = []
    for kind in KINDS.values():
        mine = {_label(k): v for k, v in m.expected.items() if k.startswith(f"{kind.prefix}_")}
        for k in (k for k in m.expected if k.startswith(f"{kind.prefix}_")):
            measured = rec.measured(k) if rec is not None else None
            if measured is not None:
                mine[f"measured {_label(k)}"] = round(measured, 2)
        if mine:
            results.append({"Task": kind.task, "Dataset": _dataset(dataset), "Metrics": mine})
    meta: dict = {str(k): v for k, v in m.labels.items()}
    timing = rec.timing if rec is not None else None
    if timing is not None and timing.fps and timing.backend:
        b = timing.backends[timing.backend]
        meta["inference time (ms/im)"] = [
            {
                "value": round(b.latency_ms["end_to_end"].p50, 1),
                "batch size": 1,
                "mode": b.config.get("precision", "fp32").upper(),
                "backend": timing.backend,
                "hardware": timing.device_name,
                "resolution": list(timing.eval_size or []),
            }
        ]
    return {
        "Name": m.name,
        "In Collection": collection,
        "Config": m.config,
        "Metadata": meta,
        "Results": results,
        "Weights": m.weights.url,
    }


def _slug(name: str) -> str:
    """A table's metafile name: its name where that is a plain file name, else the name's ASCII part and a digest
    of the whole name, so that tables whose names differ only outside ASCII (`picodet`, `picodet: 量化`) never
    share a file (one would overwrite the other, and model-index.yml would import it twice)."""
    plain = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "zoo"
    if plain == name:
        return plain
    return f"{plain}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def export(zoo: Zoo, out: Path, records: list[Result] | None = None) -> list[Path]:
    measured = {r.model: r for r in records or []}
    groups: dict[str, list[Model]] = {}
    for m in zoo.models:
        groups.setdefault(m.table or "zoo", []).append(m)
    files, imports = [out / "model-index.yml"], []
    for name, models in groups.items():
        table = zoo.tables.get(name)
        rel = f"metafiles/{_slug(name)}.yml"
        if rel in imports:  # two names with one slug and one digest prefix: never overwrite a table's file
            raise HarnessError(f"model-index export: tables {name!r} and another share the file {rel}")
        collection = {"Name": name, "Metadata": {"README": table.readme} if table and table.readme else {}}
        meta = {
            "Collections": [collection],
            "Models": [_model(m, name, measured.get(m.name), zoo.dataset_of(m).name) for m in models],
        }
        atomic_write_bytes(out / rel, yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).encode())
        files.append(out / rel)
        imports.append(rel)
    atomic_write_bytes(files[0], yaml.safe_dump({"Import": imports}, sort_keys=False).encode())
    return files
