"""The dashboard in a real headless browser: Debian's Chromium (`make browser`) driven by
selenium through /usr/bin/chromedriver, over `feedtrends serve` on the real job's part
files.  The expected values come from pyarrow (the query tests' oracle), not from the
server.  A screenshot goes to .cache/screenshots/ (git-ignored)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.config import Config
from tests.integration.test_query_parquet import oracle_latest, oracle_top
from tests.support.dashboard import REPO, copy_demo_output, private_config, serving

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT = REPO / ".cache" / "screenshots" / "dashboard.png"
HISTORY_WINDOWS = 12  # the page's data-history-windows

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()) or shutil.which("chromedriver") is None,
    reason="Chromium from Debian's packages is missing: run `make browser` (make test does)",
)


@pytest.fixture(scope="module", autouse=True)
def flink_classpath() -> None:
    """Overrides the tier's session fixture: the dashboard needs no JVM or jars."""


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,2000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()  # ends chromedriver and the browser it started


def _wait(driver, condition, timeout_s: float = 20.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(condition)


def _bars(svg) -> list[tuple[int, int]]:
    from selenium.webdriver.common.by import By

    return [
        (int(r.get_attribute("data-window-start")), int(r.get_attribute("data-articles")))
        for r in svg.find_elements(By.CSS_SELECTOR, "rect.bar")
    ]


def test_the_page_shows_top_terms_charts_health_and_search(browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    config: Config = private_config(tmp_path / "served")
    copy_demo_output(config.parquet_path)
    latest = oracle_latest(config.parquet_path).to_pylist()
    windows = sorted({r["window_start"] for r in latest})
    expected_top = oracle_top(config.parquet_path, None, 10)

    with serving(config) as server:
        browser.get(server.url)
        _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#windows .window table.top tbody tr svg.chart"))
        _wait(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")

        # The latest window first, its top terms in rank order, with score and articles.
        first = browser.find_elements(By.CSS_SELECTOR, "#windows .window")[0]
        assert int(first.get_attribute("data-window-start")) == windows[-1]
        rows = first.find_elements(By.CSS_SELECTOR, "table.top tbody tr")
        assert [r.get_attribute("data-term") for r in rows] == [t["term"] for t in expected_top]
        cells = rows[0].find_elements(By.TAG_NAME, "td")
        assert [c.text for c in cells[:5]] == [
            "1", cells[1].text, f"{expected_top[0]['score']:.2f}", str(expected_top[0]["articles"]), str(expected_top[0]["feeds"])
        ]
        assert cells[1].text.startswith(expected_top[0]["term"]) and cells[5].text == expected_top[0]["examples"][0]
        # The example title links to its article.
        link = cells[5].find_element(By.TAG_NAME, "a")
        assert expected_top[0]["links"][0].startswith("https://")
        assert (link.text, link.get_dom_attribute("href")) == (expected_top[0]["examples"][0], expected_top[0]["links"][0])

        # A top term's chart: its articles in each of the last windows (0 where it has no row).
        term = expected_top[0]["term"]
        chart = rows[0].find_element(By.CSS_SELECTOR, "svg.chart")
        articles = {r["window_start"]: r["articles"] for r in latest if r["term"] == term}
        assert _bars(chart) == [(ws, articles.get(ws, 0)) for ws in windows[-HISTORY_WINDOWS:]]

        # A story ranks once, with its other terms shown beside it.
        story = next(r for r in latest if r["aliases"] and r["window_start"] in windows[-3:] and r["rank"] and r["rank"] <= 5)
        story_row = browser.find_element(By.CSS_SELECTOR, f'.window[data-window-start="{story["window_start"]}"] tr[data-term="{story["term"]}"]')
        assert "also: " + ", ".join(story["aliases"]) in story_row.text

        # Health with no stack running says so.
        assert "not running" in browser.find_element(By.ID, "health-state").text

        # The feed counts of the latest window.
        feeds = {r["term"][len("feed:") :]: r["articles"] for r in latest if r["term"].startswith("feed:") and r["window_start"] == windows[-1]}
        for feed, count in feeds.items():
            feed_row = browser.find_element(By.CSS_SELECTOR, f'#feed-table tr[data-feed="{feed}"]')
            assert feed_row.find_elements(By.TAG_NAME, "td")[1].text == str(count)

        # The term search, by keyboard only: the typed term (any case) shows its whole history.
        searched = "storm bram" if "storm bram" in {r["term"] for r in latest} else term
        field = browser.find_element(By.ID, "term-input")
        field.send_keys(searched.upper(), Keys.ENTER)
        big = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#term-result svg.chart"))[0]
        history = sorted((r["window_start"], r["articles"]) for r in latest if r["term"] == searched)
        span = [ws for ws in windows if history[0][0] <= ws <= history[-1][0]]
        assert _bars(big) == [(ws, dict(history).get(ws, 0)) for ws in span]
        assert len(browser.find_elements(By.CSS_SELECTOR, "#term-result table.term-rows tbody tr")) == len(history)

        # An unknown term is a message on the page, not a broken page.
        field.clear()
        field.send_keys("zzzz", Keys.ENTER)
        _wait(browser, lambda d: "unknown term 'zzzz'" in d.find_element(By.ID, "term-error").text)
        field.clear()
        field.send_keys(searched, Keys.ENTER)
        _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#term-result svg.chart"))

        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000


def test_missing_output_is_said_on_the_page_until_output_appears(browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    config = private_config(tmp_path / "never-ran")
    with serving(config) as server:
        browser.get(server.url)
        _wait(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
        notice = browser.find_element(By.ID, "notice").text
        assert notice.startswith("No trends to show: ") and "does not exist" in notice
        assert browser.find_elements(By.CSS_SELECTOR, "#windows .window") == []
        # The job commits its first part files: the page notices on its next poll, unasked.
        copy_demo_output(config.parquet_path)
        _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#windows .window table.top"), timeout_s=30)
        assert browser.find_element(By.ID, "notice").text == ""
