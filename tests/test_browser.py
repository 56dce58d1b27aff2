"""The site in a real browser: Debian's headless Chromium driven through selenium (chromedriver). Four made-up
nights of four models (tests/nights.py), and the zoo's size: every model of zoos/paddledetection.yaml over 30
nights (scripts/bench_site.py's nights, whose story is known: a model fails tonight for the first time as
PaddleDetection's commit moved, one is fixed tonight, one errors since five nights).

`.ci/run` installs chromium and chromium-driver with apt-get. Elsewhere the tests are skipped, saying so,
except under CI (CI=true), where a missing browser is a failure: the suite must not pass by skipping.
A screenshot of every page visited is saved (HARNESS_SCREENSHOTS=DIR keeps them; default: pytest's tmp).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from conftest import REPO
from nights import NIGHTS, ZOO, write_nights

from harness.publish import site
from harness.records import history, results

sys.path.insert(0, str(REPO / "scripts"))
import bench_site

pytestmark = pytest.mark.browser
FASTER, MASK, VD, YOLO = list(ZOO)


def _binary(*names: str) -> str | None:
    return next((p for n in names if (p := shutil.which(n))), None)


@pytest.fixture(scope="module")
def browser():
    # Debian's chromium (.ci/run installs it); a GitHub runner's preinstalled Chrome serves as well (pr.yml)
    chromium, driver = _binary("chromium", "chromium-browser", "google-chrome"), _binary("chromedriver")
    if not (chromium and driver):
        why = "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1300,1000",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    b = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
    b.set_page_load_timeout(60)
    yield b
    b.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = Path(os.environ.get("HARNESS_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def nightly_site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nights")
    runs, hist = write_nights(root)
    out = root / "site"
    for run in runs:
        site.build(results.read([run]), out, history=history.load(hist), run_dirs=[run])
    return out


def _shot(browser, path: Path, height: int | None = None) -> None:
    """A full-page screenshot (the window grown to the page's height first), or of the page's top `height`."""
    full, chrome = browser.execute_script(
        "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]"
    )
    browser.set_window_size(1300, height or min(max(full + chrome, 600), 4000))
    browser.save_screenshot(str(path))
    browser.set_window_size(1300, 1000)


def _errors(browser) -> list[str]:
    """Console errors: a script error, or anything the page's Content-Security-Policy blocked."""
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def _rows(browser):
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, "tr.model-row")


