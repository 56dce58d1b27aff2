"""Tracking (kind `mot`): the harness's MOTA/IDF1 scorer (harness/core/motmetric.py), the mot layout's dataset
(harness/fetch/motdata.py, fetch/dataset.py) and the worker's result rows (harness/model/tracking.py).

Paddle-free: hand-made cases that must move the numbers (a shifted track, an id switch, an ignore region, frames
without results) and the dataset's refusals. Stack-marked: the differential test, the harness's MOTA and IDF1
against ppdet's own MOTEvaluator + get_summary (the OVERALL row tools/eval_mot.py prints) on many random cases
written as files (gt rows of every kind MOT16 has, jittered, dropped, swapped and spurious tracks, frames
without results, sequences with and without MOTChallenge names): equal to the last bit.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core import motmetric
from harness.core.errors import DatasetError, DatasetRecordError, UsageError
from harness.fetch import dataset, motdata
from harness.model.tracking import read_results
from harness.nightly.synthetic import synthetic_mot
from harness.score import scoring
from harness.zoo import kinds
from harness.zoo.manifest import Dataset


def _seq(folder: Path, name: str, rows: list[str], frames: int = 3) -> Path:
    seq = folder / name
    (seq / "gt").mkdir(parents=True)
    (seq / "img1").mkdir()
    for f in range(1, frames + 1):
        (seq / "img1" / f"{f:06d}.jpg").write_bytes(b"")
    (seq / "gt" / "gt.txt").write_text("".join(r + "\n" for r in rows))
    (seq / "seqinfo.ini").write_text(f"[Sequence]\nname={name}\nframeRate=30\nseqLength={frames}\n")
    return seq


WALK = [f"{f},1,{10 + 5 * f},20,30,60,1,1,1" for f in (1, 2, 3)] + [
    f"{f},2,200,{30 + 4 * f},25,50,1,1,1" for f in (1, 2, 3)
]


def _perfect(seq: str = "walk") -> list[dict]:
    return [
        {"sequence": seq, "frame": f, "id": i, "bbox": [x, y, w, h], "score": 0.9}
        for f, i, x, y, w, h in (
            (int(r.split(",")[0]), int(r.split(",")[1]), *map(float, r.split(",")[2:6])) for r in WALK
        )
    ]


def _score(tmp_path: Path, rows: list[dict], gt_rows: list[str] = WALK, name: str = "walk") -> dict[str, float]:
    _seq(tmp_path / "train", name, gt_rows)
    return motmetric.score(motdata.ground_truth(tmp_path / "train"), rows)


def test_perfect_tracks_score_one(tmp_path):
    assert _score(tmp_path, _perfect()) == {"MOTA": 1.0, "IDF1": 1.0}


def test_a_shifted_track_lowers_mota_and_idf1(tmp_path):
    rows = _perfect()
    for r in rows:
        if r["id"] == 2 and r["frame"] == 3:
            r["bbox"][0] += 20  # IoU with its object below 0.5: a false positive and a miss
    got = _score(tmp_path, rows)
    assert got["MOTA"] == pytest.approx(1 - 2 / 6) and got["IDF1"] < 1


def test_an_id_switch_lowers_idf1(tmp_path):
    rows = _perfect()
    for r in rows:
        if r["frame"] == 3:
            r["id"] = 3 - r["id"]  # the two tracks swap identities in the last frame
    got = _score(tmp_path, rows)
    assert got["MOTA"] == pytest.approx(1 - 2 / 6)  # two switches
    assert got["IDF1"] == pytest.approx(4 / 6)


def test_only_frames_with_results_are_evaluated(tmp_path):
    """ppdet's eval_file loops over the result file's frames: the objects of a frame without a single track are
    not counted as missed (what the harness must reproduce, not correct)."""
    rows = [r for r in _perfect() if r["frame"] == 1]
    assert _score(tmp_path, rows) == {"MOTA": 1.0, "IDF1": 1.0}


def test_ignore_regions_apply_to_motchallenge_sequences_only(tmp_path):
    gt = [*WALK, "2,9,100,100,30,60,1,7,1"]  # a static person (class 7): an ignore region, not an object
    rows = [
        *_perfect("MOT16-05"),
        {"sequence": "MOT16-05", "frame": 2, "id": 7, "bbox": [101, 100, 30, 60], "score": 1},
    ]
    assert _score(tmp_path / "a", rows, gt, "MOT16-05") == {"MOTA": 1.0, "IDF1": 1.0}  # the track on it dropped
    rows = [{**r, "sequence": "walk"} for r in rows]
    got = _score(tmp_path / "b", rows, gt, "walk")  # not a MOTChallenge name: a false positive
    assert got["MOTA"] == pytest.approx(1 - 1 / 6) and got["IDF1"] < 1


def test_rows_marked_zero_or_of_another_class_are_no_objects(tmp_path):
    gt = [*WALK, "1,5,300,300,20,40,0,1,1", "2,6,300,300,20,40,1,3,1"]  # mark 0; a car (class 3)
    assert _score(tmp_path, _perfect(), gt) == {"MOTA": 1.0, "IDF1": 1.0}


def test_nothing_tracked_scores_zero(tmp_path):
    assert _score(tmp_path, []) == {"MOTA": 0.0, "IDF1": 0.0}


def test_a_gt_row_ppdet_cannot_read_is_refused(tmp_path):
    _seq(tmp_path / "train", "walk", [*WALK, "2,1,3,4,5,6,1"])  # 7 fields: ppdet's reader indexes field 8
    with pytest.raises(DatasetRecordError, match=r"gt.txt:7: not a MOTChallenge gt row"):
        motdata.ground_truth(tmp_path / "train")


def test_the_kind_row():
    kind = kinds.KINDS["mot"]
    assert kinds.by_file("mot") is kind and kind.headline == "mot_mota"
    assert {"mot_mota", "mot_idf1"} <= set(kinds.metric_names())
    assert kinds.of_metric("mot_idf1") is kind and kinds.of_metric("mot_ap") is None
    assert kind.task == "Multiple Object Tracking"


def test_score_files_in_percent_through_a_records_truth(tmp_path):
    synthetic_mot(tmp_path / "train", frames=3)
    gt = motdata.ground_truth(tmp_path / "train")
    rows = [
        {"sequence": t.name, "frame": f, "id": i, "bbox": list(b), "score": 1.0}
        for t in gt.sequences
        for f, objs in t.frames.items()
        for b, i in objs
    ]
    (tmp_path / "mot.json").write_text(json.dumps(rows))
    truth = scoring.Truth(tmp_path, "mot", tmp_path / "train")
    stats = scoring.score_files(truth, {"mot": tmp_path / "mot.json"})
    assert set(stats) == {"mot"} and stats["mot"] == motmetric.score(gt, rows)
    # the ground truth's own pedestrians in ignore regions (visibility -1, a MOT16 name) are dropped as tracks
    assert 0 < stats["mot"]["MOTA"] < 1
    assert scoring.metrics(stats)["mot_mota"] == round(stats["mot"]["MOTA"] * 100, 4)


def test_result_rows_are_read_as_ppdet_reads_them(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("1,3,10.5,20.25,30.0,60.0,0.87654321,-1,-1,-1\n2,3,11,21,30,60,0.5,-1,-1,-1\n")
    rows = read_results("s", path)
    assert rows[0] == {"sequence": "s", "frame": 1, "id": 3, "bbox": [10.5, 20.25, 30.0, 60.0], "score": 0.87654321}
    path.write_text("1,3,10.5\n")
    with pytest.raises(Exception, match=r"s.txt:1: not a row of ppdet's MOT results"):
        read_results("s", path)


# ---- the dataset ----


def _ds(**kw) -> Dataset:
    return Dataset(name="mot16-train", layout="mot", image_dir="MOT16/images/train", homepage="https://x", **kw)


def test_a_mot_dataset_is_prepared_from_its_sequences(tmp_path):
    frames = synthetic_mot(tmp_path / "MOT16/images/train", frames=3)
    data = dataset.prepare(_ds(classes=1), None, data_dir=tmp_path)
    assert data.images == tmp_path / "MOT16/images/train" and data.annotations == tmp_path
    assert data.num_images == len(frames) == 6 and data.layout == "mot"
    assert data.layout_fields()["images"] == str(data.images)
    again = dataset.prepare(_ds(), None, data_dir=tmp_path)
    assert again.annotations_sha256 == data.annotations_sha256
    (tmp_path / "MOT16/images/train/MOT16-02/gt/gt.txt").write_text("1,1,1,1,5,5,1,1,1\n")
    assert dataset.prepare(_ds(), None, data_dir=tmp_path).annotations_sha256 != data.annotations_sha256


@pytest.mark.parametrize(
    ("damage", "error", "match"),
    [
        (lambda s: (s / "gt/gt.txt").unlink(), DatasetError, r"sequence MOT16-02 has no gt/gt.txt"),
        (lambda s: (s / "seqinfo.ini").write_text("[Sequence]\nframeRate=x\n"), DatasetRecordError, "frameRate"),
        (lambda s: [p.unlink() for p in (s / "img1").iterdir()], DatasetError, "no images"),
    ],
)
def test_a_broken_sequence_is_refused_by_name(tmp_path, damage, error, match):
    synthetic_mot(tmp_path / "MOT16/images/train", frames=2)
    damage(tmp_path / "MOT16/images/train/MOT16-02")
    with pytest.raises(error, match=match):
        dataset.prepare(_ds(), None, data_dir=tmp_path)


def test_subset_and_several_classes_are_refused(tmp_path):
    synthetic_mot(tmp_path / "MOT16/images/train", frames=2)
    with pytest.raises(UsageError, match="evaluated whole"):
        dataset.prepare(_ds(), None, data_dir=tmp_path, subset=1)
    with pytest.raises(DatasetError, match="one class"):
        dataset.prepare(_ds(classes=2), None, data_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no sequence folders"):
        dataset.prepare(_ds().model_copy(update={"image_dir": "empty"}), None, data_dir=tmp_path)


# ---- the differential test: ppdet's own MOTEvaluator on the same files ----

PPDET_SIDE = r"""
import json, sys
from ppdet.metrics.mot_metrics import MOTEvaluator
out = []
for case in json.load(open(sys.argv[1])):
    accs = [MOTEvaluator(case["root"], seq, "mot").eval_file(res) for seq, res in case["results"]]
    summary = MOTEvaluator.get_summary(accs, [s for s, _ in case["results"]], metrics=None)
    out.append({"mota": float(summary.loc["OVERALL", "mota"]), "idf1": float(summary.loc["OVERALL", "idf1"])})
