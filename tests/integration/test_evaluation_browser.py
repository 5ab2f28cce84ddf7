"""The rating page in a real headless Chromium: three raters rate recorded answers, by keyboard and by mouse;
the statistics match what they entered, nothing they saw or sent names a variant, and it fits a phone."""

from __future__ import annotations

import base64
import os
import shutil
import sys
from pathlib import Path

import pytest
from loraplane.evaluation.results import summarize
from loraplane.evaluation.session import read_ratings
from loraplane.local.stack import ManagedProcess, free_port, wait_http

from tests.support.browser import chromium
from tests.support.raters import expected_results, intended, rate_in_browser
from tests.unit.test_evaluation_page import make_session

DOCS = Path(__file__).resolve().parents[2] / "docs" / "images"


@pytest.fixture
def served(tmp_path):
    session = make_session(tmp_path / "session")
    port = free_port()
    proc = ManagedProcess("evaluation", [sys.executable, "-m", "loraplane_server.evaluation", "--session",
                                         str(tmp_path / "session"), "--port", str(port)],
                          tmp_path / "evaluation.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", proc, 30, "the rating server")
        yield session, url, tmp_path / "session"
    finally:
        proc.stop()


def test_three_raters_in_a_real_browser(served, tmp_path):
    session, url, directory = served
    plan = intended(session)
    seen: list[str] = []
    with chromium() as driver:
        for n, rater in enumerate(session.raters):
            driver.delete_all_cookies()
            rate_in_browser(driver, url, session, rater.name, plan, keyboard=n != 1, seen=seen)
    for text in seen:
        for secret in (session.candidate, session.baseline, session.blinding_key):
            assert secret not in text
    results = summarize(session, read_ratings(directory))
    want = expected_results(session, plan)
    assert (results.wins, results.losses, results.ties) == (want["wins"], want["losses"], want["ties"])
    assert results.win_rate.mean == pytest.approx(want["winRate"])
    assert results.preference_kappa == pytest.approx(want["kappa"])
    for c in results.criteria:
        assert c.alpha == pytest.approx(want["alpha"][c.criterion.value])
        assert c.candidate.mean == pytest.approx(want["candidateMeans"][c.criterion.value])
    assert results.raters == 3 and results.items_fully_rated == len(session.items)


@pytest.mark.parametrize(("width", "height", "name"), [(1280, 900, "rating-page.png"),
                                                       (390, 844, "rating-page-phone.png")])
def test_the_page_fits_the_screen_and_is_screenshotted(served, tmp_path, width, height, name):
    from selenium.webdriver.common.by import By

    session, url, _ = served
    with chromium(width, height) as driver:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 700})
        driver.get(f"{url}/rate/{session.raters[0].token}/1")
        body = driver.find_element(By.TAG_NAME, "body")
        body.send_keys("4", "5", "3")  # three scores by keyboard: the fourth row is highlighted
        assert driver.execute_script("return document.documentElement.scrollWidth") <= driver.execute_script(
            "return window.innerWidth")
        current = driver.find_element(By.CSS_SELECTOR, "fieldset.current")
        assert current.get_attribute("data-row") == "A-naturalness"
        buttons = driver.find_elements(By.CSS_SELECTOR, ".score span")
        assert all(b.size["height"] >= 30 for b in buttons)  # large enough for a finger
        assert driver.find_element(By.TAG_NAME, "progress").get_attribute("value") == "0"
        shot = tmp_path / name
        # The whole page in one picture: a viewport as tall as the page, at the same width.
        full_height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": full_height, "deviceScaleFactor": 1, "mobile": width < 700})
        shot.write_bytes(base64.b64decode(driver.execute_cdp_cmd("Page.captureScreenshot", {})["data"]))
    assert shot.read_bytes().startswith(b"\x89PNG")
    if os.environ.get("LORAPLANE_UPDATE_SCREENSHOTS"):
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, DOCS / name)
