"""A Pascal VOC dataset as ppdet's VOCDataSet reads it: the eval list, the label list and one XML file an image.

What the harness scores a VOC model against (harness/core/vocmap.py), read the way ppdet reads it
(ppdet/data/source/voc.py), so that both sides see the same ground truth:
- the eval list (`test.txt`): a line `IMAGE XML` per image, both relative to the dataset root;
- the label list (`label_list.txt`): a class name a line, its id its line number (a name listed twice keeps
  its last id, as ppdet's dict does);
- an XML file: `size/width`, `size/height`, objects with `name`, `difficult` (absent: 0; any other integer
  than 0 is difficult) and `bndbox`; each box is clipped to [0, width - 1] x [0, height - 1] and kept only if
  it still has an area (x2 > x1 and y2 > y1), as float32. An image whose width or height is negative is left
  out, as ppdet leaves it out.

The files are the dataset's, from the internet: the XML parser refuses document type declarations (no
entity can be declared, so none expands: neither a billion laughs nor an external file), a file over 4 MiB,
and a path in a list that leaves the dataset root. Every refusal names the file and the line.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath
from typing import NoReturn
from xml.parsers import expat

import numpy as np

from harness.core.errors import DatasetError, DatasetRecordError
from harness.core.vocmap import GroundTruth, Image

MAX_XML = 4 << 20  # bytes: a VOC annotation is about 1 KB


def parse_xml(path: Path) -> ET.Element:
    """The XML file's root element, parsed with every declaration refused (see the module's docstring)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_XML:
        raise DatasetRecordError(f"{path}: {len(data)} bytes, more than a VOC annotation ({MAX_XML} at most)")

    def refuse(*_) -> NoReturn:
        raise DatasetRecordError(
            f"{path}: declares a document type or entities, which a VOC annotation never does; refused",
            hint="use the dataset's own annotation files",
        )

    builder = ET.TreeBuilder()
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise DatasetRecordError(f"{path}: not well-formed XML ({exc})") from None
    return builder.close()


def _inside(root: Path, relative: str, where: str) -> Path:
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts:
        raise DatasetRecordError(f"{where}: {relative!r} leaves the dataset root", hint="list paths inside the root")
    return root / pure


def key(relative: str) -> str:
    """An image's key: its path as the eval list gives it, normalised (`./JPEGImages/a.jpg` is `JPEGImages/a.jpg`).
    The worker writes the same key for each prediction (worker.py), from the file ppdet loaded the image from."""
    return os.path.normpath(relative).replace(os.sep, "/")


def read_list(path: Path, root: Path) -> list[tuple[str, Path, Path]]:
    """(key, image path, XML path) for every line of the eval list, in its order; a line ppdet could not split
    into two paths, a path outside the root or an image listed twice is an error naming the line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot be read as the eval list ({exc})") from None
    out, seen = [], set()
    for n, line in enumerate(lines, 1):
        where = f"{path}, line {n}"
        parts = line.strip().split()
        if len(parts) < 2:
            raise DatasetRecordError(f"{where}: {line!r} is not `IMAGE XML`", hint="one `IMAGE XML` pair a line")
        image, xml = _inside(root, parts[0], where), _inside(root, parts[1], where)
        k = key(parts[0])
        if k in seen:
            raise DatasetRecordError(f"{where}: {parts[0]} is listed twice", hint="list each image once")
        seen.add(k)
        out.append((k, image, xml))
    if not out:
        raise DatasetError(f"{path}: lists no image", hint="the eval list has a line `IMAGE XML` per image")
    return out


def read_labels(path: Path) -> list[str]:
    """The class names in id order, each line stripped (ppdet's label_list reading)."""
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot be read as the label list ({exc})") from None


def _number(element: ET.Element | None, what: str, path: Path, kind=float):
    if element is None or element.text is None:
        raise DatasetRecordError(f"{path}: no {what}", hint="a VOC annotation has size/width, size/height, bndbox")
    try:
        return kind(element.text)
    except ValueError:
        raise DatasetRecordError(f"{path}: {what} {element.text!r} is not a number") from None


def parse_annotation(path: Path, ids: dict[str, int]) -> Image | None:
    """One image's ground truth as VOCDataSet makes it (the module's docstring); None for an image ppdet leaves
    out (a negative width or height). `ids`: class name -> id."""
    root = parse_xml(path)
    size = root.find("size")
    width = _number(None if size is None else size.find("width"), "size/width", path)
    height = _number(None if size is None else size.find("height"), "size/height", path)
    if width < 0 or height < 0:
        return None
    boxes, labels, difficult = [], [], []
    for obj in root.findall("object"):
        flag = obj.find("difficult")
        hard = _number(flag, "object/difficult", path, int) if flag is not None else 0
        box = obj.find("bndbox")
        x1, y1, x2, y2 = (
            _number(None if box is None else box.find(c), f"object/bndbox/{c}", path)
            for c in ("xmin", "ymin", "xmax", "ymax")
        )
        x1, y1, x2, y2 = max(0, x1), max(0, y1), min(width - 1, x2), min(height - 1, y2)
        if not (x2 > x1 and y2 > y1):
            continue  # ppdet drops a box without area (after clipping), with a warning
        name = obj.find("name")
        cname = name.text if name is not None else None
        if cname not in ids:
            raise DatasetRecordError(
                f"{path}: an object of class {cname!r}, which the label list does not name",
                hint="the label list must name every class of the annotations",
            )
        boxes.append([x1, y1, x2, y2])
        labels.append(ids[cname])
        difficult.append(hard != 0)
    return Image(
        boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
        labels=np.array(labels, dtype=np.int64),
        difficult=np.array(difficult, dtype=bool),
    )


def ground_truth(root: Path, eval_list: Path, label_list: Path) -> GroundTruth:
    """The eval set's ground truth, image by image in list order (what harness/core/vocmap.py scores against)."""
    classes = read_labels(label_list)
    ids = {name: i for i, name in enumerate(classes)}  # a repeated name keeps its last id, as ppdet's dict
    images = {}
    for k, _, xml in read_list(eval_list, root):
        if (im := parse_annotation(xml, ids)) is not None:
            images[k] = im
    return GroundTruth(classes=classes, images=images)
