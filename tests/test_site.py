"""`harness report --html`: the static site, read as HTML (the browser tests click through it)."""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import REPO, harness
from nights import ARCH, NIGHTS, ZOO, record, write_nights

from harness.core.errors import UsageError
from harness.publish import charts, site
from harness.records import history, results

FASTER, MASK, VD, YOLO = list(ZOO)


class Page(HTMLParser):
    """Every tag with its attributes, and the text (what a test checks without a browser)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag: str, **attrs) -> list[dict]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def _read(path: Path) -> Page:
    return Page(path.read_text())


def _build(root: Path) -> tuple[Path, list[Path], Path]:
    runs, hist = write_nights(root)
    out = root / "site"
    for run in runs:  # night after night into one site, as the nightly's Pages would
        site.build(results.read([run]), out, history=history.load(hist), run_dirs=[run])
    return out, runs, hist


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Four nights built into one site; the tests only read it."""
    return _build(tmp_path_factory.mktemp("nights"))


def test_the_overview_lists_every_model_with_status_delta_last_pass_and_streak(built):
    out, _, _ = built
    page = _read(out / "index.html")
    rows = {a["data-model"]: a for a in page.all("tr") if a.get("class") == "model-row"}
    assert list(rows) == [MASK, VD, FASTER, YOLO]  # failing first, then by family (architecture), then by name
    assert {m: r["data-status"] for m, r in rows.items()} == {FASTER: "pass", MASK: "fail", VD: "error", YOLO: "pass"}
    assert {m: r["data-family"] for m, r in rows.items()} == ARCH
    assert rows[MASK]["data-change"] == "new" and rows[VD]["data-change"] == ""
    text = (out / "index.html").read_text()
    # the Mask model failed tonight after three passing nights: last pass is the night before
    mask_row = re.search(rf'data-model="{MASK}" data-change="new">(.*?)</tr>', text, re.S).group(1)
    assert NIGHTS[2] in mask_row and "fail × 1" in mask_row and "box_ap 41.20/42.4" in mask_row and "-1.20" in mask_row
    assert mask_row.count('class="cell pass"') == 3 and mask_row.count('class="cell fail"') == 1  # the grid
    vd_row = re.search(rf'data-model="{VD}" data-change="">(.*?)</tr>', text, re.S).group(1)
    assert "error × 3" in vd_row and NIGHTS[0] in vd_row  # last pass: night 1
    new = re.search(r'<ul id="new">(.*?)</ul>', text, re.S).group(1)
    assert re.findall(r'<li data-model="([^"]+)"', new) == [MASK]  # new tonight
    steps = re.search(r'<ul id="steps">(.*?)</ul>', text, re.S).group(1)  # 41.2 vs 42.4: a step, nothing changed
    assert re.findall(r'data-model="([^"]+)" data-cause="(\w+)"', steps) == [(MASK, "noise")] * 2
    still = re.search(rf'<tr data-model="{VD}">(.*?)</tr>', text, re.S).group(1)
    assert f"<td>{NIGHTS[1]}</td>" in still and "weights" in still  # erroring since night 2, in the weights stage
    assert [o["value"] for o in page.all("option") if o.get("value") in ARCH.values()] == [
        "FasterRCNN",
        "MaskRCNN",
        "YOLOv3",
    ]
    assert "MaskRCNN (2, 2 failing)" in "".join(page.text)
    for name in ("report.md", "junit.xml", "results.csv", "nights.html"):
        assert page.all("a", href=name) and (out / name).stat().st_size > 0
    nights = _read(out / "nights.html")
    assert [a["data-run"] for a in nights.all("tr") if "data-run" in a] == NIGHTS[::-1]
    assert all(page.all("a", href=f"nights/{n}.html") == [] for n in NIGHTS)  # the overview links nights.html
    assert nights.all("a", href=f"nights/{NIGHTS[0]}.html") and (out / "nights" / f"{NIGHTS[0]}.html").is_file()


