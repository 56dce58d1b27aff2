"""What a PaddleDetection config says about its evaluation, read through its `_BASE_` chain without ppdet.

Why its own module: `harness import` decides a row's dataset and task from the model's own config (timm's
`resolve_data_config`: facts come from the model), and that takes more than the annotation file's name: the
metric ppdet evaluates with, the class count, the whole `EvalDataset` (dataset_dir, anno_path, image_dir) and
the eval Resize. Configs are merged as ppdet merges them (bases in order, the including file last, mappings
merged key by key, everything else replaced), with PyYAML's safe loader reading ppdet's `!Tags` as plain data.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml


class _Untagged(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]  # libyaml when built
    """Safe YAML that reads ppdet's tags (`!COCODataSet`) as the plain data under them (libyaml's parser where
    PyYAML has it: `harness import --all` reads ~2700 config files through their `_BASE_` chains)."""


def _untag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    assert isinstance(node, yaml.ScalarNode)  # the third and last kind of YAML node
    return loader.construct_scalar(node)


_Untagged.add_multi_constructor("!", _untag)


@dataclass(frozen=True)
class EvalFacts:
    """The facts of a config's evaluation that decide which dataset and task a README row documents."""

    metric: str | None
    iou_type: str | None  # `IouType` (bottom-up keypoint models evaluate `metric: COCO` with `IouType: keypoints`)
    num_classes: int | None
    dataset_dir: str | None  # normalised: no leading ./, no trailing /
    anno_path: str | None
    image_dir: str | None
    eval_size: int | None  # the eval Resize's square target size, when it has one
    architecture: str | None = None  # `architecture:` (a tracker that needs a separate detector is not built)
    data_root: str | None = None  # a tracking config's EvalMOTDataset data_root: its folder of sequences

    def folder(self) -> str | None:
        """Where the evaluated data is under the dataset root: the sequences' folder of a tracking config
        (EvalMOTDataset's data_root), else the EvalDataset's image_dir."""
        return self.data_root or self.image_dir

    def shown(self) -> str:
        """One line for a reason or a finding: `metric COCO, 80 classes, dataset/coco annotations/...`."""
        where = " ".join(p for p in (self.dataset_dir, self.anno_path or self.data_root) if p) or "no EvalDataset"
        return f"metric {self.metric}, {self.num_classes} classes, {where}"


def _norm(path: Any) -> str | None:
    if path is None or path == "":
        return None
    text = str(PurePosixPath(str(path)))
    return text.removeprefix("./")


def _merge(into: dict, other: dict) -> dict:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            into[key] = _merge(dict(into[key]), value)
        else:
            into[key] = value
    return into


@functools.lru_cache(maxsize=4096)
def _parsed(path: str, mtime_ns: int, size: int) -> dict | None:
    """One config file as data, parsed once per file version (bases are shared by hundreds of configs)."""
    try:
        data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_Untagged) or {}  # a SafeLoader subclass
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def merged(config: Path, root: Path, depth: int = 0) -> dict | None:
    """The config with its `_BASE_` chain merged as ppdet merges it; None when it is not a YAML mapping.
    Bases outside the tree (or cycles deeper than 32) are left out, never read."""
    if depth > 32:
        return None
    try:
        st = config.stat()
    except OSError:
        return None
    own = _parsed(str(config), st.st_mtime_ns, st.st_size)
    if own is None:
        return None
    bases = own.get("_BASE_") or []
    out: dict = {}
    for base in [bases] if isinstance(bases, str) else bases:
        target = (config.parent / str(base)).resolve()
        if target.is_relative_to(root.resolve()) and target.is_file():
            out = _merge(out, merged(target, root, depth + 1) or {})
    return _merge(out, {k: v for k, v in own.items() if k != "_BASE_"})


def _eval_size(reader: Any) -> int | None:
    """The square target size of the eval reader's Resize (`[320, 320]`), if it has one."""
    transforms = reader.get("sample_transforms") if isinstance(reader, dict) else None
    for step in transforms if isinstance(transforms, list) else []:
        if isinstance(step, dict) and isinstance(step.get("Resize"), dict):
            size = step["Resize"].get("target_size")
            if isinstance(size, list) and len(size) == 2 and size[0] == size[1] and isinstance(size[0], int):
                return size[0]
            if isinstance(size, int):
                return size
    return None


def eval_facts(config: Path, root: Path) -> EvalFacts | None:
    """The config's EvalFacts, or None when it cannot be read as a config."""
    cfg = merged(config, root)
    if cfg is None:
        return None
    found = cfg.get("EvalDataset")
    ds: dict = found if isinstance(found, dict) else {}
    mot = cfg.get("EvalMOTDataset") if cfg.get("metric") in ("MOT", "MCMOT", "KITTI") else None
    if isinstance(mot, dict):  # a tracker is evaluated on sequences (tools/eval_mot.py), not on its EvalDataset
        ds = mot
    classes = cfg.get("num_classes")
    return EvalFacts(
        metric=str(cfg["metric"]) if cfg.get("metric") is not None else None,
        iou_type=str(cfg["IouType"]) if cfg.get("IouType") is not None else None,
        num_classes=classes if isinstance(classes, int) else None,
        dataset_dir=_norm(ds.get("dataset_dir")),
        anno_path=_norm(ds.get("anno_path")),
        image_dir=_norm(ds.get("image_dir")),
        eval_size=_eval_size(cfg.get("EvalReader")),
        architecture=str(cfg["architecture"]) if cfg.get("architecture") is not None else None,
        data_root=_norm(ds.get("data_root")),
    )
