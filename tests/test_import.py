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
    # the slim README links PP-YOLOv2's weights with PP-YOLO's config: imported as written, under its own name
    odd = models["ppyolo_r50vd_dcn_1x_coco_640"]
    assert odd.config == e.config and odd.weights.endswith("/ppyolov2_r50vd_dcn_365e_coco.pdparams")


def test_headings_that_name_other_datasets_are_skipped_with_the_reason(everything):
    reasons = {(f, r) for f, _, r in everything.skipped if f == "configs/ppyoloe/README.md"}
    assert ("configs/ppyoloe/README.md", "not COCO val2017 (the table names objects365)") in reasons
    assert ("configs/ppyoloe/README.md", "not COCO val2017 (the table names voc)") in reasons
    keypoint = [r for f, _, r in everything.skipped if f == "configs/keypoint/README_en.md"]
    assert "not COCO val2017 (the config evaluates on annotations/person_keypoints_val2017.json)" in keypoint


def test_bold_values_missing_configs_and_compressed_models(everything):
    models = _by_name(everything)
    assert models["denseteacher_fcos_r50_fpn_coco_semi010"].expected == {"box_ap": 35.1}  # **35.1**
    missing = [line for f, line, r in everything.skipped if r == "config missing at the pin"]
    assert any("picodet_s_320_coco.pdparams" in line for line in missing)  # legacy configs gone at the pin
    slim = [r for f, _, r in everything.skipped if f == "configs/slim/README.md"]
    assert slim.count("a compressed model: its PaddleSlim config (prune, quantisation) is needed to evaluate it") > 5


def test_mask_only_and_instance_models(everything):
    models = _by_name(everything)
    assert models["solov2_r50_fpn_3x_coco"].expected == {"mask_ap": 38.0}  # Mask AP<sup>val</sup>
    assert models["mask_rtdetr_hgnetv2_l_6x_coco"].expected == {"box_ap": 51.2, "mask_ap": 45.7}


def test_names_are_unique_and_plain_and_every_row_is_accounted_for(everything):
    names = [e.name for e in everything.entries]
    assert len(names) == len(set(names)) and all("/" not in n and n not in (".", "..") for n in names)
    assert everything.rows == len(everything.entries) + everything.duplicates + len(everything.skipped)
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
    assert "| README files read |" in cov.read_text() and "config missing at the pin" in cov.read_text()
    listed = harness("list", "--zoo", str(out), "--json", cache=cache, timeout=120)
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == len(raw["models"])
    unknown = harness("import", "nope", "--ppdet-root", str(tree), cache=cache, timeout=120)
    assert unknown.returncode == 2 and "nope: no such README" in unknown.stderr