def test_the_overview_lists_every_model_and_a_filter_hides_the_passing_ones(browser, nightly_site, shots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get((nightly_site / "index.html").as_uri())
    rows = _rows(browser)
    assert [r.get_attribute("data-model") for r in rows] == [MASK, VD, FASTER, YOLO] and all(
        r.is_displayed() for r in rows
    )
    assert browser.find_element(By.ID, "shown").text == f"showing {len(ZOO)} of {len(ZOO)}"
    _shot(browser, shots / "overview.png")
    browser.find_element(By.ID, "hide-passing").click()
    shown = [r.get_attribute("data-model") for r in _rows(browser) if r.is_displayed()]
    assert shown == [MASK, VD]  # the two passing models are hidden
    assert browser.find_element(By.ID, "shown").text == f"showing 2 of {len(ZOO)}"
    _shot(browser, shots / "overview-failing.png")
    browser.find_element(By.ID, "hide-passing").click()
    Select(browser.find_element(By.ID, "filter-family")).select_by_value("YOLOv3")
    assert [r.get_attribute("data-model") for r in _rows(browser) if r.is_displayed()] == [YOLO]
    Select(browser.find_element(By.ID, "filter-family")).select_by_value("MaskRCNN")
    assert [r.get_attribute("data-model") for r in _rows(browser) if r.is_displayed()] == [MASK, VD]
    assert _errors(browser) == []


def test_a_model_page_shows_its_chart_and_a_nights_record_its_log(browser, nightly_site, shots):
    from selenium.webdriver.common.by import By

    browser.get((nightly_site / "index.html").as_uri())
    browser.find_element(By.CSS_SELECTOR, f'tr.model-row[data-model="{MASK}"] td.name a').click()
    assert browser.current_url.endswith(f"models/{MASK}.html")
    charts = browser.find_elements(By.CSS_SELECTOR, "figure.trend svg")
    assert len(charts) == 3 and all(c.is_displayed() and c.size["width"] > 400 for c in charts)
    box = browser.find_element(By.CSS_SELECTOR, 'figure[data-metric="box_ap"]')
    dots = box.find_elements(By.CSS_SELECTOR, "circle.night")
    assert [d.get_attribute("class") for d in dots] == ["night pass"] * 3 + ["night fail"]
    assert box.find_element(By.CSS_SELECTOR, "rect.band").is_displayed()
    _shot(browser, shots / "model.png")
    browser.find_element(By.ID, "tonight-record").click()
    assert browser.current_url.endswith(f"runs/{NIGHTS[-1]}/{MASK}.html")
    log = browser.find_element(By.ID, "log")
    assert log.is_displayed() and "<script>alert('log')</script>" in log.text  # shown as text, not run
    _shot(browser, shots / "record.png")
    browser.back()
    dots = browser.find_elements(By.CSS_SELECTOR, 'figure[data-metric="box_ap"] circle.night')
    dots[0].find_element(By.XPATH, "..").click()  # the first night's dot links to that night's record
    assert browser.current_url.endswith(f"runs/{NIGHTS[0]}/{MASK}.html")
    assert _errors(browser) == []


@pytest.mark.stack
def test_the_rehearsals_site_is_a_fair_preview(browser, rehearsal, shots):
    """The site `harness rehearse` writes (its last step: `harness report RUN --html`), real records of a first
    night on a CPU: its banner on every page, its failures shown as new, CPU-hours, charts of counts from 0."""
    from selenium.webdriver.common.by import By

    index = rehearsal.work / "site" / "index.html"
    assert rehearsal.out.returncode == 0 and index.is_file(), rehearsal.out.stdout[-2000:]
    browser.get(index.as_uri())
    names = sorted(p.parent.name for p in rehearsal.run_dir.glob("*/result.json"))
    assert sorted(r.get_attribute("data-model") for r in _rows(browser)) == names and len(names) == 3
    new = sorted(li.get_attribute("data-model") for li in browser.find_elements(By.CSS_SELECTOR, "#new li[data-model]"))
    assert new == names and "Still failing (0)" in browser.find_element(By.ID, "tonight").text  # its first night
    assert "CPU-hours" in browser.find_element(By.ID, "tonight").text and "GPU-hours" not in browser.page_source
    _shot(browser, shots / "rehearsal-overview.png")
    browser.find_element(By.CSS_SELECTOR, f'tr.model-row[data-model="{names[0]}"] td.name a').click()
    pages = [browser.current_url]
    browser.find_element(By.ID, "tonight-record").click()
    assert browser.find_element(By.ID, "stats").is_displayed() and browser.find_element(By.ID, "log").text
    _shot(browser, shots / "rehearsal-model.png")
    pages += [browser.current_url, (rehearsal.work / "site" / "nights.html").as_uri()]
    pages.append((rehearsal.work / "site" / "nights" / f"{rehearsal.run_dir.name}.html").as_uri())
    for url in [index.as_uri(), *pages]:  # the banner stands on every page, first
        browser.get(url)
        assert "REHEARSAL: random-initialised weights" in browser.find_element(By.CSS_SELECTOR, "p.notice").text, url
    browser.get(pages[2])  # nights.html: its charts count from 0, and say CPU-hours
    ticks = browser.execute_script(
        "return Array.from(document.querySelectorAll('figure.trend svg text[text-anchor=end]'))"
        ".map((t) => t.textContent)"
    )
    assert ticks and min(float(t) for t in ticks) == 0
    titles = [f.get_attribute("data-metric") for f in browser.find_elements(By.CSS_SELECTOR, "figure.trend")]
    assert titles == ["models passing", "CPU-hours"]
    assert _errors(browser) == []


ZOO_NIGHTS = 30  # the zoo-sized site: every model of zoos/paddledetection.yaml over this many nights


@pytest.fixture(scope="module")
def zoo_site(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    recs, run, hist = bench_site.make(root, ZOO_NIGHTS)
    out = root / "site"
    site.build(recs, out, history=history.load(hist), run_dirs=[run])
    return out, {r.zoo_index: r.model for r in recs}


def _fetched_elsewhere(browser) -> list[str]:
    """Every resource the page loaded that is not one of the site's own files."""
    names = browser.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
    return [n for n in names if not n.startswith("file://")]


def test_the_grid_shows_every_model_and_night_and_tonights_news(browser, zoo_site, shots):
    from selenium.webdriver.common.by import By

    out, names = zoo_site
    browser.get((out / "index.html").as_uri())
    rows = _rows(browser)
    cells = browser.execute_script(
        "return Array.from(document.querySelectorAll('tr.model-row')).map((tr) => tr.querySelectorAll('td.n').length)"
    )
    assert len(rows) == len(names) >= 240 and cells == [ZOO_NIGHTS] * len(rows)
    new = browser.find_elements(By.CSS_SELECTOR, "#new li[data-model]")
    assert names[bench_site.NEW] in [li.get_attribute("data-model") for li in new]
    assert [li.get_attribute("data-model") for li in browser.find_elements(By.CSS_SELECTOR, "#fixed li")] == [
        names[bench_site.FIXED]
    ]
    mine = browser.find_element(By.CSS_SELECTOR, f'#new li[data-model="{names[bench_site.NEW]}"]')
    changed = [c.get_attribute("data-field") for c in mine.find_elements(By.CSS_SELECTOR, ".env-diff .change")]
    assert changed == ["ppdet_commit"] and "PaddleDetection commit" in mine.text
    compare = mine.find_element(By.LINK_TEXT, "compare").get_attribute("href")
    assert compare.endswith(f"/compare/{bench_site.COMMITS[0]}...{bench_site.COMMITS[1]}")
    still = browser.find_element(By.CSS_SELECTOR, f'#still tr[data-model="{names[bench_site.STILL]}"]')
    assert "night-025" in still.text and "weights" in still.text
    first = [r.get_attribute("data-status") for r in rows]
    assert first == sorted(first, key=lambda s: s == "pass")  # failing first
    _shot(browser, shots / "zoo-overview.png", height=1000)
    browser.execute_script("document.getElementById('models').scrollIntoView()")
    browser.save_screenshot(str(shots / "zoo-grid.png"))
    assert _errors(browser) == [] and _fetched_elsewhere(browser) == []


def test_sorting_by_delta_puts_the_worst_first_and_filters_narrow(browser, zoo_site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    out, names = zoo_site
    browser.get((out / "index.html").as_uri())
    browser.find_element(By.ID, "sort-delta").click()
    deltas = browser.execute_script(
        "return Array.from(document.querySelectorAll('tr.model-row')).map((tr) => tr.cells[3].dataset.sort)"
    )
    known = [float(d) for d in deltas if d]
    assert known == sorted(known) and known[0] == -1.5 and all(deltas[: len(known)])  # blanks after the numbers
    assert _rows(browser)[0].get_attribute("data-model") == names[bench_site.NEW]  # -1.50: the worst
    assert all(not d for d in deltas[len(known) :])  # models without a Δ (an error) last
    Select(browser.find_element(By.ID, "filter-change")).select_by_visible_text("new")
    assert names[bench_site.NEW] in [r.get_attribute("data-model") for r in _rows(browser) if r.is_displayed()]
    Select(browser.find_element(By.ID, "filter-change")).select_by_visible_text("fixed")
    assert [r.get_attribute("data-model") for r in _rows(browser) if r.is_displayed()] == [names[bench_site.FIXED]]
    assert _errors(browser) == []


def test_a_regressed_models_page_names_what_changed(browser, zoo_site, shots):
    from selenium.webdriver.common.by import By

    out, names = zoo_site
    browser.get((out / "index.html").as_uri())
    browser.find_element(By.CSS_SELECTOR, f'#new li[data-model="{names[bench_site.NEW]}"] a').click()
    assert browser.current_url.endswith(f"models/{names[bench_site.NEW]}.html")
    changed = browser.find_element(By.ID, "what-changed")
    assert "last passed night-028" in changed.text and "PaddleDetection commit" in changed.text
    fields = [c.get_attribute("data-field") for c in changed.find_elements(By.CSS_SELECTOR, ".env-diff .change")]
    assert fields == ["ppdet_commit"]
    box = browser.find_element(By.CSS_SELECTOR, 'figure[data-metric="box_ap"]')
    assert len(box.find_elements(By.CSS_SELECTOR, "line.x-tick")) == ZOO_NIGHTS and "AP (%)" in box.text
    fps = browser.find_elements(By.CSS_SELECTOR, 'figure[data-metric="fps"] circle.night')
    assert len(fps) == ZOO_NIGHTS and {d.get_attribute("class") for d in fps} <= {
        "night steady",
        "night slower",
        "night faster",
    }
    _shot(browser, shots / "zoo-model.png")
    assert _errors(browser) == [] and _fetched_elsewhere(browser) == []


def test_the_nights_index_lists_every_night_and_links_its_summary(browser, zoo_site, shots):
    from selenium.webdriver.common.by import By

    out, names = zoo_site
    browser.get((out / "nights.html").as_uri())
    rows = browser.find_elements(By.CSS_SELECTOR, "#nights tr.night-row")
    assert [r.get_attribute("data-run") for r in rows] == [f"night-{i:03d}" for i in reversed(range(ZOO_NIGHTS))]
    assert [c.get_attribute("data-field") for c in rows[0].find_elements(By.CSS_SELECTOR, ".change")] == [
        "ppdet_commit"
    ]
    assert "paddle: 3.3.1 → 3.3.2" in rows[ZOO_NIGHTS - 1 - ZOO_NIGHTS // 2].text
    charts = browser.find_elements(By.CSS_SELECTOR, "figure.trend")
    assert [c.get_attribute("data-metric") for c in charts] == ["models passing", "GPU-hours"]
    rows[0].find_element(By.LINK_TEXT, f"night-{ZOO_NIGHTS - 1:03d}").click()
    assert browser.current_url.endswith(f"nights/night-{ZOO_NIGHTS - 1:03d}.html") and not _rows(browser)
    news = [li.get_attribute("data-model") for li in browser.find_elements(By.CSS_SELECTOR, "#new li[data-model]")]
    assert sorted(news) == sorted([names[bench_site.NEW], names[bench_site.BROKEN]])  # the night's own summary
    browser.back()
    _shot(browser, shots / "zoo-nights.png")
    assert _errors(browser) == [] and _fetched_elsewhere(browser) == []


VIEWPORTS = {"phone": (390, 844), "laptop": (1280, 800), "desktop": (1920, 1080)}


def _viewport(browser, width: int, height: int) -> None:
    """The page's viewport exactly `width` × `height` CSS pixels (a phone's is also a mobile viewport)."""
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


def _rect(browser, selector: str) -> dict:
    return browser.execute_script(
        "const r = document.querySelector(arguments[0]).getBoundingClientRect();"
        "return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width};",
        selector,
    )


def _overflows(browser) -> bool:
    """Whether the page is wider than its viewport (the whole page scrolls sideways)."""
    return browser.execute_script("return document.documentElement.scrollWidth > window.innerWidth + 1")


@pytest.fixture
def viewports(browser):
    yield lambda name: _viewport(browser, *VIEWPORTS[name])
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_on_a_phone_the_overview_stacks_and_the_grid_shows_status_and_tonight(browser, zoo_site, shots, viewports):
    out, names = zoo_site
    viewports("phone")
    browser.get((out / "index.html").as_uri())
    assert not _overflows(browser)
    tops = [_rect(browser, s) for s in ("#new", "#fixed", "#still", "#models")]
    assert [t["top"] for t in tops] == sorted(t["top"] for t in tops)  # summary, new, fixed, still, then the grid
    assert all(t["right"] <= 390 + 1 for t in tops[:2]) and tops[2]["left"] < 40  # one column: no overlap
    browser.save_screenshot(str(shots / "phone-overview.png"))
    browser.execute_script("document.getElementById('models').scrollIntoView()")
    first = "#models tbody tr:first-child"
    status, tonight = _rect(browser, f"{first} td .badge"), _rect(browser, f"{first} td.n.tonight")
    assert 0 < status["right"] < tonight["left"] and tonight["right"] <= 390  # status and tonight's cell in view
    assert _rect(browser, f"{first} td.name")["width"] > 120  # and enough of the model's name to know it
    browser.save_screenshot(str(shots / "phone-grid.png"))
    height = browser.execute_script("return document.documentElement.scrollHeight")
    assert height < 6000  # the grid scrolls in its frame: not 355 rows of page
    for page in ("nights.html", f"models/{names[bench_site.NEW]}.html", f"nights/night-{ZOO_NIGHTS - 1:03d}.html"):
        browser.get((out / page).as_uri())
        assert not _overflows(browser), page
    browser.get((out / f"runs/night-{ZOO_NIGHTS - 1:03d}/{names[bench_site.NEW]}.html").as_uri())
    assert not _overflows(browser)
    browser.save_screenshot(str(shots / "phone-record.png"))
    assert _errors(browser) == []


@pytest.mark.parametrize("screen", ["laptop", "desktop"])
def test_on_a_wide_screen_tables_use_the_width_and_nothing_is_clipped(browser, zoo_site, shots, viewports, screen):
    out, _ = zoo_site
    width = VIEWPORTS[screen][0]
    viewports(screen)
    browser.get((out / "nights.html").as_uri())
    table = _rect(browser, "#nights")
    changed = _rect(browser, "#nights tbody tr:first-child td.changed")
    assert changed["right"] <= width and not _overflows(browser)  # the column that explains a step, whole
    clipped = browser.execute_script(
        "const s = document.querySelector('#nights').parentElement; return s.scrollWidth > s.clientWidth + 1"
    )
    assert not clipped and (screen == "laptop" or table["width"] > 1280)  # a wide screen's width is used
    browser.save_screenshot(str(shots / f"{screen}-nights.png"))
    browser.get((out / "index.html").as_uri())
    assert not _overflows(browser)
    browser.save_screenshot(str(shots / f"{screen}-overview.png"))
    assert _errors(browser) == []


def test_the_grids_header_row_and_model_column_stay_in_view_while_scrolling(browser, zoo_site, shots, viewports):
    out, _ = zoo_site
    viewports("laptop")
    browser.get((out / "index.html").as_uri())
    browser.execute_script("document.querySelector('.grid').scrollIntoView()")
    frame = _rect(browser, ".grid")
    head, name = _rect(browser, "#models thead th.name"), _rect(browser, "#models tbody tr:first-child td.name")
    browser.execute_script("const g = document.querySelector('.grid'); g.scrollTop = 3000; g.scrollLeft = 2000;")
    moved = browser.execute_script("const g = document.querySelector('.grid'); return [g.scrollTop, g.scrollLeft]")
    assert moved[0] > 2000  # 355 rows scrolled
    night = _rect(browser, "#models thead th.n.tonight")
    assert abs(_rect(browser, "#models thead th.name")["top"] - head["top"]) < 1 and head["top"] >= frame["top"] - 1
    assert night["top"] == head["top"]  # the night labels stay above the rows
    row = browser.execute_script(
        "const g = document.querySelector('.grid').getBoundingClientRect();"
        "const r = document.elementFromPoint(g.left + 20, g.top + 80).closest('tr');"
        "return r ? r.rowIndex : -1"
    )
    assert row > 50  # a row far down is under the header now
    cell = browser.execute_script(
        "const g = document.querySelector('.grid').getBoundingClientRect();"
        "return document.elementFromPoint(g.left + 20, g.top + 80).closest('td').className"
    )
    assert "name" in cell and abs(_rect(browser, "#models tbody tr:first-child td.name")["left"] - name["left"]) < 1
    browser.save_screenshot(str(shots / "laptop-grid-scrolled.png"))
    assert _errors(browser) == []
