"""Which task and dataset a README row documents, decided by its model's config (datasets.yaml, as data).

A row is judged on the dataset its config evaluates on: `metric:` names the task (COCO-format detection,
keypoints, VOC, tracking, ...), the EvalDataset's dataset_dir and anno_path plus num_classes name the dataset.
COCO val2017 is exactly `dataset/coco` + `annotations/instances_val2017.json` + 80 classes: a one-class detector
whose config happens to read that file (PicoDet's pedestrian model, a private dataset laid out like COCO) is not
a COCO val2017 model. Every outcome that is not an importable (task, dataset) says why, in words a maintainer
can act on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from harness.zoo.configs import EvalFacts
from harness.zoo.kinds import KINDS
from harness.zoo.layouts import LAYOUTS

TABLE = Path(__file__).with_name("datasets.yaml")


@dataclass(frozen=True)
class Task:
    metric: str  # ppdet's `metric:` value
    label: str
    kind: str | None = None  # kinds.KINDS prefix its numbers are judged as; None: not evaluated
    metrics: dict[str, str] = field(default_factory=dict)  # README column metric -> the kind's metric
    reason: str | None = None  # why it is not evaluated (tasks of harness/zoo/tasks.yaml say it there)
    task: str | None = None  # a row of tasks.yaml (slim, rotated, mot, face): its measured reason
    # A table heading (any level above it) that says its numbers are of a split without public ground truth,
    # scored by the benchmark's own server (MOTChallenge's test sets): such rows are not judged.
    server_split: str | None = None
    server_scored: bool = False  # every README number of the task is a server's (DOTA test): no one re-measures it

    def metric_of(self, column_metric: str) -> str | None:
        """What a README column's metric (`box_ap50`) means for this task (`kpt_ap50`, `voc_ap`)."""
        if column_metric in self.metrics:
            return self.metrics[column_metric]
        if (self.kind == "box" and column_metric.startswith("box_")) or column_metric.startswith("mask_"):
            return column_metric
        return None


@dataclass(frozen=True)
class Known:
    name: str
    match: dict[str, Any]
    entry: dict[str, Any] | None  # None for the zoo's default dataset
    default: bool = False
    kind: str = "box"  # the kind of ground truth it holds (kinds.KINDS): only tasks judged as that kind are on it

    def zoo_entry(self, facts: EvalFacts) -> dict[str, Any]:
        """The zoo file's `datasets.<name>`: the table's entry, image_dir and annotation_file the config's own."""
        assert self.entry is not None
        own = {"image_dir": facts.folder() or ".", "annotation_file": facts.anno_path}
        return {**{k: v for k, v in own.items() if v is not None}, **self.entry}


@dataclass(frozen=True)
class Identified:
    task: Task | None
    dataset: Known | None
    reason: str | None  # set when the row cannot be imported
    server: bool = False  # the reason: its numbers are a benchmark server's (no public ground truth)


@cache
def _table() -> dict:
    return yaml.safe_load(TABLE.read_text(encoding="utf-8"))


@cache
def tasks() -> dict[str, Task]:
    return {k: Task(metric=k, **v) for k, v in _table()["tasks"].items()}


@cache
def known() -> list[Known]:
    return [
        Known(name, row["match"], row.get("entry"), bool(row.get("default")), row.get("kind", "box"))
        for name, row in _table()["datasets"].items()
    ]


def _matches(match: dict[str, Any], facts: EvalFacts) -> bool:
    """Every key of `match` equals the config's fact, or is one of a list (one dataset laid out under two names)."""
    return all(getattr(facts, k) in v if isinstance(v, list) else getattr(facts, k) == v for k, v in match.items())


def identify(facts: EvalFacts) -> Identified:
    """The row's task and dataset, or why it has none the harness evaluates."""
    task = tasks().get(f"{facts.metric}/{facts.iou_type}") or tasks().get(facts.metric or "")
    if task is None:
        return Identified(None, None, f"a task the harness does not know (metric {facts.metric})")
    if task.kind is None:
        return Identified(task, None, f"{task.label}: {task.reason or 'not evaluated'}", task.server_scored)
    if task.kind not in KINDS:
        return Identified(task, None, f"{task.label}: the {task.kind} kind is not in this harness's kinds table")
    for ds in known():
        if _matches(ds.match, facts) and ds.kind == task.kind:
            layout = (ds.entry or {}).get("layout", "coco")
            if layout not in LAYOUTS:
                return Identified(
                    task, None, f"{task.label}: the {layout} layout is not in this harness's layouts table"
                )
            return Identified(task, ds, None)
    for row in _table()["not_imported"]:
        if _matches(row["match"], facts):
            return Identified(task, None, f"{row['reason']} ({facts.shown()})", bool(row.get("server_scored")))
    return Identified(task, None, f"a dataset the harness does not know ({facts.shown()})")