json.dump(out, open(sys.argv[2], "w"))
"""


def _random_case(rng: random.Random, folder: Path, results: Path) -> list[tuple[str, str]]:
    """Sequences of random ground truth (objects, rows marked 0, other classes, ignore classes, negative
    visibility) and ppdet-formatted results tracking them with jitter, misses, id switches and false tracks."""
    names = rng.sample(["MOT16-02", "MOT17-09", "walk", "MOT20-01", "street"], rng.randint(1, 3))
    out = []
    for name in sorted(names):
        frames, gt, res = rng.randint(2, 7), [], []
        people = [
            (rng.uniform(0, 300), rng.uniform(0, 200), rng.uniform(15, 60), rng.uniform(40, 120)) for _ in "xxxxx"
        ]
        for f in range(1, frames + 1):
            skip_frame = rng.random() < 0.15  # a frame without results
            for k, (x, y, w, h) in enumerate(people[: rng.randint(1, 5)]):
                x, y = round(x + 3 * f, 2), round(y + 2 * f, 2)
                label = rng.choice([1, 1, 1, 1, 2, 7, 8, 12, 3])
                mark, vis = int(rng.random() > 0.1), rng.choice([1.0, 0.5, 0.2, -1.0])
                gt.append(f"{f},{k + 1},{x},{y},{w},{h},{mark},{label},{vis}")
                if skip_frame or rng.random() < 0.15:
                    continue
                tid = k + 1 if rng.random() > 0.1 else rng.randint(1, 8)
                jx, jy = rng.gauss(0, w / 6), rng.gauss(0, h / 6)
                res.append(f"{f},{tid},{x + jx},{y + jy},{w},{h},{rng.random()},-1,-1,-1")
            if not skip_frame and rng.random() < 0.3:
                res.append(f"{f},{rng.randint(20, 30)},{rng.uniform(0, 300)},{rng.uniform(0, 200)},30,60,0.5,-1,-1,-1")
        _seq(folder, name, gt, frames)
        path = results / f"{name}.txt"
        path.write_text("".join(r + "\n" for r in res))
        out.append((name, str(path)))
    return out


@pytest.mark.stack
def test_the_harness_mota_and_idf1_are_ppdets_mot_evaluator(tmp_path, ppdet_root):
    cases = []
    for seed in range(30):
        rng = random.Random(seed)
        root, results = tmp_path / f"c{seed}", tmp_path / f"r{seed}"
        results.mkdir(parents=True)
        cases.append({"root": str(root), "results": _random_case(rng, root, results)})
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
    for case, ppdet in zip(cases, theirs, strict=True):
        gt = motdata.ground_truth(Path(case["root"]))
        rows = [r for seq, path in case["results"] for r in read_results(seq, Path(path))]
        got.append(motmetric.score(gt, rows))
        want.append({"MOTA": ppdet["mota"], "IDF1": ppdet["idf1"]})
    assert got == want  # to the last bit, every case
    assert len({w["MOTA"] for w in want}) > 20 and sum(w["MOTA"] < 0.9 for w in want) > 10  # varied, not trivial


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


# ---- what the report, the CSV and the model index make of it ----


def test_mota_and_idf1_are_judged_reported_and_indexed():
    from conftest import result

    from harness.publish import modelindex, report
    from harness.score.verdict import judge_all
    from harness.zoo.manifest import Model

    verdicts, status = judge_all(
        {"mot_mota": 73.9, "mot_idf1": 70.0}, {"mot_mota": 74.0, "mot_idf1": 76.1}, lambda m: 0.3
    )
    assert verdicts["mot_mota"].status == "pass" and verdicts["mot_idf1"].status == "fail" and status == "fail"
    rec = result(
        {
            "status": "fail",
            "stats": {"mot": {"MOTA": 0.739, "IDF1": 0.7}},
            "metrics": {m: v.model_dump() for m, v in verdicts.items()},
        }
    )
    row = report.rows([rec])[0]
    assert row["mot_mota_measured"] == 73.9 and row["mot_mota_status"] == "pass"  # the kind's headline column
    assert row["mot_idf1_measured"] == 70.0 and row["mot_idf1_status"] == "fail"  # and its second judged number
    assert "box_ap50_measured" not in row  # other kinds: their headline only
    m = Model(
        name="fairmot_dla34_30e_576x320",
        config="configs/mot/fairmot/fairmot_dla34_30e_576x320.yml",
        weights="https://example.invalid/fairmot.pdparams",
        dataset="mot16-train",
        expected={"mot_mota": 74.0, "mot_idf1": 76.1},
    )
    got = modelindex._model(m, "FairMOT", rec, "mot16-train")["Results"]
    assert got == [
        {
            "Task": "Multiple Object Tracking",
            "Dataset": "mot16-train",
            "Metrics": {"mot MOTA": 74.0, "mot IDF1": 76.1, "measured mot MOTA": 73.9, "measured mot IDF1": 70.0},
        }
    ]


# ---- the mirror (rehearsal, family matrix): a mot dataset served and fetched as the zoo file lays it out ----


def test_the_mirror_serves_a_mot_dataset_that_the_harness_prepares(tmp_path):
    """A tracker as the importer writes it (dataset `mot16-train`, layout mot, no annotation_file): the mirror's
    synthetic sequences, fetched from 127.0.0.1 through the mirror's zoo file, pass the harness's preparation."""
    import yaml
    from conftest import REPO

    from harness.core.files import atomic_write_json
    from harness.nightly import rehearsal
    from harness.zoo.manifest import parse_zoo

    whole = yaml.safe_load((REPO / "zoos" / "paddledetection.yaml").read_text())
    table = {"readme": "configs/mot/fairmot/README.md", "columns": ["MOTA", "IDF1", "download", "config"]}
    table |= {"metrics": {"MOTA": "mot_mota", "IDF1": "mot_idf1"}, "weights": "download", "config": "config"}
    model = {
        "name": "fairmot_dla34_30e_576x320",
        "table": "fairmot",
        "config": "configs/mot/fairmot/fairmot_dla34_30e_576x320.yml",
        "weights": "https://paddledet.bj.bcebos.com/models/mot/fairmot_dla34_30e_576x320.pdparams",
        "dataset": "mot16-train",
        "expected": {"mot_mota": 74.0, "mot_idf1": 76.1},
    }
    datasets = {"mot16-train": {"layout": "mot", "image_dir": "MOT16/images/train", "classes": 1, "homepage": "x"}}
    zoo = parse_zoo({**whole, "datasets": datasets, "tables": {"fairmot": table}, "models": [model]})
    work = tmp_path / "work"
    _, images = rehearsal._serve_datasets(work, zoo, 4)
    assert len(images["mot16-train"]) == 4 and all(p.parent.name == "img1" for p in images["mot16-train"])
    mirror = work / "mirror"
    atomic_write_json(mirror / ".complete.json", {"tree": "0" * 40, "datasets": {"mot16-train": "mot"}})
    with rehearsal.serve(mirror, 0) as base:
        served = parse_zoo(rehearsal.mirror_zoo(zoo, zoo.source()[0], base, mirror))
        (ds,) = served.datasets_of(served.models)
        got = dataset.prepare(ds, None, root=tmp_path / "cache")
    assert (got.name, got.layout, got.num_images) == ("mot16-train", "mot", 4)
    assert motdata.sequences(got.images) == ["MOT16-02", "MOT16-04"] and got.annotations == got.images.parents[2]


class _Cfg(dict):
    """What tracking.check reads of ppdet's config: `metric` and `architecture`."""

    @property
    def architecture(self) -> str:
        return self["architecture"]


@pytest.mark.parametrize(
    ("metric", "arch", "layout", "refused"),
    [
        ("MOT", "FairMOT", "mot", None),
        ("MOT", "JDE", "mot", None),
        ("COCO", "FasterRCNN", "coco", None),
        ("MOT", "FairMOT", "coco", "it is evaluated on a mot dataset"),
        ("COCO", "FasterRCNN", "mot", "is not a tracker"),
        ("MOT", "DeepSORT", "mot", "single-checkpoint JDE-style trackers"),
        ("MOT", "ByteTrack", "mot", "DeepSORT/ByteTrack"),
        ("MCMOT", "FairMOT", "mot", "multi-class MCMOT"),
    ],
)
def test_only_jde_style_trackers_on_mot_datasets_are_evaluated(metric, arch, layout, refused):
    from harness.core.errors import HarnessError
    from harness.model import tracking

    cfg = _Cfg(metric=metric, architecture=arch)
    if refused is None:
        tracking.check(cfg, layout)
        return
    with pytest.raises(HarnessError) as err:
        tracking.check(cfg, layout)
    assert refused in f"{err.value.message} {err.value.hint}"
