"""A kind of prediction is a row of harness/zoo/kinds.py: a made-up kind, added as one row with its scorer, is
documented in a zoo file, listed, scored, judged, and shown in the report, the CSV and the page — with no
other change to the harness."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from harness.cli import main as cli
from harness.nightly.rescoring import rescore
from harness.publish import report, site, view
from harness.records import results
from harness.zoo import kinds


def _count_score(gt, predictions: list[dict], using) -> dict[str, float]:
    """The made-up kind's scorer: the share of the images with at least one detection."""
    images = set(gt.getImgIds())
    return {"AP": len({d["image_id"] for d in predictions} & images) / len(images)}


COUNT = kinds.Kind("count", "count", ("count",), "Counting", "count AP", stats=("AP",), score=_count_score)


@pytest.fixture
def count_kind(monkeypatch):
    monkeypatch.setitem(kinds.KINDS, "count", COUNT)  # the one row
    return COUNT


def _zoo(tmp_path: Path) -> Path:
    """The seed zoo whose first model also documents count_ap 50.0, shown in its table as "Count AP"."""
    data = yaml.safe_load((REPO / "zoo.yaml").read_text())
    data["models"][0]["expected"]["count_ap"] = 50.0
    table = data["tables"][data["models"][0]["table"]]
    table["columns"].insert(table["columns"].index("Box AP") + 1, "Count AP")
    table["metrics"]["Count AP"] = "count_ap"
    path = tmp_path / "zoo.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _run(tmp_path: Path, zoo_path: Path) -> Path:
    """A run directory with the first model's result as verify writes it, its count predictions on 1 of 2
    images (the made-up scorer's AP: 0.5, i.e. 50.0 points)."""
    from harness.nightly.verification import start_record
    from harness.zoo.manifest import load_zoo

    zoo, _ = load_zoo(zoo_path)
    model = zoo.models[0]
    ann = tmp_path / "instances.json"
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 9, "height": 9} for i in (1, 2)]
    ann.write_text(
        json.dumps({"info": {}, "images": images, "annotations": [], "categories": [{"id": 1, "name": "x"}]})
    )
    rec = start_record(zoo, model, "r1", "current")
    mdir = tmp_path / "run" / model.name
    (mdir / "predictions").mkdir(parents=True)
    (mdir / "predictions" / "count.json").write_text(json.dumps([{"image_id": 1, "category_id": 1, "score": 1.0}]))
    rec.predictions = {"count": "predictions/count.json"}
    rec.dataset = results.Dataset(annotations=str(ann), num_images=2)
    rec.metrics = {"count_ap": kinds_verdict(zoo.tolerance_for(model, "count_ap"))}
    rec.documented = {"count_ap": 50.0}
    results.write(tmp_path / "run", rec)
    return tmp_path / "run"


def kinds_verdict(tolerance: float):
    from harness.score.verdict import judge

    return judge("count_ap", None, 50.0, tolerance)  # not measured yet: rescore measures it


@pytest.mark.numerics
def test_a_new_kind_is_one_row_of_the_kinds_table(tmp_path, count_kind, capsys):
    zoo_path = _zoo(tmp_path)
    assert cli(["list", "--zoo", str(zoo_path)]) == 0  # `list`: a column per kind
    listed = capsys.readouterr().out
    assert "count AP" in listed.splitlines()[0] and "| 50.0 " in listed

    run = _run(tmp_path, zoo_path)
    rec = rescore(run, "pycocotools")[0]  # scored by the kind's own scorer, judged like any metric
    assert rec.stats["count"] == {"AP": 0.5}
    assert rec.measured("count_ap") == 50.0 and rec.status == "pass"
    assert results.read([run])[0].verdict("count_ap").status == "pass"  # written back

    text = report.markdown(view.of([rec]))  # the README table's own "Count AP" column, then the measurement
    assert "Count AP" in text and "measured count AP" in text and "50.00" in text
    (tmp_path / "results.csv").write_bytes(report.csv(view.of([rec])))
    row = next(csv.DictReader((tmp_path / "results.csv").open()))
    assert row["count_ap_measured"] == "50.0" and row["count_ap_status"] == "pass"
    pages = site.build([rec], tmp_path / "site")
    page = pages[rec.model].read_text()
    assert '<tr><td>count_ap</td><td class="num">50.00</td><td class="num">50.0</td>' in page  # its verdict


def test_without_its_row_the_kind_is_not_a_metric(tmp_path):
    from harness.core.errors import ManifestError
    from harness.zoo.manifest import load_zoo

    with pytest.raises(ManifestError, match="'count_ap' is not a metric"):
        load_zoo(_zoo(tmp_path))
