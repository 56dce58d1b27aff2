"""The layouts a dataset can have on disk, as one table: what PaddleDetection's eval reader is told to read.

A zoo names one dataset per model (COCO val2017 by default; VisDrone, Objects365, ... in COCO's json; COCO
keypoints; Pascal VOC; MOTChallenge sequences). Each layout is a row: how the worker points the config's
`EvalDataset` (a tracker's `EvalMOTDataset`) at the prepared
files (the only place the harness changes what a config reads), and which further files a dataset of the
layout names (`files:` in the zoo file, by role). Adding a layout is adding a row here and, where it is not
COCO json, its preparation in fetch/dataset.py.

No harness imports here: the zoo file validates `layout:` against this table, the worker reads it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

# (root, images dir, annotation file, further files by role) -> top-level config overrides
Overrides = Callable[[Path, Path, Path, Mapping[str, Path]], dict]


@dataclass(frozen=True)
class Layout:
    name: str
    label: str  # what a person calls it: "COCO json"
    overrides: Overrides
    files: tuple[str, ...] = ()  # roles of further files a dataset of this layout must name
    # its annotation file is COCO json (pycocotools loads it as the ground truth; --parallel cuts it into slices
    # by image); otherwise the layout's ground truth is read its own way (scoring's row) from the record's files
    coco_json: bool = True
    # it has an annotation file (`annotation_file` in the zoo file); a mot dataset has not: its ground truth is
    # each sequence's gt/gt.txt, and the dataset's `annotations` path is its root
    annotation_file: bool = True


def common_root(images: Path, annotations: Path) -> Path:
    """The directory ppdet's `dataset_dir` is: the deepest one holding both the images and the annotations."""
    return Path(os.path.commonpath([images, annotations]))


def _coco(root: Path, images: Path, annotations: Path, files: Mapping[str, Path]) -> dict:
    """COCODataSet: dataset_dir, image_dir and anno_path; the TestDataset too (its anno_path names the
    categories some configs read at build time)."""
    anno = str(annotations.relative_to(root))
    return {
        "EvalDataset": {"dataset_dir": str(root), "image_dir": str(images.relative_to(root)), "anno_path": anno},
        "TestDataset": {"dataset_dir": str(root), "anno_path": anno},
    }


def _coco_keypoints(root: Path, images: Path, annotations: Path, files: Mapping[str, Path]) -> dict:
    """ppdet's keypoint datasets (KeypointTopDownCocoDataset, KeypointBottomUpCocoDataset): dataset_dir, image_dir
    and anno_path, plus `img_prefix` and (bottom-up) `ann_file`, which these datasets derive from them when built:
    their configs declare them with a YAML tag (an object, not a dict), so the worker sets these as its attributes
    (model_build.merge_into_objects) on the object already built. The person boxes stay the config's
    (`use_gt_bbox`); a dataset that names a `bbox_file` (detected people, for configs that read them) gives
    its absolute path, which ppdet's os.path.join(dataset_dir, bbox_file) keeps as it is."""
    image_dir = str(images.relative_to(root))
    dataset = {
        "dataset_dir": str(root),
        "image_dir": image_dir,
        "anno_path": str(annotations.relative_to(root)),
        "img_prefix": os.path.join(str(root), image_dir),
        "ann_file": str(annotations),  # the bottom-up dataset's own join of the two, made when it was built
    }
    if "bbox_file" in files:
        dataset["bbox_file"] = str(files["bbox_file"])
    return {"EvalDataset": dataset}


def _voc(root: Path, images: Path, annotations: Path, files: Mapping[str, Path]) -> dict:
    """VOCDataSet: dataset_dir, the eval list (`IMAGE XML` lines, relative to dataset_dir/image_dir: the
    dataset's `image_dir`, usually `.`) and the label list, as an absolute path (ppdet joins it to dataset_dir,
    which keeps an absolute path as it is, and the label list need not lie under the common root of a subset's
    list and the images); the config's own `data_fields` stay. The TestDataset (an ImageFolder) names the label
    list too, as configs/datasets/voc.yml does."""
    labels = str(files["label_list"])
    return {
        "EvalDataset": {
            "dataset_dir": str(root),
            "image_dir": str(images.relative_to(root)),
            "anno_path": str(annotations.relative_to(root)),
            "label_list": labels,
        },
        "TestDataset": {"dataset_dir": str(root), "anno_path": labels},
    }


def _mot(root: Path, images: Path, annotations: Path, files: Mapping[str, Path]) -> dict:
    """MOTImageFolder (`EvalMOTDataset`, a tagged object: set as its attributes, model_build.merge_into_objects):
    `dataset_dir` the dataset's root, `data_root` its folder of sequences under it, which tools/eval_mot.py
    joins as `{dataset_dir}/{data_root}` and lists; its other fields (keep_ori_im) stay the config's."""
    return {"EvalMOTDataset": {"dataset_dir": str(root), "data_root": str(images.relative_to(root))}}


LAYOUTS: dict[str, Layout] = {
    row.name: row
    for row in (
        Layout("coco", "COCO json (instances)", _coco),
        Layout("coco-keypoints", "COCO keypoints json (person_keypoints)", _coco_keypoints),
        # Pascal VOC (and sets laid out like it): the eval list and the XML files come in the images' archive
        Layout("voc", "Pascal VOC (eval list, XML files, label list)", _voc, ("label_list",), coco_json=False),
        # MOTChallenge sequences (<seq>/img1, <seq>/gt/gt.txt, <seq>/seqinfo.ini) under `image_dir`
        Layout(
            "mot", "MOTChallenge sequences (img1, gt/gt.txt, seqinfo.ini)", _mot, coco_json=False, annotation_file=False
        ),
    )
}


def names() -> list[str]:
    return list(LAYOUTS)
