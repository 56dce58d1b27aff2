"""Pascal VOC mAP: the harness's own scorer (harness/core/vocmap.py) and its ground truth (harness/fetch/vocdata.py).

Paddle-free: hand-computed cases and the reader's refusals. Stack-marked: the differential test, the harness's mAP
against ppdet's own VOCDataSet + VOCMetric (DetectionMAP) on the same synthetic data and predictions, both map
types, many random cases (difficult boxes, clipped and dropped boxes, empty images, classes without ground
truth, duplicate detections, tied scores, ppdet's no-detection rows): equal to the last bit.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from synthetic_voc import synthetic_voc

from harness.core.errors import DatasetError, DatasetRecordError
from harness.core.vocmap import GroundTruth, Image, VocScoreError, score
from harness.fetch import vocdata
from harness.zoo import kinds


def _gt(**images: list[tuple[int, list[float], bool]]) -> GroundTruth:
    return GroundTruth(
        classes=["cat", "dog"],
        images={
            k: Image(
                boxes=np.array([b for _, b, _ in objs], dtype=np.float32).reshape(-1, 4),
                labels=np.array([c for c, _, _ in objs], dtype=np.int64),
                difficult=np.array([d for _, _, d in objs], dtype=bool),
            )
            for k, objs in images.items()
        },
    )


def _det(image: str, label: int, box: list[float], s: float) -> dict:
    return {"image": image, "category_id": label, "bbox": box, "score": s}


def test_difficult_duplicates_and_misses_as_ppdet_counts_them():
    gt = _gt(a=[(0, [0, 0, 9, 9], False), (0, [20, 20, 29, 29], True)])
    dets = [
        _det("a", 0, [50, 50, 59, 59], 0.95),  # nothing there: false positive
        _det("a", 0, [0, 0, 9, 9], 0.9),  # true positive
        _det("a", 0, [0, 0, 9, 9], 0.8),  # the same object again: false positive
        _det("a", 0, [20, 20, 29, 29], 0.7),  # the difficult one: ignored
        _det("a", -1, [0, 0, 0, 0], 0.0),  # ppdet's no-detection row: not a detection
    ]
    # one object counts (the other is difficult); ranked FP, TP, FP: precision 1/2 at recall 1
    assert score(gt, dets) == {"AP": 0.5}
    assert score(gt, dets, map_type="integral") == {"AP": 0.5}


def test_both_map_types_and_a_class_without_ground_truth():
    gt = _gt(a=[(0, [0, 0, 9, 9], False)], b=[(0, [0, 0, 19, 9], False)])
    dets = [
        _det("a", 0, [0, 0, 9, 9], 0.9),
        _det("a", 0, [30, 30, 39, 39], 0.8),
        _det("b", 0, [0, 0, 19, 9], 0.7),
        _det("b", 1, [0, 0, 19, 9], 0.99),  # dogs have no ground truth: left out of the mean
    ]
    # precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1: 11 points: 6 x 1 + 5 x 2/3; integral: 1/2 + 2/3 x 1/2
    assert score(gt, dets)["AP"] == pytest.approx((6 + 5 * 2 / 3) / 11, abs=1e-15)
    assert score(gt, dets, map_type="integral")["AP"] == pytest.approx(0.5 + 1 / 3, abs=1e-15)
    assert score(gt, [])["AP"] == 0.0  # a class with ground truth and no detection: 0


def test_equal_scores_keep_the_eval_order():
    """Ranks among equal scores follow the order the images were evaluated in (ppdet's stable sort), so the
    predictions' order is part of the score: the worker keeps ppdet's."""
    gt = _gt(a=[(0, [0, 0, 9, 9], False)], b=[(0, [0, 0, 9, 9], False)])
    hit_a, miss_b, hit_b = (
        _det("a", 0, [0, 0, 9, 9], 0.5),
        _det("b", 0, [40, 40, 49, 49], 0.5),
        _det("b", 0, [0, 0, 9, 9], 0.4),
    )
    first = score(gt, [hit_a, miss_b, hit_b], map_type="integral")["AP"]
    second = score(gt, [miss_b, hit_b, hit_a], map_type="integral")["AP"]
    assert first == pytest.approx(0.5 + 1 / 3) and second == pytest.approx(0.25 + 1 / 3)


def test_predictions_it_cannot_score_are_named():
    gt = _gt(a=[(0, [0, 0, 9, 9], False)])
    with pytest.raises(VocScoreError, match="'z', which is not in the eval list"):
        score(gt, [_det("z", 0, [0, 0, 9, 9], 0.5)])
    with pytest.raises(VocScoreError, match="class id 7: the label list has 2"):
        score(gt, [_det("a", 7, [0, 0, 9, 9], 0.5)])
    with pytest.raises(VocScoreError, match="map_type 'area'"):
        score(gt, [], map_type="area")


def test_the_voc_kind_is_a_row():
    kind = kinds.by_file("voc")
    assert kind is kinds.KINDS["voc"] and kind.headline == "voc_ap" and kind.stats == ("AP",)
    assert kinds.by_file("bbox") is kinds.KINDS["box"]  # ppdet's VOC bbox.json never reaches the table
    assert kinds.of_metric("voc_ap") is kind and kinds.of_metric("voc_ap50") is None


def test_ground_truth_as_vocdataset_reads_it(tmp_path):
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "label_list.txt").write_text("cat\ndog\n")
    objs = [
        ("cat", "<difficult>0</difficult>", (-5, 2, 50, 70)),  # clipped to [0, 2, 50, 59] (height 60)
        ("dog", "<difficult>2</difficult>", (10, 10, 20, 20)),  # any non-zero is difficult
        ("bird", "", (5, 5, 5, 9)),  # no area: dropped before its class is looked up, as ppdet does
        ("dog", "", (1, 1, 3, 3)),  # no <difficult>: 0
    ]
    body = "".join(
        f"<object><name>{n}</name>{d}<bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{e}</ymax>"
        f"</bndbox></object>"
        for n, d, (a, b, c, e) in objs
    )
    (root / "Annotations" / "a.xml").write_text(
        f"<annotation><size><width>80</width><height>60</height></size>{body}</annotation>"
    )
    (root / "Annotations" / "b.xml").write_text(
        "<annotation><size><width>-1</width><height>5</height></size></annotation>"
    )
    (root / "test.txt").write_text("./JPEGImages/a.jpg Annotations/a.xml\nJPEGImages/b.jpg Annotations/b.xml\n")
    gt = vocdata.ground_truth(root, root / "test.txt", root / "label_list.txt")
    assert list(gt.images) == ["JPEGImages/a.jpg"]  # b: a negative width, left out as ppdet leaves it out
    a = gt.images["JPEGImages/a.jpg"]
    assert a.boxes.dtype == np.float32 and a.boxes.tolist() == [[0, 2, 50, 59], [10, 10, 20, 20], [1, 1, 3, 3]]
    assert a.labels.tolist() == [0, 1, 1] and a.difficult.tolist() == [False, True, False]


@pytest.mark.parametrize(
    "xml, error",
    [
        (
            '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xx"><!ENTITY y "&x;&x;">]><annotation>&y;</annotation>',
            "declares a document type",
        ),
        ('<!DOCTYPE a SYSTEM "file:///etc/passwd"><annotation/>', "declares a document type"),
        ("<annotation><size>", "not well-formed"),
        ("<annotation><size><width>wide</width><height>1</height></size></annotation>", "'wide' is not a number"),
        ("<annotation></annotation>", "no size/width"),
        (
            "<annotation><size><width>9</width><height>9</height></size><object><name>cow</name><bndbox>"
            "<xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>",
            "class 'cow', which the label list does not name",
        ),
    ],
)
def test_hostile_or_broken_annotations_are_refused_by_name(tmp_path, xml, error):
    path = tmp_path / "a.xml"
    path.write_text(xml)
    with pytest.raises(DatasetRecordError, match=error) as info:
        vocdata.parse_annotation(path, {"cat": 0})
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "lines, error",
    [
        ("JPEGImages/a.jpg\n", "is not `IMAGE XML`"),
        ("../a.jpg Annotations/a.xml\n", "leaves the dataset root"),
        ("JPEGImages/a.jpg /etc/a.xml\n", "leaves the dataset root"),
        ("JPEGImages/a.jpg Annotations/a.xml\nJPEGImages/./a.jpg Annotations/b.xml\n", "listed twice"),
    ],
)
def test_an_eval_list_it_cannot_follow_is_refused_by_line(tmp_path, lines, error):
    (tmp_path / "test.txt").write_text(lines)
    with pytest.raises(DatasetRecordError, match=error):
        vocdata.read_list(tmp_path / "test.txt", tmp_path)
    (tmp_path / "test.txt").write_text("")
    with pytest.raises(DatasetError, match="lists no image"):
        vocdata.read_list(tmp_path / "test.txt", tmp_path)


def test_the_synthetic_set_reads_back(tmp_path):
    voc = synthetic_voc(tmp_path / "voc", 5, empty=(2,), use=3)
    gt = vocdata.ground_truth(voc.root, voc.eval_list, voc.label_list)
    assert len(gt.classes) == 20 and list(gt.images) == [f"JPEGImages/{n}.jpg" for n in voc.names]
    assert gt.images[f"JPEGImages/{voc.names[2]}.jpg"].labels.size == 0
    assert {int(x) for im in gt.images.values() for x in im.labels} <= {0, 1, 2}


# ---- the differential test: ppdet's own VOCDataSet and VOCMetric on the same data and predictions ----

PPDET_SIDE = r"""
import json, os, sys
import numpy as np
from ppdet.data.source.voc import VOCDataSet
from ppdet.metrics import VOCMetric

out = []
for case in json.load(open(sys.argv[1])):
    ds = VOCDataSet(dataset_dir=case["root"], anno_path="test.txt", label_list="label_list.txt",
                    data_fields=["image", "gt_bbox", "gt_class", "difficult"], allow_empty=case["allow_empty"])
    ds.parse_dataset()
    metric = VOCMetric(os.path.join(case["root"], "label_list.txt"), class_num=20, map_type=case["map_type"])
    order = []
    for rec in ds.roidbs:
        key = os.path.normpath(os.path.relpath(rec["im_file"], case["root"]))
        order.append(key)
        rows = case["predictions"].get(key, [])
        bbox = np.array(rows, dtype=np.float32).reshape(-1, 6)
        inputs = {"gt_bbox": [rec["gt_bbox"]], "gt_class": [rec["gt_class"]], "difficult": [rec["difficult"]],
                  "scale_factor": np.ones((1, 2), dtype="float32")}  # an eval batch of one image, not resized
        metric.update(inputs, {"bbox": bbox, "bbox_num": np.array([len(bbox)])})
    metric.accumulate()
    out.append({"map": metric.get_results()["bbox"][0], "order": order})
json.dump(out, open(sys.argv[2], "w"))
"""


def _predictions(rng: random.Random, gt: GroundTruth, tie: bool) -> dict[str, list[list[float]]]:
    """Per image, ppdet's rows [label, score, x1, y1, x2, y2]: jittered copies of the objects (the IoU around
    0.5 either way), duplicates, wrong classes, classes without ground truth, random boxes, no-detection rows."""
    out = {}
    for k, im in gt.images.items():
        rows = []
        for box, label in zip(im.boxes.tolist(), im.labels.tolist(), strict=True):
            for _ in range(rng.choice([0, 1, 1, 2, 3])):
                w, h = box[2] - box[0], box[3] - box[1]
                j = rng.uniform(0, 0.45)
                b = [box[0] + rng.uniform(-j, j) * w, box[1] + rng.uniform(-j, j) * h]
                b += [box[2] + rng.uniform(-j, j) * w, box[3] + rng.uniform(-j, j) * h]
                cls = label if rng.random() < 0.85 else rng.randrange(20)
                rows.append([cls, rng.random(), *b])
        for _ in range(rng.randrange(4)):
            x, y = rng.uniform(-5, 90), rng.uniform(-5, 60)
            rows.append([rng.randrange(20), rng.random(), x, y, x + rng.uniform(1, 40), y + rng.uniform(1, 40)])
        if tie:
            for r in rows:
                # many equal scores: the eval order decides their ranks (never 0, the score of ppdet's no-detection
                # row, which its DetectionMAP files as a false positive of the last class: vocmap.score)
                r[1] = max(round(r[1], 1), 0.1)
        rng.shuffle(rows)  # the model's order, not the score's: ppdet matches in this order
        if not rows and rng.random() < 0.5:
            rows = [[-1, 0.0, 0.0, 0.0, 0.0, 0.0]]  # ppdet's post-process when nothing is detected
        out[k] = [[float(np.float32(v)) for v in r] for r in rows]  # ppdet's outputs are float32
    return out


@pytest.mark.stack
def test_the_harness_map_is_ppdets_voc_metric(tmp_path, ppdet_root):
    cases, mine = [], []
    for seed in range(24):
        rng = random.Random(seed)
        voc = synthetic_voc(
            tmp_path / f"voc{seed}",
            rng.randint(4, 12),
            seed=seed,
            use=rng.choice([2, 4, 20]),
            empty=tuple(i for i in range(12) if rng.random() < 0.2),
            objects=(0, rng.choice([3, 6])),
            difficult=rng.choice([0.0, 0.3, 0.7]),
        )
        gt = vocdata.ground_truth(voc.root, voc.eval_list, voc.label_list)
        preds = _predictions(rng, gt, tie=seed % 3 == 0)
        allow_empty = seed % 2 == 1  # ppdet's default leaves images without objects out; with allow_empty they count
        for map_type in ("11point", "integral"):
            cases.append(
                {"root": str(voc.root), "map_type": map_type, "allow_empty": allow_empty, "predictions": preds}
            )
            mine.append(gt)
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    subprocess.run(
        [sys.executable, "-c", PPDET_SIDE, str(tmp_path / "cases.json"), str(tmp_path / "theirs.json")],
        cwd=ppdet_root,
        check=True,
        capture_output=True,
        timeout=600,
    )
    theirs = json.loads((tmp_path / "theirs.json").read_text())
    got, want = [], []
    for case, gt, ppdet in zip(cases, mine, theirs, strict=True):
        rows = [  # in ppdet's eval order, as the worker writes them
            {"image": k, "category_id": int(r[0]), "score": r[1], "bbox": r[2:]}
            for k in ppdet["order"]
            for r in case["predictions"].get(k, [])
        ]
        got.append(score(gt, rows, map_type=case["map_type"])["AP"])
        want.append(ppdet["map"])
    assert got == want  # to the last bit, every case
    covered = {  # what the cases hold, so that equality is not over easy cases only
        "difficult": any(im.difficult.any() for gt in mine for im in gt.images.values()),
        "empty images": any(im.labels.size == 0 for gt in mine for im in gt.images.values()),
        "classes without ground truth": any(
            r[0] >= 0 and not any((im.labels == int(r[0])).any() for im in gt.images.values())
            for case, gt in zip(cases, mine, strict=True)
            for rows in case["predictions"].values()
            for r in rows
        ),
        "no-detection rows": any(r[0] < 0 for case in cases for rows in case["predictions"].values() for r in rows),
    }
    assert all(covered.values()), covered
    assert len(set(want)) > 30 and sum(0 < w < 1 for w in want) > 40  # the cases differ, and are not trivial


@pytest.fixture
def ppdet_root(ppdet_archive, cache) -> Path:
    """The stack's PaddleDetection tree, extracted as the harness extracts it."""
    from conftest import REPO, ppdet_tree

    from harness.fetch import source
    from harness.zoo.manifest import Source, load_zoo

    zoo, _ = load_zoo(REPO / "zoo.yaml")
    _, pin = zoo.source()
    archive = {"url": str(ppdet_archive(pin.commit))}
    return source.prepare(
        Source(repository="unused", commit=pin.commit, tree=ppdet_tree(pin.commit), paddle=pin.paddle, archive=archive)
    ).root