def test_a_model_page_has_its_trends_and_what_changed_and_a_nights_record_its_stats_timing_weights_and_log(built):
    out, _, _ = built
    page_path = out / "models" / f"{MASK}.html"
    page = _read(page_path)
    charts = [a["data-metric"] for a in page.all("figure")]
    assert charts == ["box_ap", "mask_ap", "fps"]
    html = page_path.read_text()
    box = re.search(r'data-metric="box_ap">(.*?)</figure>', html, re.S).group(1)
    dots = re.findall(r'<circle class="night (\w+)" cx="([\d.]+)" cy="([\d.]+)"', box)
    assert [d[0] for d in dots] == ["pass", "pass", "pass", "fail"]  # four nights, tonight failed
    doc_y = float(re.search(r'class="documented"[^>]*y1="([\d.]+)"', box).group(1))
    band = re.search(r'class="band"[^>]*y="([\d.]+)" height="([\d.]+)"', box)
    top, height = float(band.group(1)), float(band.group(2))
    assert top < doc_y < top + height  # the documented line lies inside its tolerance band
    ys = [float(d[2]) for d in dots]
    assert ys[3] > top + height and all(top <= y <= top + height for y in ys[:3])  # 41.2 is below the band
    # every night's record of the model is in this site: each dot links to it
    assert re.findall(r'<a href="([^"]+)">\s*<circle', box) == [f"../runs/{n}/{MASK}.html" for n in NIGHTS]
    changed = re.search(r'<div id="what-changed">(.*?)</div>', html, re.S).group(1)
    assert f"since <strong>{NIGHTS[-1]}</strong>" in changed and f'href="../runs/{NIGHTS[2]}/{MASK}.html"' in changed
    assert page.all("a", id="tonight-record", href=f"../runs/{NIGHTS[-1]}/{MASK}.html")
    record_path = out / "runs" / NIGHTS[-1] / f"{MASK}.html"
    record = _read(record_path)
    assert record.all("table", id="stats") and record.all("table", id="timing") and record.all("table", id="weights")
    text = record_path.read_text()
    assert "ab" * 32 in text and "test data, no GPU" in text and "3.3.1" in text
    assert "Total sample number: 5000" in "".join(record.text)
    assert record.all("a", id="model-page", href=f"../../models/{MASK}.html") and not record.all("figure")


def test_records_and_logs_are_text_never_markup(tmp_path):
    out, runs, hist = _build(tmp_path)
    html = (out / "runs" / NIGHTS[-1] / f"{MASK}.html").read_text()
    assert "<script>alert('log')</script>" not in html and "&lt;script&gt;alert(" in html
    (runs[-1] / VD / "worker.log").unlink()  # without its log file, the error's own log tail is shown
    site.build(results.read([runs[-1]]), out, history=history.load(hist), run_dirs=[runs[-1]])
    err = (out / "runs" / NIGHTS[-1] / f"{VD}.html").read_text()
    assert "<b>bold</b>" not in err and "Traceback: &lt;b&gt;bold&lt;/b&gt;" in err
    # a record whose URLs are not http(s) is shown, never linked
    rec = results.read([runs[-1]])[0]
    rec.artifacts.weights.url = "javascript:alert(1)"
    rec.table.config_url = "data:text/html,<script>1</script>"
    site.build([rec], tmp_path / "other")
    page = _read(tmp_path / "other" / "runs" / rec.run_id / f"{rec.model}.html")
    assert not [a for a in page.all("a") if a.get("href", "").startswith(("javascript:", "data:"))]
    assert "javascript:alert(1)" in "".join(page.text)


def test_nothing_is_fetched_from_elsewhere(built):
    """Every page loads the site's own stylesheet and script and nothing else, and says so in its CSP."""
    out, _, _ = built
    pages = list(out.rglob("*.html"))
    assert {p.parent.name for p in pages} >= {"site", "models", "nights", NIGHTS[-1]}
    for path in pages:
        page = _read(path)
        root = "../" * (len(path.relative_to(out).parts) - 1)
        assert [a["src"] for a in page.all("script")] in ([], [f"{root}assets/site.js"])
        assert [(a["rel"], a["href"]) for a in page.all("link")] == [("stylesheet", f"{root}assets/site.css")]
        assert not page.all("img") and not page.all("iframe")
        csp = page.all("meta", **{"http-equiv": "Content-Security-Policy"})
        assert csp and "default-src 'none'" in csp[0]["content"] and "http" not in csp[0]["content"]
        assert "'unsafe-inline'" not in csp[0]["content"] and "style=" not in path.read_text()  # no inline code
    assert (out / "assets" / "site.css").stat().st_size > 1000 and (out / "assets" / "site.js").is_file()


