"""One view of a night (harness/publish/view.py): built by one descent into the records, read by renderers that
ask nothing else, each output rendered once however many places ask for it; at the zoo's size the plots stay
readable and the scans stay linear."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from conftest import REPO
from nights import ZOO, write_nights

from harness.publish import outputs, plots, report, view
from harness.records import changes, history, judgement, results

sys.path.insert(0, str(REPO / "scripts"))
import bench_site

# The reading side's renderers: each lays out or words the night's view, and asks the records nothing.
RENDERERS = ["report", "plots", "site", "notify", "charts", "overview", "notes"]
RULES = ("harness.records.changes", "harness.records.history", "harness.records.speed", "harness.records.judgement")


def _imported(module: str) -> list[tuple[str, str]]:
    """(module, name) of every `from harness.records... import name` in a publish module, lazy ones included."""
    tree = ast.parse((REPO / "harness" / "publish" / f"{module}.py").read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("harness.records"):
            out += [(node.module or "", a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name, "*") for a in node.names if a.name.startswith("harness.records")]
    return out


def test_the_renderers_ask_the_records_nothing_but_read_their_types():
    """A renderer may name a record's type (to read it) or a constant (a field's label), never a rule: what is
    new, since when and what changed come from the view, which asks judgement once."""
    for module in RENDERERS:
        for source, name in _imported(module):
            assert source not in RULES or name[:1].isupper(), f"publish/{module}.py imports {name} from {source}"
            assert name == "*" or name[:1].isupper(), f"publish/{module}.py imports the function {source}.{name}"
    found = _imported("view")
    assert ("harness.records", "judgement") in found and all(n[:1].isupper() for s, n in found if s in RULES)
    # the check itself: the site before the view asked the change detection and the history itself
    old = "from harness.records import changes\nfrom harness.records import history as hist\n"
    assert [a.name for n in ast.walk(ast.parse(old)) if isinstance(n, ast.ImportFrom) for a in n.names] == [
        "changes",
        "history",
    ]


def test_each_output_is_rendered_once_however_many_places_ask_for_it(tmp_path, monkeypatch):
    runs, hist = write_nights(tmp_path)
    calls: dict[str, int] = {}
    for name in ("table_text", "markdown", "junit", "csv", "tonight"):
        real = getattr(report, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            calls[_name] = calls.get(_name, 0) + 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(report, name, counted)
    done = outputs.publish(
        results.read([runs[-1]]),
        history=hist,
        run_dirs=[runs[-1]],
        outputs=tmp_path / "out",
        out=tmp_path / "table.md",
        site=tmp_path / "site",
    )
    assert calls == {"table_text": 1, "markdown": 1, "junit": 1, "csv": 1, "tonight": 1}
    site_md, out_md = (tmp_path / "site" / "report.md").read_text(), (tmp_path / "out" / "report.md").read_text()
    assert out_md == site_md + outputs.PLOTS and done.text == out_md  # the same bytes, plus the plots' links
    assert (tmp_path / "site" / "junit.xml").read_bytes() == (tmp_path / "out" / "junit.xml").read_bytes()
    assert site_md.startswith((tmp_path / "table.md").read_text()) and "## Tonight" in site_md


def test_the_view_descends_into_the_records_once_and_reads_each_models_lines_once(tmp_path, monkeypatch):
    """Linear in records + history: the history is split by model once, each model's nights read once (the page
    used to scan the whole history once per model for its last pass: 355 × 10,650 lines)."""
    runs, hist = write_nights(tmp_path)
    counts = {"judge": 0, "by_model": 0, "series": 0}
    for module, name in ((judgement, "judge"), (changes, "by_model"), (changes, "series")):
        real = getattr(module, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            counts[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)
    night = view.of(results.read([runs[-1]]), history.load(hist), [runs[-1]])
    assert counts == {"judge": 1, "by_model": 1, "series": len(ZOO)} and len(night.models) == len(ZOO)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    recs, run, hist = bench_site.make(tmp_path_factory.mktemp("zoo"), 30)
    return view.of(recs, history.load(hist), [run])


def test_at_zoo_size_the_plots_are_small_multiples_of_what_changed_and_one_dot_per_model(zoo, tmp_path):
    drawn = plots.ap_per_run(zoo, tmp_path / "ap.png")
    tags = zoo.marks
    assert len(drawn) == plots.MAX_PANELS and all(len(metrics) <= 2 for metrics in drawn.values())
    assert set(tags) <= set(drawn)  # the new, the fixed and the slower first; then the longest failing
    assert list(drawn)[: len(tags)] == sorted(tags, key=lambda m: (plots.ORDER[tags[m]], m))
    named = plots.ap_vs_fps(zoo, tmp_path / "fps.png")
    timed = [m for m in tags if (mine := zoo.model(m)) is not None and mine.rec.fps]  # an error has no fps: no dot
    assert sorted(named) == sorted(timed) and len(timed) >= 2  # every model a dot, the ones that changed named
    from PIL import Image

    for png in ("ap.png", "fps.png"):
        with Image.open(tmp_path / png) as im:
            assert im.size[0] <= 1600 and im.size[1] <= 1000  # not 3300 × 495 of 355 lines and their legend


def test_without_a_history_a_night_judges_nothing(tmp_path):
    runs, _ = write_nights(tmp_path)
    night = view.of(results.read([runs[-1]]))
    assert not night.judged and night.alerts == [] and [n.run_id for n in night.nights] == [runs[-1].name]
    assert "## Tonight" not in report.markdown(night) and Path(runs[-1]).is_dir()
