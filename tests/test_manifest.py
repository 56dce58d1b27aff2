"""zoo.yaml: the real file loads; every kind of bad input is one line naming the field path."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from harness.errors import ExitCode, ManifestError, UsageError
from harness.manifest import load_zoo, parse_zoo

RAW = yaml.safe_load((REPO / "zoo.yaml").read_text())
FASTER, MASK_VB, MASK_VD = (m["name"] for m in RAW["models"])


def test_the_real_zoo_matches_the_seed_table(monkeypatch):
    monkeypatch.delenv("HARNESS_STACK", raising=False)
    zoo, path = load_zoo(REPO / "zoo.yaml")
    assert path == (REPO / "zoo.yaml").resolve()
    rows = [(m.name, m.type, m.backbone, m.images_per_gpu, m.schedule, m.documented()) for m in zoo.models]
    assert rows == [
        (FASTER, "Faster", "Res2Net50-FPN", 2, "1x", {"box_ap": 40.6}),
        (MASK_VB, "Mask", "Res2Net50-FPN", 2, "2x", {"box_ap": 42.4, "mask_ap": 38.1}),
        (MASK_VD, "Mask", "Res2Net50-vd-FPN", 2, "2x", {"box_ap": 42.6, "mask_ap": 38.1}),
    ]
    for m in zoo.models:
        assert m.weights.url == f"https://paddledet.bj.bcebos.com/models/{m.name}.pdparams"
        assert m.config == f"configs/res2net/{m.name}.yml"
        assert m.weights.sha256 is None  # unknowable offline: never invented
    stack, src = zoo.source()
    assert (stack, src.commit, src.paddle) == ("current", "666f597fd00d3157e84dd9fb2dd3f40bf9918ebc", "3.3.1")
    assert src.archive_artifact().url == ("https://github.com/PaddlePaddle/PaddleDetection/archive/"
                                          "666f597fd00d3157e84dd9fb2dd3f40bf9918ebc.tar.gz")
    assert zoo.source("previous")[1].commit == "7d6dc4079379b7827351c511f76e23ccea4910fd"
    assert zoo.dataset.images.url.endswith("/zips/val2017.zip")
    assert zoo.tolerance_for(zoo.models[0], "box_ap") == 0.3
    assert zoo.tolerance_for(zoo.models[1], "mask_ap") == 0.5


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


@pytest.mark.parametrize("edit, expected", [
    (_set("models.1.metrics.box_ap", "abc"), f"models[1].metrics.box_ap: expected a number (model {MASK_VB})"),
    (_set("models.0.weights", KeyError), f"models[0].weights: required field is missing (model {FASTER})"),
    (_set("models.2.metrics.box_apx", 1.0), f"models[2].metrics.box_apx: unknown field (check the spelling) "
                                            f"(model {MASK_VD})"),
    (_set("models.0.type", "Retina"), "models[0].type: expected 'Faster' or 'Mask'"),
    (_set("models.0.images_per_gpu", 1.5), "models[0].images_per_gpu: expected an integer"),
    (_set("models.0.config", "../evil.yml"), "models[0].config: expected a relative path inside the tree"),
    (_set("models.1.metrics.mask_ap", None), "models[1]: a Mask model needs metrics.mask_ap"),
    (_set("models.0.metrics.mask_ap", 30.0), "models[0]: a Faster model has no mask AP"),
    (_set("models.0.metrics.box_ap", 140), "models[0].metrics.box_ap: expected less than or equal to 100"),
    (_set("models.0.metrics.box_ap", float("nan")), "models[0].metrics.box_ap: expected a finite number"),
    (_set("tolerance.default", -0.1), "tolerance.default: expected greater than or equal to 0"),
    (_set("tolerance.default", None), "tolerance.default is required"),
    (_set("sources.current.commit", "abc123"), "sources.current.commit: 'abc123' does not match"),
    (_set("dataset.images", KeyError), "dataset.images: required field is missing"),
    (_set("dataset.images", "ftp://x/val2017.zip"), "dataset.images.url: expected an http://"),
    (_set("models.0.weights", {"url": "http://x/w", "sha256": "00"}), "models[0].weights.sha256: '00' does not"),
    (_set("version", 2), "version: expected 1"),
    (_set("models", []), "models: List should have at least 1 item"),
    (lambda raw: raw["models"].append(copy.deepcopy(raw["models"][0])), f"duplicate model names: {FASTER}"),
])
def test_bad_manifest_is_one_line_per_problem_with_the_field_path(edit, expected):
    raw = copy.deepcopy(RAW)
    edit(raw)
    with pytest.raises(ManifestError) as err:
        parse_zoo(raw)
    assert expected in str(err.value)
    assert err.value.exit_code == ExitCode.USAGE


def test_several_problems_are_all_reported():
    raw = copy.deepcopy(RAW)
    raw["models"][0]["metrics"]["box_ap"] = "x"
    raw["models"][2]["schedule"] = "two"
    with pytest.raises(ManifestError) as err:
        parse_zoo(raw)
    lines = str(err.value).splitlines()
    assert any(line.endswith(f"models[0].metrics.box_ap: expected a number (model {FASTER})") for line in lines)
    assert any(line.startswith("models[2].schedule: 'two' does not match") for line in lines)


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


@pytest.mark.parametrize("name, suggestion", [
    ("faster_rcnn_res2net50", FASTER),
    ("mask_rcnn_res2net50_vd", MASK_VD),
    ("mask_rcnn_res2net50_vb_26w_4s_fpn_1x_coco", MASK_VB),
])
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