def test_a_directory_the_harness_did_not_make_is_refused_and_left_alone(tmp_path):
    runs, _ = write_nights(tmp_path, nights=range(1))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "index.html").write_text("my own page")
    with pytest.raises(UsageError, match="not a site the harness wrote"):
        site.build(results.read(runs), mine)
    assert [p.name for p in mine.iterdir()] == ["index.html"] and (mine / "index.html").read_text() == "my own page"
    bad = results.read(runs)[0].model_copy(update={"run_id": ".."})
    with pytest.raises(UsageError, match="not a plain file name"):
        site.build([bad], tmp_path / "new")


def test_harness_report_html_writes_the_site(tmp_path):
    runs, hist = write_nights(tmp_path)
    out = tmp_path / "site"
    cmd = ["report", str(runs[-1]), "--history", str(hist), "--html", str(out)]
    done = harness(*cmd, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"site: {out / 'index.html'}" in done.stderr and "| " in done.stdout
    page = _read(out / "index.html")
    assert len([a for a in page.all("tr") if a.get("class") == "model-row"]) == len(ZOO)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    refused = harness(*cmd[:-1], str(mine), timeout=120)
    assert refused.returncode == 2 and "not a site the harness wrote" in refused.stderr


def test_chart_layout_puts_values_where_they_belong():
    c = charts.chart(
        "box_ap", [("a", 40.0, "pass", None), ("b", 41.0, "fail", "x.html")], documented=40.0, tolerance=0.5
    )
    (a, b) = c.points
    assert a.x < b.x and a.y > b.y  # later to the right, higher AP higher up (smaller y)
    assert c.doc_y == a.y and c.band is not None and c.band[0] < c.doc_y < c.band[0] + c.band[1]
    one = charts.chart("fps", [("a", 3.0, "pass", None)])
    assert one.points[0].x == (charts.LEFT + charts.WIDTH - charts.RIGHT) / 2 and one.band is None and one.doc_y is None
    many = charts.chart("box_ap", [(f"night-{i:03d}", 40.0, "pass", None) for i in range(30)], unit="AP (%)")
    assert len(many.x_ticks) == 30 and many.x_labels[-1][1] == "night-029"  # every night ticked, the last labelled
    gaps = [b[0] - a[0] for a, b in zip(many.x_labels, many.x_labels[1:], strict=False)]
    assert len(many.x_labels) >= 5 and min(gaps) >= charts.LABEL_PX  # as many labels as fit without overlapping
    counts = charts.chart("models passing", [("a", 3.0, "pass", None), ("b", 3.0, "pass", None)], zero=True)
    assert counts.ticks[0][1] == "0" and all(float(label) >= 0 for _, label in counts.ticks)  # from 0, never below
    flat = charts.chart("models passing", [("a", 3.0, "pass", None), ("b", 3.0, "pass", None)])
    assert float(flat.ticks[0][1]) < 3.0  # a trend of AP is padded around its values instead


def test_a_zoo_notice_stands_above_the_overview(tmp_path):
    """A rehearsal's (or any zoo's) notice is the first thing on the page, not one note among many."""
    runs, _ = write_nights(tmp_path, nights=range(1))
    recs = [r.model_copy(update={"notice": "REHEARSAL: random weights <b>"}) for r in results.read(runs)]
    site.build(recs, tmp_path / "site")
    html = (tmp_path / "site" / "index.html").read_text()
    body = html[html.index("<body>") :]
    assert body.index('<p class="notice">REHEARSAL: random weights &lt;b&gt;</p>') < body.index(
        '<section id="tonight">'
    )


def test_hostile_inputs_are_refused_or_left_out(tmp_path):
    """A history line that is not an entry is exit 2 naming the line; NaN and Infinity (JSON lets them
    through) never reach a chart; a worker.log that is a link to another file is not published."""
    runs, hist = write_nights(tmp_path)
    lines = hist.read_text().splitlines()
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join([*lines[:3], "{not json", *lines[3:]]) + "\n")
    cmd = ["report", str(runs[-1]), "--html", str(tmp_path / "s1")]
    done = harness(*cmd, "--history", str(broken), timeout=120)
    assert done.returncode == 2 and f"{broken}:4: not a history entry" in done.stderr and "Traceback" not in done.stderr
    (tmp_path / "x.jsonl").write_text('{"a": 1}\n')
    with pytest.raises(UsageError, match=r":1: not a history entry: run_id: Field required"):
        history.load(tmp_path / "x.jsonl")
    past = history.load(hist)
    for e in past:
        if e.model == MASK and e.run_id == NIGHTS[1]:
            e.metrics["box_ap"].measured = float("nan")
            e.fps = float("inf")
    secret = tmp_path / "secret.txt"
    secret.write_text("a private file\n")
    log = runs[-1] / MASK / "worker.log"
    log.unlink()
    log.symlink_to(secret)
    site.build(results.read([runs[-1]]), tmp_path / "s2", history=past, run_dirs=[runs[-1]])
    assert "a private file" not in (tmp_path / "s2" / "runs" / NIGHTS[-1] / f"{MASK}.html").read_text()
    html = (tmp_path / "s2" / "models" / f"{MASK}.html").read_text()
    coords = re.findall(r'\b(?:cx|cy|x|y|y1|y2|height)="([^"]*)"', html)
    assert coords and all(math.isfinite(float(c)) for c in coords)  # no NaN or Infinity in the SVG
    box = re.search(r'data-metric="box_ap">(.*?)</figure>', html, re.S).group(1)
    assert len(re.findall(r"<circle class=\"night", box)) == 3  # the NaN night is left out, the others drawn


