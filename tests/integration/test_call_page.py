"""
The call page in a real browser: headless Chromium (chromedriver, selenium) loads /
with Basic credentials, places a call from the form, and sees it connected without a
reload (Kamailio and a sipp phone behind it, as the other end-to-end tests).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: SIPXCC_SCREENSHOT=1 refreshes the README's picture; otherwise it goes to tmp_path
SCREENSHOT = ROOT / "docs" / "live-page.png"


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("chromium and chromium-driver are not installed")
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--ignore-certificate-errors",
                 "--window-size=1100,760", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    session = webdriver.Chrome(options=options, service=Service(driver))
    yield session
    session.quit()


def timeline_kinds(browser) -> list[str]:
    """The kinds shown in the page's timeline, read in one step in the page (the page
    redraws the timeline as events arrive: elements found first may be gone when read)."""
    return browser.execute_script(
        "return Array.from(document.querySelectorAll('#timeline .kind'), e => e.innerText)")


def test_a_call_placed_from_the_page_shows_connected_without_a_reload(setup, browser,
                                                                     tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
    # 127.0.0.1 is not trusted here: the page and its requests need user1's PIN
    s = setup(http_trusted="192.0.2.1")
    phone = s.phone("user1", "refer_transferee")
    port = s.daemon.config.http.https
    browser.get(f"https://user1:123@127.0.0.1:{port}/")
    wait = WebDriverWait(browser, 20)
    wait.until(lambda b: b.find_element(By.ID, "live").text == "live")
    browser.find_element(By.ID, "calling").send_keys("user1")
    browser.find_element(By.ID, "called").send_keys("user2")
    Select(browser.find_element(By.ID, "mode")).select_by_visible_text("REFER")
    browser.find_element(By.ID, "call").click()
    wait.until(lambda b: "connected" in timeline_kinds(b))
    wait.until(lambda b: "completed" in timeline_kinds(b))
    assert phone.wait(20) == 0, phone.errors()
    kinds = timeline_kinds(browser)
    named = [k for k in kinds if k != "sip"]
    assert named[:5] == ["initiated", "ringing", "answered", "transferring", "connected"]
    wait.until(lambda b: "user2@sipx.test" in b.find_element(By.ID, "recent").text)
    assert browser.find_element(By.ID, "result").text.startswith("call ")
    picture = SCREENSHOT if os.environ.get("SIPXCC_SCREENSHOT") == "1" else tmp_path / "page.png"
    assert browser.save_screenshot(str(picture))
    console = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert not console, console  # e.g. nothing blocked by the Content-Security-Policy
