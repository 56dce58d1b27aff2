"""`harness import`: the real README tables of the pinned PaddleDetection archive (not copies) into zoo files.

Each test reads READMEs of the archive `ppdet_archive` hands out (the trimmed fixture holds every
configs/**/README*.md and every config of the commit) and checks one thing the real tables do.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from conftest import CURRENT, REPO, harness

from harness.zoo import readme
from harness.zoo.manifest import load_zoo, parse_zoo


@pytest.fixture(scope="module")
def tree(ppdet_archive, tmp_path_factory):
    root = tmp_path_factory.mktemp("ppdet")
    subprocess.run(["tar", "-xzf", ppdet_archive(CURRENT), "-C", root], check=True)
    return root / f"PaddleDetection-{CURRENT}"


@pytest.fixture(scope="module")
def everything(tree):
    return readme.read(tree, readme.find(tree, [], True))


def _by_name(result) -> dict:
    return {e.name: e for e in result.entries}


def test_importing_res2net_gives_the_committed_zoo(tree):
    result = readme.read(tree, readme.find(tree, ["configs/res2net/README.md"], False))
    committed = load_zoo(REPO / "zoo.yaml")[0]
    imported = parse_zoo(readme.zoo_document(committed.model_dump(exclude_none=True), result))
    assert imported.models == committed.models and imported.tables == committed.tables
    assert result.skipped == [] and result.rows == 3


def test_chinese_headers_and_absolute_github_links(everything):
    e = _by_name(everything)["cascade_mask_rcnn_r50_fpn_1x_coco"]  # 骨架网络 | 网络类型 | ... | 下载 | 配置文件
    assert e.config == "configs/cascade_rcnn/cascade_mask_rcnn_r50_fpn_1x_coco.yml"  # .../tree/develop/configs/...
    assert e.expected == {"box_ap": 41.8, "mask_ap": 36.3}
    assert e.labels["网络类型"] == "Cascade Mask" and "推理时间(fps)" not in e.labels  # `----`: no value
    assert everything.tables[e.table]["weights"] == "下载" and everything.tables[e.table]["config"] == "配置文件"


def test_math_markup_relative_links_and_weights_named_unlike_the_config(everything):
    e = _by_name(everything)["rtdetr_r18vd_6x_coco"]  # $AP^{val}$, ./rtdetr_r18vd_6x_coco.yml
    assert e.weights == "https://bj.bcebos.com/v1/paddledet/models/rtdetr_r18vd_dec3_6x_coco.pdparams"
    assert e.expected == {"box_ap": 46.5, "box_ap50": 63.8} and e.input_size == 640
    h = _by_name(everything)["rtdetr_hgnetv2_l_6x_coco"]  # [config](rtdetr_hgnetv2_l_6x_coco.yml): no ./
    assert h.config == "configs/rtdetr/rtdetr_hgnetv2_l_6x_coco.yml"
    d = _by_name(everything)["ppyoloe_plus_crn_l_80e_coco_distill"]  # a link into distill/
    assert d.config == "configs/ppyoloe/distill/ppyoloe_plus_crn_l_80e_coco_distill.yml"


def test_val_and_test_dev_side_by_side_and_one_checkpoint_at_four_sizes(everything):
    models = _by_name(everything)
    e = models["ppyolo_r50vd_dcn_1x_coco"]
    sizes = {m.name: m.input_size for m in everything.entries if m.weights == e.weights}
    assert sizes == {
        "ppyolo_r50vd_dcn_1x_coco": 608,
        "ppyolo_r50vd_dcn_1x_coco_512": 512,
        "ppyolo_r50vd_dcn_1x_coco_416": 416,
        "ppyolo_r50vd_dcn_1x_coco_320": 320,
    }
    assert e.expected == {"box_ap": 44.8}  # Box AP val: judged
    assert e.labels["Box AP test"] == "45.2"  # Box AP test: test-dev has no public annotations, kept as a label
    # the slim README links PP-YOLOv2's weights with PP-YOLO's config: a finding, not a model
    assert "ppyolo_r50vd_dcn_1x_coco_640" not in models


def test_a_rows_dataset_is_its_configs_and_a_heading_naming_another_is_a_second_signal(everything):
    models = _by_name(everything)
    o365 = models["ppyoloe_plus_crn_s_60e_objects365"]  # "Model Zoo on Objects365": the config reads Objects365
    assert o365.dataset.name == "objects365-v2-val" and o365.expected == {"box_ap50": 18.1}
    visdrone = models["ppyoloe_crn_s_80e_visdrone"]
    assert visdrone.dataset.name == "visdrone-det-val" and set(visdrone.expected) == {"box_ap", "box_ap50"}
    assert not any(e.dataset.default and "keypoint" in e.config for e in everything.entries)
    pose = models["hrnet_w32_256x192"]  # "AP(coco val)" of a KeyPointTopDownCOCOEval config: keypoint AP
    assert pose.dataset.name == "coco-val2017-keypoints" and pose.expected == {"kpt_ap": 76.9}
    assert models["tinypose_128x96"].expected == {"kpt_ap": 58.4}  # tiny_pose's "AP (COCO Val)"
    reasons = {r for f, _, r in everything.skipped if f == "configs/keypoint/README_en.md"}
    assert reasons and not any(r.startswith("not COCO val2017") for r in reasons)  # judged by their own task


def test_bold_values_missing_configs_and_compressed_models(everything):
    models = _by_name(everything)
    assert models["denseteacher_fcos_r50_fpn_coco_semi010"].expected == {"box_ap": 35.1}  # **35.1**
    assert models["picodet_s_320_coco"].config == "configs/picodet/legacy_model/picodet_s_320_coco.yml"  # moved


def test_compressed_rows_are_models_with_their_slim_config_and_slips_are_findings(everything):
    compressed = {e.name: e for e in everything.entries if e.slim}
    assert len(compressed) == 15
    qat = compressed["ppyolo_mbv3_large_qat"]  # a slim column beside the config column
    assert (qat.config, qat.slim) == (
        "configs/ppyolo/ppyolo_mbv3_large_coco.yml",
        "configs/slim/quant/ppyolo_mbv3_large_qat.yml",
    )
    assert qat.expected == {"box_ap": 24.3} and qat.input_size == 320
    assert compressed["ssd_mobilenet_v1_300_voc_qat"].expected == {"voc_ap": 72.9}  # VOC, judged as VOC
    sparse = compressed["picodet_m_320__coco_sparse_75"]  # the row links only its slim config
    assert sparse.config == "configs/picodet/legacy_model/picodet_m_320_coco.yml"
    assert "the config of its pretrain_weights" in {f.where: f.text for f in everything.resolved}[sparse.where]
    found = {f.where: f.text for f in everything.findings}
    # PP-YOLOv2's QAT row links PP-YOLO's config; its slim config compresses PP-YOLOv2's weights
    assert "compresses ppyolov2_r50vd_dcn_365e_coco.pdparams" in found["configs/slim/README.md:133"]
    # the pruned PP-YOLO MobileNetV3 sits at 608 beside a baseline row found documented at 608 (the config: 320)
    assert "but the config evaluates at 320" in found["configs/slim/README.md:114"]
    assert not {"ppyolov2_r50vd_dcn_qat", "ppyolo_mbv3_large_prune_fpgm"} & set(compressed)
    assert all(not e.slim for e in everything.entries if "distill" in (e.config + e.name) and "prune" not in e.name)


def test_mask_only_and_instance_models(everything):
    models = _by_name(everything)
    assert models["solov2_r50_fpn_3x_coco"].expected == {"mask_ap": 38.0}  # Mask AP<sup>val</sup>
    assert models["mask_rtdetr_hgnetv2_l_6x_coco"].expected == {"box_ap": 51.2, "mask_ap": 45.7}


def test_names_are_unique_and_plain_and_every_row_is_accounted_for(everything):
    names = [e.name for e in everything.entries]
    assert len(names) == len(set(names)) and all("/" not in n and n not in (".", "..") for n in names)
    assert (
        everything.rows
        == len(everything.entries) + everything.duplicates + len(everything.skipped) + everything.dropped
    )
    assert len(everything.entries) > 200 and len(everything.readmes) > 100
    doc = readme.zoo_document(load_zoo(REPO / "zoo.yaml")[0].model_dump(exclude_none=True), everything)
    assert len(parse_zoo(doc).models) == len(names)  # the whole zoo is a valid zoo file


def test_harness_import_all_writes_a_zoo_that_list_shows(tree, tmp_path):
    out, cov = tmp_path / "all.yaml", tmp_path / "coverage.md"
    cache = tmp_path / "cache"
    run = harness(
        "import",
        "--all",
        "--ppdet-root",
        str(tree),
        "--out",
        str(out),
        "--coverage",
        str(cov),
        cache=cache,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    raw = yaml.safe_load(out.read_text())
    assert raw["version"] == 2 and len(raw["models"]) > 200 and "res2net" in raw["tables"]
    # The committed whole zoo is this output: its sources, dataset and tolerance are zoo.yaml's (real pins).
    assert raw == yaml.safe_load((REPO / "zoos" / "paddledetection.yaml").read_text())
    assert raw["sources"] == yaml.safe_load((REPO / "zoo.yaml").read_text())["sources"]
    assert raw["dataset"]["classes"] == 80  # COCO val2017 is COCO's 80 classes: a root with others is refused
    assert raw["datasets"]["voc-2007-test"]["classes"][:2] == ["aeroplane", "bicycle"]
    assert "| README files read |" in cov.read_text() and "## Findings in the READMEs" in cov.read_text()
    listed = harness("list", "--zoo", str(out), "--json", cache=cache, timeout=120)
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == len(raw["models"])
    on = {r["name"]: r["dataset"] for r in json.loads(listed.stdout)}
    assert on == {m["name"]: m.get("dataset", raw["dataset"]["name"]) for m in raw["models"]}
    shown = harness("list", "--zoo", str(out), cache=cache, timeout=120).stdout
    assert "| dataset " in shown and "voc-2007-test" in shown and "VOC mAP@0.5" in shown
    unknown = harness("import", "nope", "--ppdet-root", str(tree), cache=cache, timeout=120)
    assert unknown.returncode == 2 and "nope: no such README" in unknown.stderr


# ---- precision and recall against the READMEs at the pin ------------------------------------------------------


def test_the_seven_misread_rows_are_findings_or_skipped_not_models(everything):
    models = _by_name(everything)
    # configs/picodet/README.md:284, a slim config in its Configs cell: the quantised model, never the plain one
    quant = models["picodet_s_416_coco_lcnet_quant"]
    assert quant.slim == "configs/slim/quant/picodet_s_416_lcnet_quant.yml"
    assert quant.config == "configs/picodet/picodet_s_416_coco_lcnet.yml"
    assert quant.weights.endswith("/picodet_s_416_coco_lcnet_quant.pdparams")
    for name in (
        "yolov3_darknet53_270e_coco_608",  # configs/slim/README.md:115, PP-YOLO's weights with YOLOv3's config
        "ppyolo_r50vd_dcn_1x_coco_640",  # configs/slim/README.md:132, PP-YOLOv2's weights with PP-YOLO's config
        "ppyolo_mbv3_large_coco_608",  # configs/slim/README.md:113, documented at 608, evaluates at 320
        "pedestrian_yolov3_darknet",  # a private 1-class dataset laid out like COCO
        "vehicle_yolov3_darknet",  # a private 6-class one
        "picodet_lcnet_x2_5_640_mainbody",  # mixed data relabelled "foreground"
    ):
        assert name not in models, name
    found = {f.where: f.text for f in everything.findings}
    assert "ppyolo_mbv3_large_coco.pdparams is paired with configs/yolov3/" in found["configs/slim/README.md:115"]
    assert "ppyolov2_r50vd_dcn_365e_coco.pdparams is paired with" in found["configs/slim/README.md:132"]
    assert "documented at 608, but the config evaluates at 320" in found["configs/slim/README.md:113"]
    skipped = {(f, r.split(" (")[0]) for f, _, r in everything.skipped}
    assert ("configs/pphuman/pedestrian_yolov3/README.md", "unpublished data: a private pedestrian dataset") in skipped
    assert ("configs/ppvehicle/vehicle_yolov3/README.md", "unpublished data: a private vehicle dataset") in skipped
    mainbody = [r for f, line, r in everything.skipped if "mainbody_detection" in f and ".pdparams" in line]
    assert mainbody and all("mixed" in r for r in mainbody)


def test_the_twelve_legacy_picodet_rows_are_models_with_their_moved_configs(everything):
    legacy = [e for e in everything.entries if e.readme == "configs/picodet/legacy_model/README.md"]
    assert len(legacy) == 12 and {e.line_no for e in legacy} == {5, 6, 7, 8, 9, 10, 11, 17, 18, 19, 20, 21}
    assert all(e.config.startswith("configs/picodet/legacy_model/") for e in legacy)
    resolved = {f.where for f in everything.resolved}
    assert {f"configs/picodet/legacy_model/README.md:{n}" for n in (5, 11, 17, 21)} <= resolved


def test_github_links_whose_branch_holds_a_slash_are_read():
    link = "https://github.com/PaddlePaddle/PaddleDetection/tree/release/2.3/configs/picodet/picodet_m_320_coco.yml"
    assert readme._config_path(link, "configs/picodet/README.md") == "configs/picodet/picodet_m_320_coco.yml"
    blob = "https://github.com/PaddlePaddle/PaddleDetection/blob/develop/configs/yolov3/a.yml"
    assert readme._config_path(blob, "configs/x/README.md") == "configs/yolov3/a.yml"


def test_a_moved_config_is_found_by_name_once_and_two_candidates_are_a_finding(tmp_path):
    fam = tmp_path / "configs" / "fam"
    for sub in ("x", "y"):
        (fam / sub).mkdir(parents=True)
        (fam / sub / "twice.yml").write_text("metric: COCO\n")
    (fam / "x" / "once.yml").write_text("metric: COCO\n")
    out = readme.Imported()
    assert (
        readme._resolve(tmp_path, "configs/fam/once.yml", "configs/fam/README.md", out, "R:3")
        == "configs/fam/x/once.yml"
    )
    assert readme._resolve(tmp_path, "configs/fam/twice.yml", "configs/fam/README.md", out, "R:4") is None
    assert [f.where for f in out.resolved] == ["R:3"] and [f.where for f in out.findings] == ["R:4"]
    assert "configs/fam/x/twice.yml, configs/fam/y/twice.yml" in out.findings[0].text


@pytest.fixture(scope="module", params=["current", "previous"])
def each_tree(request, ppdet_archive, tmp_path_factory):
    from conftest import PREVIOUS

    commit = CURRENT if request.param == "current" else PREVIOUS
    root = tmp_path_factory.mktemp(f"ppdet-{request.param}")
    subprocess.run(["tar", "-xzf", ppdet_archive(commit), "-C", root], check=True)
    tree = root / f"PaddleDetection-{commit}"
    return tree, readme.read(tree, readme.find(tree, [], True))


def test_every_model_of_both_trees_is_on_the_dataset_its_config_evaluates(each_tree):
    """Precision on both stacks' trees: a COCO val2017 model's config reads COCO's instances file under
    dataset/coco with 80 classes; every other model is on the dataset its config names, none of them twice."""
    from harness.zoo.configs import eval_facts
    from harness.zoo.identify import identify

    tree, got = each_tree
    assert len(got.entries) > 200
    for e in got.entries:
        facts = eval_facts(tree / e.config, tree)
        assert identify(facts).dataset == e.dataset, e.name
        if e.dataset.default:
            assert (facts.dataset_dir, facts.anno_path, facts.num_classes) == (
                "dataset/coco",
                "annotations/instances_val2017.json",
                80,
            ), e.name
    pairs = [(e.config, e.weights_file, e.input_size) for e in got.entries]
    assert len(pairs) == len(set(pairs))
    weights = {}
    for e in got.entries:  # one weights file under one config only
        assert weights.setdefault(e.weights_file, e.config) == e.config, (e.name, e.weights_file)


def test_one_network_trackers_are_models_on_their_sequences_and_server_splits_are_not(everything):
    trackers = {e.name: e for e in everything.entries if e.dataset is not None and e.dataset.kind == "mot"}
    assert len(trackers) == 19
    fairmot = trackers["fairmot_dla34_30e_576x320"]  # "FairMOT Results on MOT-16 Training Set"
    assert fairmot.dataset.name == "mot16-train" and fairmot.expected == {"mot_mota": 74.0, "mot_idf1": 76.1}
    assert fairmot.where == "configs/mot/fairmot/README.md:34"  # not the MOT-16 test table's 69.9 / 70.2
    assert trackers["fairmot_dla34_30e_1088x608_bytetracker"].dataset.name == "mot17-half-val"
    assert trackers["jde_darknet53_30e_864x480"].expected == {"mot_mota": 69.1, "mot_idf1": 64.7}
    skipped = [r for f, line, r in everything.skipped if f == "configs/mot/fairmot/README.md" and ".pdparams" in line]
    assert sum("documented on a split without public ground truth" in r for r in skipped) == 11
    enhance = [r for f, line, r in everything.skipped if "fairmot_enhance_dla34" in line]
    assert enhance and all("Test Set" in r for r in enhance)
    deepsort = [r for f, line, r in everything.skipped if f == "configs/mot/deepsort/README.md" and ".pdparams" in line]
    assert deepsort and all(r.startswith("tracking by detection with a separate detector") for r in deepsort)
    assert not any(
        e.dataset is not None and e.dataset.kind == "mot"
        for e in everything.entries
        if e.config.startswith("configs/mot/bytetrack/")
    )