def test_a_page_states_the_threads_and_a_modified_evaluation(tmp_path):
    """CPU threads change predictions, `-o` changes the evaluation: both on the model's page and the overview."""
    runs, _ = write_nights(tmp_path, nights=range(1))
    recs = results.read(runs)
    recs[0] = recs[0].model_copy(update={"device": "cpu", "threads": 1, "overrides": {"EvalReader": {"batch_size": 4}}})
    site.build(recs, tmp_path / "site")
    page = " ".join(_read(tmp_path / "site" / site.page_of(recs[0].run_id, recs[0].model)).text)
    assert "1 CPU thread" in page and "modified evaluation" in page and "-o EvalReader.batch_size=4" in page
    other = " ".join(_read(tmp_path / "site" / site.page_of(recs[1].run_id, recs[1].model)).text)
    assert "the config's own settings" in other and "modified evaluation" not in other
    index = " ".join(_read(tmp_path / "site" / "index.html").text)
    assert f"{recs[0].model}: modified evaluation (-o EvalReader.batch_size=4)" in index


def test_a_year_of_nights_keeps_every_summary_and_the_last_k_nights_records(tmp_path):
    """365 nights built one after the other into one site: the model pages are rewritten, not added to; the
    records of a night are deleted once it is older than the last `keep`; each night leaves only its summary (a
    few kB) and its row of nights.html. scripts/bench_site.py --year measures the same at 355 models."""
    from datetime import date, timedelta

    models, keep = [FASTER, MASK], 7
    out, past = tmp_path / "site", []
    sizes = {}
    for n in range(365):
        day = (date(2026, 1, 1) + timedelta(days=n)).isoformat()
        stamp = {"started": f"{day}T01:00:00+00:00", "finished": f"{day}T02:00:00+00:00"}
        recs = [results.Result.parse({**record(m, 0), "run_id": f"n{n:03d}", **stamp}, "test") for m in models]
        site.build(recs, out, history=past, keep=keep)
        past = history.merge(past, recs)
        if n in (299, 364):
            sizes[n] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert sorted(p.name for p in (out / "runs").iterdir()) == [f"n{n:03d}" for n in range(358, 365)]
    assert len(list((out / "nights").glob("*.html"))) == 365 and len(list((out / "models").glob("*.html"))) == 2
    summary = max(p.stat().st_size for p in (out / "nights").glob("*.html"))
    assert summary < 8_000  # a night's summary, not a copy of the overview
    growth = (sizes[364] - sizes[299]) / 65
    assert growth < summary + 1_000  # per night: its summary and a row of nights.html, nothing else
    nights = _read(out / "nights.html")
    assert len(nights.all("tr", **{"class": "night-row"})) == 365 and nights.all("a", href="nights/n000.html")
    grid = _read(out / "index.html")
    assert not grid.all("a", href=f"runs/n{364 - keep:03d}/{FASTER}.html")  # a deleted record is not linked
    assert grid.all("a", href=f"runs/n{365 - keep:03d}/{FASTER}.html")


