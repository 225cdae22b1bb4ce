"""The clinic overview in a real headless Chromium (Debian's chromium and chromium-driver, driven
by Selenium) against a real mosquitto, two simulated chairs with their bridges and
``relaxd overview``: the tiles, an alert arriving, the software stop (confirmed, and not drawn
as an emergency stop), and the full-screen warning when the broker is lost. Screenshots go to
the test's tmp folder and to out/clinic/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.clinic_process import (
    MOSQUITTO,
    MOSQUITTO_PASSWD,
    OVERVIEW_USER,
    ROOT,
    VIEWER_USER,
    Broker,
    Chair,
    OverviewProcess,
    wait_until,
)

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                "(pip install -e '.[test]')")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="headless Chromium is absent: "
                       "apt-get install -y chromium chromium-driver"),
    pytest.mark.skipif(MOSQUITTO is None or MOSQUITTO_PASSWD is None,
                       reason="mosquitto not installed (apt-get install mosquitto)")]


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,800", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def clinic(tmp_path):
    broker = Broker(tmp_path / "broker", ["A", "B", OVERVIEW_USER, VIEWER_USER])
    broker.start()
    chairs = {c: Chair(tmp_path, broker, c) for c in ("A", "B")}
    overview = None
    try:
        overview = OverviewProcess(tmp_path, broker)
        yield broker, chairs, overview
    finally:
        if overview is not None:
            overview.stop()
        for chair in chairs.values():
            chair.stop()
        broker.kill()


def shot(driver, tmp_path: Path, name: str) -> None:
    driver.save_screenshot(str(tmp_path / f"{name}.png"))
    keep = ROOT / "out" / "clinic"
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / f"{name}.png", keep / f"{name}.png")


def tile(driver, chair: str):
    found = driver.find_elements("css selector", f'article.tile[data-chair="{chair}"]')
    return found[0] if found else None


TILE = """const t = document.querySelector(`article.tile[data-chair="${arguments[0]}"]`);
return t ? [t.querySelector(".look").textContent, t.textContent, t.className] : ["", "", ""];"""


def looks(driver, chair: str) -> str:
    """What chair's tile says it is doing ("" while it is not drawn)."""
    return driver.execute_script(TILE, chair)[0]


def tile_text(driver, chair: str) -> tuple[str, str]:
    """The tile's whole text and its classes."""
    _, text, classes = driver.execute_script(TILE, chair)
    return text, classes


def test_the_nurse_sees_the_chairs_an_alert_stops_one_and_is_warned_of_a_lost_broker(
        browser, clinic, tmp_path):
    broker, chairs, overview = clinic
    browser.get(overview.link)  # the printed link signs this browser in
    assert "token" not in browser.current_url
    wait_until(lambda: looks(browser, "A") == looks(browser, "B") == "running", 90,
               "both chairs' tiles running")
    assert "simulated A" in tile_text(browser, "A")[0]
    assert not browser.find_element("id", "broker-lost").is_displayed()
    shot(browser, tmp_path, "tiles")

    # The software stop: plainly labelled, outlined, not red; it asks first.
    stop = tile(browser, "A").find_element("css selector", 'button[data-command="stop"]')
    assert stop.text == "Software stop" and "emergency" not in stop.text.lower()
    style = browser.execute_script("const s = getComputedStyle(arguments[0]); return "
                                   "[s.backgroundColor, s.borderRadius, s.color];", stop)
    assert style[0] == "rgb(255, 255, 255)" and style[1] == "4px", style  # no red mushroom
    stop.click()
    asked = wait_until(lambda: _alert_open(browser), 5, "the confirmation")
    assert "Software stop of chair A" in asked and "station Start" in asked
    browser.switch_to.alert.dismiss()  # thought better of it: nothing is sent
    assert chairs["A"].state()["latch_causes"] == []
    tile(browser, "A").find_element("css selector", 'button[data-command="stop"]').click()
    wait_until(lambda: _alert_open(browser), 5, "the confirmation again")
    browser.switch_to.alert.accept()

    # The stop reaches chair A only; its alert arrives on the screen with the room.
    wait_until(lambda: "chair A: done" in browser.find_element("id", "message").text, 20,
               "the chair's reply")
    assert chairs["A"].state()["levels"] == {"light": 0.0, "audio": 0.0, "vibration": 0.0}
    assert chairs["B"].state()["latch_causes"] == []
    wait_until(lambda: looks(browser, "A") == "stopped", 20, "A's tile stopped")
    row = wait_until(lambda: next((r.text for r in browser.find_elements(
        "css selector", "#alerts tbody tr") if "clinic-stop" in r.text), None), 20,
        "the alert on the screen")
    assert "simulated A" in row and "clinic stop by clinic:technician" in row
    # the tile learns of the alert from the chair's retained list, which may come after the
    # alert itself
    wait_until(lambda: "alerting" in tile_text(browser, "A")[1], 20, "A's tile alerting")
    assert looks(browser, "B") == "running"
    shot(browser, tmp_path, "stopped")

    # The broker lost: the whole screen says alerts are not reaching it; back when it returns.
    broker.kill()
    cover = browser.find_element("id", "broker-lost")
    wait_until(cover.is_displayed, 30, "the broker-lost warning")
    assert "Alerts are NOT reaching this screen" in cover.text
    size = browser.execute_script("const r = arguments[0].getBoundingClientRect(); return "
                                  "[r.left, r.top, r.width - innerWidth, r.height - innerHeight]",
                                  cover)
    assert size == [0, 0, 0, 0], size  # covers everything
    shot(browser, tmp_path, "broker-lost")
    broker.start()
    wait_until(lambda: not cover.is_displayed(), 60, "the warning gone with the broker back")
    wait_until(lambda: looks(browser, "B") == "running", 30, "B's tile after the outage")


def test_an_overview_on_the_viewers_broker_account_shows_no_command(browser, clinic, tmp_path):
    broker, _, _ = clinic
    viewer = OverviewProcess(tmp_path, broker, VIEWER_USER, name="viewer")
    try:
        browser.get(viewer.link)  # signed in on the web as a nurse, but read-only on the broker
        wait_until(lambda: looks(browser, "A") == looks(browser, "B") == "running", 90,
                   "both chairs' tiles running")
        assert browser.find_element("id", "read-only").is_displayed()
        assert browser.find_elements("css selector", "button[data-command]") == []
        shot(browser, tmp_path, "viewer")
    finally:
        viewer.stop()


def _alert_open(driver) -> str | None:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        return driver.switch_to.alert.text
    except NoAlertPresentException:
        return None
