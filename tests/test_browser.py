"""The site in a real browser: Debian's headless Chromium driven through selenium (chromedriver).

`.ci/run` installs chromium and chromium-driver with apt-get. Elsewhere the tests are skipped, saying so,
except under CI (CI=true), where a missing browser is a failure: the suite must not pass by skipping.
A screenshot of every page visited is saved (HARNESS_SCREENSHOTS=DIR keeps them; default: pytest's tmp).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from nights import NIGHTS, ZOO, write_nights

from harness.publish import site
from harness.records import history, results

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


def _shot(browser, path: Path) -> None:
    """A full-page screenshot: the window is grown to the page's height first."""
    height, chrome = browser.execute_script(
        "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]"
    )
    browser.set_window_size(1300, min(max(height + chrome, 600), 4000))
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
    assert [r.get_attribute("data-model") for r in rows] == list(ZOO) and all(r.is_displayed() for r in rows)
    assert browser.find_element(By.ID, "shown").text == f"showing {len(ZOO)} of {len(ZOO)}"
    _shot(browser, shots / "overview.png")
    browser.find_element(By.ID, "hide-passing").click()
    shown = [r.get_attribute("data-model") for r in _rows(browser) if r.is_displayed()]
    assert shown == [MASK, VD]  # the two passing models are hidden
    assert browser.find_element(By.ID, "shown").text == f"showing 2 of {len(ZOO)}"
    _shot(browser, shots / "overview-failing.png")
    browser.find_element(By.ID, "hide-passing").click()
    Select(browser.find_element(By.ID, "filter-family")).select_by_visible_text("ppyoloe")
    assert [r.get_attribute("data-model") for r in _rows(browser) if r.is_displayed()] == [YOLO]
    browser.find_element(By.CSS_SELECTOR, 'a.family-link[data-family="res2net"]').click()
    assert [r.get_attribute("data-model") for r in _rows(browser) if r.is_displayed()] == [FASTER, MASK, VD]
    assert _errors(browser) == []


def test_a_model_page_shows_its_chart_and_log(browser, nightly_site, shots):
    from selenium.webdriver.common.by import By

    browser.get((nightly_site / "index.html").as_uri())
    browser.find_element(By.LINK_TEXT, MASK).click()
    assert browser.current_url.endswith(f"runs/{NIGHTS[-1]}/{MASK}.html")
    charts = browser.find_elements(By.CSS_SELECTOR, "figure.trend svg")
    assert len(charts) == 3 and all(c.is_displayed() and c.size["width"] > 400 for c in charts)
    box = browser.find_element(By.CSS_SELECTOR, 'figure[data-metric="box_ap"]')
    dots = box.find_elements(By.CSS_SELECTOR, "circle.night")
    assert [d.get_attribute("class") for d in dots] == ["night pass"] * 3 + ["night fail"]
    assert box.find_element(By.CSS_SELECTOR, "rect.band").is_displayed()
    log = browser.find_element(By.ID, "log")
    assert log.is_displayed() and "<script>alert('log')</script>" in log.text  # shown as text, not run
    _shot(browser, shots / "model.png")
    dots[0].find_element(By.XPATH, "..").click()  # the first night's dot links to that night's page
    assert browser.current_url.endswith(f"runs/{NIGHTS[0]}/{MASK}.html")
    assert _errors(browser) == []


@pytest.mark.stack
def test_the_rehearsals_site_lists_its_models(browser, rehearsal, shots):
    """The site `harness rehearse` writes (its last step: `harness report RUN --html`), real records."""
    from selenium.webdriver.common.by import By

    index = rehearsal.work / "site" / "index.html"
    assert rehearsal.out.returncode == 0 and index.is_file(), rehearsal.out.stdout[-2000:]
    browser.get(index.as_uri())
    names = sorted(p.parent.name for p in rehearsal.run_dir.glob("*/result.json"))
    assert sorted(r.get_attribute("data-model") for r in _rows(browser)) == names and len(names) == 3
    assert "REHEARSAL: random-initialised weights" in browser.find_element(By.CSS_SELECTOR, "p.notice").text
    _shot(browser, shots / "rehearsal-overview.png")
    browser.find_element(By.LINK_TEXT, names[0]).click()
    assert browser.find_element(By.ID, "stats").is_displayed() and browser.find_element(By.ID, "log").text
    _shot(browser, shots / "rehearsal-model.png")
    assert _errors(browser) == []