def test_an_earlier_sites_copy_of_the_overview_becomes_that_nights_summary(built, tmp_path):
    """Sites written before summaries kept a copy of the whole overview per night (1.4 MB at 355 models): the
    next build writes each of them again as the night's summary, from the history, and leaves others alone."""
    import shutil

    src, runs, hist = built
    out = tmp_path / "site"
    shutil.copytree(src, out)
    old = out / "nights" / f"{NIGHTS[1]}.html"
    old.write_text("<!doctype html><title>the whole overview</title>" + "x" * 100_000)
    (out / "nights" / "someone-elses.html").write_text("not ours to rewrite")
    site.build(results.read([runs[-1]]), out, history=history.load(hist), run_dirs=[runs[-1]])
    text = old.read_text()
    assert 'content="harness site 2"' in text and len(text) < 20_000 and f"Night: {NIGHTS[1]}" in text
    assert re.findall(r'<li data-model="([^"]+)"', re.search(r'<ul id="new">(.*?)</ul>', text, re.S).group(1)) == [VD]
    assert (out / "nights" / "someone-elses.html").read_text() == "not ours to rewrite"


def test_without_a_history_no_record_is_deleted_and_a_linked_folder_is_refused(built, tmp_path):
    """Which nights are the last K is known from the history only: a report without one deletes nothing; a site
    whose runs/ is a link to elsewhere is refused before anything is written or deleted."""
    import shutil

    src, runs, _ = built
    out = tmp_path / "site"
    shutil.copytree(src, out)
    before = sorted(p.relative_to(out) for p in out.glob("runs/*/*.html"))
    site.build(results.read([runs[-1]]), out, keep=1)
    assert sorted(p.relative_to(out) for p in out.glob("runs/*/*.html")) == before
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "old-night").mkdir(parents=True)
    (elsewhere / "old-night" / "mine.html").write_text("a user's page")
    shutil.rmtree(out / "runs")
    (out / "runs").symlink_to(elsewhere)
    with pytest.raises(UsageError, match="runs/ is a link"):
        site.build(results.read([runs[-1]]), out, history=[], keep=1)
    assert (elsewhere / "old-night" / "mine.html").read_text() == "a user's page"


def test_the_demo_script_leaves_the_whole_zoos_site_in_its_own_directory_only(tmp_path):
    """scripts/demo_site.py: the zoo's made-up nights through the nightly's own command into DIR, every page
    saying the data is made up; a directory that is not a demo's is refused, nothing written."""
    import subprocess
    import sys

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    script = str(REPO / "scripts" / "demo_site.py")
    refused = subprocess.run([sys.executable, script, str(mine)], capture_output=True, text=True, cwd=tmp_path)
    assert refused.returncode == 2 and "not a demo directory" in refused.stderr
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    demo = tmp_path / "demo"
    done = subprocess.run([sys.executable, script, str(demo), "--nights", "3"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"open {demo / 'site' / 'index.html'}" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo", "mine"]  # nothing beside it
    for page in ("index.html", "nights.html", "nights/night-002.html"):
        assert '<p class="notice">DEMO: made-up nights' in (demo / "site" / page).read_text(), page
    assert len(list((demo / "site" / "models").glob("*.html"))) > 300 and (demo / "out" / "ap_vs_fps.png").is_file()
    again = subprocess.run([sys.executable, script, str(demo), "--nights", "3"], capture_output=True, text=True)
    assert again.returncode == 0  # an earlier demo is rebuilt
