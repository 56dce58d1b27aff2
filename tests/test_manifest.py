"""zoo.yaml: the real file loads; every kind of bad input is one line naming the field path."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from harness.core.errors import ExitCode, ManifestError, UsageError
from harness.zoo.manifest import load_zoo, parse_zoo

RAW = yaml.safe_load((REPO / "zoo.yaml").read_text())
FASTER, MASK_VB, MASK_VD = (m["name"] for m in RAW["models"])


def test_the_real_zoo_matches_the_seed_table(monkeypatch):
    monkeypatch.delenv("HARNESS_STACK", raising=False)
    zoo, path = load_zoo(REPO / "zoo.yaml")
    assert path == (REPO / "zoo.yaml").resolve() and zoo.version == 2
    rows = [(m.name, m.table, m.labels, m.documented()) for m in zoo.models]
    seed = {"Image/gpu": "2", "Lr schd": "1x"}
    assert rows == [
        (FASTER, "res2net", {"Backbone": "Res2Net50-FPN", "Type": "Faster", **seed}, {"box_ap": 40.6}),
        (
            MASK_VB,
            "res2net",
            {"Backbone": "Res2Net50-FPN", "Type": "Mask", **seed, "Lr schd": "2x"},
            {"box_ap": 42.4, "mask_ap": 38.1},
        ),
        (
            MASK_VD,
            "res2net",
            {"Backbone": "Res2Net50-vd-FPN", "Type": "Mask", **seed, "Lr schd": "2x"},
            {"box_ap": 42.6, "mask_ap": 38.1},
        ),
    ]
    table = zoo.tables["res2net"]
    assert table.columns == [
        "Backbone",
        "Type",
        "Image/gpu",
        "Lr schd",
        "Inf time (fps)",
        "Box AP",
        "Mask AP",
        "Download",
        "Configs",
    ]
    assert (table.metrics, table.weights, table.config, table.fps) == (
        {"Box AP": "box_ap", "Mask AP": "mask_ap"},
        "Download",
        "Configs",
        ["Inf time (fps)"],
    )
    for m in zoo.models:
        assert m.weights.url == f"https://paddledet.bj.bcebos.com/models/{m.name}.pdparams"
        assert m.config == f"configs/res2net/{m.name}.yml"
        assert m.weights.sha256 is None  # unknowable offline: never invented
        assert m.row and m.row.startswith("| Res2Net50") and m.weights.url in m.row
    stack, src = zoo.source()
    assert (stack, src.commit, src.paddle) == ("current", "666f597fd00d3157e84dd9fb2dd3f40bf9918ebc", "3.3.1")
    assert src.archive_artifact().url == (
        "https://github.com/PaddlePaddle/PaddleDetection/archive/666f597fd00d3157e84dd9fb2dd3f40bf9918ebc.tar.gz"
    )
    assert zoo.source("previous")[1].commit == "7d6dc4079379b7827351c511f76e23ccea4910fd"
    assert zoo.dataset.images.url.endswith("/zips/val2017.zip")
    assert zoo.tolerance_for(zoo.models[0], "box_ap") == 0.3
    assert zoo.tolerance_for(zoo.models[1], "mask_ap") == 0.5


V1 = """
version: 1
sources: {current: {repository: https://x, commit: COMMIT, tree: TREE, paddle: 3.3.1}}
dataset: {name: coco, images: http://x/a.zip, annotations: http://x/b.zip}
tolerance: {default: 0.3}
models:
  - {name: m, type: Mask, backbone: R50-FPN, images_per_gpu: 2, schedule: 2x, config: configs/m.yml,
     weights: http://x/m.pdparams, metrics: {box_ap: 42.4, mask_ap: 38.1}}
""".replace("COMMIT", "a" * 40).replace("TREE", "b" * 40)


def test_a_version_1_zoo_is_still_read_in_the_seed_layout(tmp_path):
    (tmp_path / "zoo.yaml").write_text(V1)
    zoo, _ = load_zoo(tmp_path / "zoo.yaml")
    m = zoo.models[0]
    assert m.labels == {"Type": "Mask", "Backbone": "R50-FPN", "Image/gpu": 2, "Lr schd": "2x"}
    assert m.expected == {"box_ap": 42.4, "mask_ap": 38.1} and m.table == "zoo"
    assert zoo.tables["zoo"].columns == zoo_tables_of_the_seed()


def zoo_tables_of_the_seed() -> list[str]:
    return load_zoo(REPO / "zoo.yaml")[0].tables["res2net"].columns


def test_per_model_tolerance_wins():
    raw = copy.deepcopy(RAW)
    raw["models"][0]["tolerance"] = {"box_ap": 1.5}
    raw["models"][1]["tolerance"] = {"default": 0.7}
    zoo = parse_zoo(raw)
    assert zoo.tolerance_for(zoo.models[0], "box_ap") == 1.5
    assert zoo.tolerance_for(zoo.models[1], "box_ap") == 0.7
    assert zoo.tolerance_for(zoo.models[1], "mask_ap") == 0.7
    assert zoo.tolerance_for(zoo.models[2], "mask_ap") == 0.5


def _set(path: str, value):
    def edit(raw):
        *parents, last = path.split(".")
        node = raw
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value

    return edit


@pytest.mark.parametrize(
    "edit, expected",
    [
        (_set("models.1.expected.box_ap", "abc"), f"models[1].expected.box_ap: expected a number (model {MASK_VB})"),
        (_set("models.0.weights", KeyError), f"models[0].weights: required field is missing (model {FASTER})"),
        (_set("models.2.expected.box_apx", 1.0), "models[2].expected.box_apx: key 'box_apx' is not a metric"),
        (_set("models.0.expected", {}), "models[0].expected: Dictionary should have at least 1 item"),
        (_set("models.0.table", "nope"), "models name tables that `tables` does not define: nope"),
        (_set("models.0.input_size", 8), "models[0].input_size: expected greater than or equal to 32"),
        (_set("models.0.config", "../evil.yml"), "models[0].config: expected a relative path inside the tree"),
        (_set("models.0.expected.box_ap", 140), "models[0].expected.box_ap: expected less than or equal to 100"),
        (_set("models.0.expected.box_ap", float("nan")), "models[0].expected.box_ap: expected a finite number"),
        (_set("models.0.tolerance", {"box_apx": 1}), "models[0].tolerance.box_apx: key 'box_apx' is not a metric"),
        (_set("tolerance.default", -0.1), "tolerance.default: expected greater than or equal to 0"),
        (_set("tolerance.default", KeyError), "tolerance.default is required"),
        (_set("tables.res2net.columns", []), "tables.res2net.columns: List should have at least 1 item"),
        (_set("tables.res2net.metrics", {"Box AP": "box_mAP"}), "'box_mAP' is not a metric"),
        (_set("sources.current.commit", "abc123"), "sources.current.commit: 'abc123' does not match"),
        (_set("sources.current.tree", "abc123"), "sources.current.tree: 'abc123' does not match"),
        (_set("dataset.images", KeyError), "dataset: a dataset needs `images:` (its archive) or `homepage:`"),
        (_set("dataset.images", "ftp://x/val2017.zip"), "dataset.images.url: expected an http://"),
        (_set("models.0.weights", {"url": "http://x/w", "sha256": "00"}), "models[0].weights.sha256: '00' does not"),
        (_set("version", 3), "version: expected 1 or 2"),
        (_set("models", []), "models: List should have at least 1 item"),
        (lambda raw: raw["models"].append(copy.deepcopy(raw["models"][0])), f"duplicate model names: {FASTER}"),
    ],
)
def test_bad_manifest_is_one_line_per_problem_with_the_field_path(edit, expected):
    raw = copy.deepcopy(RAW)
    edit(raw)
    with pytest.raises(ManifestError) as err:
        parse_zoo(raw)
    assert expected in str(err.value)
    assert err.value.exit_code == ExitCode.USAGE


def test_several_problems_are_all_reported():
    raw = copy.deepcopy(RAW)
    raw["models"][0]["expected"]["box_ap"] = "x"
    raw["models"][2]["name"] = "a/b"
    with pytest.raises(ManifestError) as err:
        parse_zoo(raw)
    lines = str(err.value).splitlines()
    assert any(line.endswith(f"models[0].expected.box_ap: expected a number (model {FASTER})") for line in lines)
    assert any(line.startswith("models[2].name: 'a/b' does not match") for line in lines)


def test_yaml_tags_are_refused_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "zoo.yaml"
    bad.write_text(f"!!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_zoo(bad)
    assert not marker.exists()


def test_unreadable_and_non_mapping_files(tmp_path):
    with pytest.raises(ManifestError, match="cannot read"):
        load_zoo(tmp_path / "absent.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ManifestError, match="expected a mapping at the top level"):
        load_zoo(tmp_path / "list.yaml")


@pytest.mark.parametrize(
    "name, suggestion",
    [
        ("faster_rcnn_res2net50", FASTER),
        ("mask_rcnn_res2net50_vd", MASK_VD),
        ("mask_rcnn_res2net50_vb_26w_4s_fpn_1x_coco", MASK_VB),
    ],
)
def test_unknown_model_suggests_the_closest(name, suggestion):
    zoo = parse_zoo(RAW)
    with pytest.raises(UsageError) as err:
        zoo.model(name)
    assert f"unknown model {name!r}" in str(err.value) and "did you mean" in str(err.value)
    assert suggestion in str(err.value).split("did you mean: ")[1].split(",")[0]


def test_unknown_stack(monkeypatch):
    zoo = parse_zoo(RAW)
    with pytest.raises(UsageError, match=r"(?s)unknown stack 'nope'.*current, previous"):
        zoo.source("nope")
    monkeypatch.setenv("HARNESS_STACK", "previous")
    assert zoo.source()[0] == "previous"


def test_default_zoo_path_prefers_the_environment(tmp_path, monkeypatch):
    other = tmp_path / "other.yaml"
    other.write_text(Path(REPO / "zoo.yaml").read_text())
    monkeypatch.setenv("HARNESS_ZOO", str(other))
    assert load_zoo()[1] == other.resolve()


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r["models"][0].update(dataset="nope"), "models name datasets that `datasets` does not define: nope"),
        (
            lambda r: r.update(datasets={"x": {"images": "a", "annotations": "b", "layout": "tfrecord"}}),
            "'tfrecord' is not a dataset layout",
        ),
        (
            lambda r: r.update(datasets={"x": {"name": "y", "images": "a", "annotations": "b"}}),
            "datasets whose name differs from their key: x",
        ),
        (
            lambda r: r.update(datasets={"x": {"classes": 3}}),
            "datasets.x: a dataset needs `images:` (its archive) or `homepage:`",
        ),
        (
            lambda r: r.update(datasets={"x": {"images": "a", "annotations": "b", "files": {"l": "../l.txt"}}}),
            "datasets.x.files: expected a relative path inside the tree",
        ),
        (lambda r: r.update(datasets={"x": {"images": "a", "annotations": "b", "classes": 0}}), "datasets.x.classes"),
        (
            lambda r: r.update(datasets={"coco-val2017": {"images": "a", "annotations": "b"}}),
            "datasets.coco-val2017 differs from `dataset`",
        ),
    ],
)
def test_a_models_dataset_is_one_the_zoo_defines_with_a_known_layout(edit, message):
    raw = yaml.safe_load((REPO / "zoo.yaml").read_text())
    edit(raw)
    with pytest.raises(ManifestError) as err:
        parse_zoo(raw)
    assert message in str(err.value)


def test_models_without_a_dataset_use_the_default_and_a_named_one_its_own():
    raw = yaml.safe_load((REPO / "zoo.yaml").read_text())
    raw["datasets"] = {"voc-like": {"images": "a.tar", "annotations": "b.zip", "homepage": "https://example.org"}}
    raw["models"][1]["dataset"] = "voc-like"
    zoo = parse_zoo(raw)
    assert zoo.dataset_of(zoo.models[0]) is zoo.dataset
    assert zoo.dataset_of(zoo.models[1]).name == "voc-like" and zoo.datasets["voc-like"].layout == "coco"
    with pytest.raises(UsageError, match="unknown dataset 'nope'"):
        zoo.named_dataset("nope")
