"""The caregiver station in a real browser: headless Chromium (Debian's chromium and
chromium-driver) driven by Selenium against a real ``relaxd --simulate --ui``, at the touch
display's 800x480. Screenshots go to the test's tmp folder and to out/station/."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from station_process import ROOT, SimulatedChair, wait_for

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                "(pip install -e '.[test]')")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="headless Chromium is absent: apt-get install -y chromium chromium-driver")

#: At 20x: settles, enjoys it (levels rise), a strong negative reaction (halt + alert), calm.
SCRIPT = """
- {at: 0, mood: neutral}
- {at: 10, mood: positive}
- {at: 60, mood: negative, confidence: 0.95}
- {at: 75, mood: neutral}
- {at: 110, mood: positive}
"""


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=800,480", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_window_size(800, 480)
    yield driver
    driver.quit()


def shot(driver, tmp_path: Path, name: str) -> None:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 800, "height": 480, "deviceScaleFactor": 1, "mobile": False})
    driver.save_screenshot(str(tmp_path / f"{name}.png"))
    keep = ROOT / "out" / "station"
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / f"{name}.png", keep / f"{name}.png")


def Select(element):  # noqa: N802 - selenium's name
    from selenium.webdriver.support.ui import Select as Chosen

    return Chosen(element)


OUT_OF_VIEW = """
const out = [];
for (const e of document.querySelectorAll(
    "header button, #tab-now button, #tab-now select, #tab-now input, #tab-now label.check")) {
  if (!e.offsetParent) continue;  // not shown
  const r = e.getBoundingClientRect();
  if (r.top < 0 || r.left < 0 || r.bottom > innerHeight || r.right > innerWidth)
    out.push((e.id || e.textContent.trim()) + " " + JSON.stringify([r.left, r.top, r.right, r.bottom]));
}
if (document.scrollingElement.scrollHeight > innerHeight) out.push("the page scrolls");
return out;
"""


def out_of_view(driver) -> list[str]:
    """Every control of the Now page (and the header) not wholly inside the 800x480 screen."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 800, "height": 480, "deviceScaleFactor": 1, "mobile": False})
    return driver.execute_script(OUT_OF_VIEW)


def text(driver, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def test_a_caregiver_watches_stops_acknowledges_and_a_therapist_uploads(browser, tmp_path):
    from relaxd.children.store import ChildStore

    store = ChildStore(tmp_path / "chair")  # a child for the Start screen
    store.consent(store.add("ada", "Ada", real_name=True), "Ada's mother", "camera")
    store.close()
    chair = SimulatedChair(tmp_path / "chair", SCRIPT)
    try:
        browser.get(chair.link)  # the printed link signs this browser in
        wait_for(lambda: text(browser, "state") not in ("", "…"), "the live state")
        assert "token" not in browser.current_url

        moods, lights = set(), set()

        def changing():
            moods.add(text(browser, "mood"))
            lights.add(text(browser, "level-light"))
            return len(moods) >= 2 and len(lights) >= 3

        wait_for(changing, "the mood and the levels to change as the script plays", 60, 0.1)
        wait_for(lambda: "/ min" in text(browser, "breath-rates"), "the breathing indicator")
        shot(browser, tmp_path, "now")
        assert out_of_view(browser) == []

        wait_for(lambda: browser.find_elements("css selector", "button.ack"),
                 "the halt alert", 60)
        browser.find_element("css selector", '[data-tab="alerts"]').click()
        shot(browser, tmp_path, "alerts")
        browser.find_element("css selector", "button.ack").click()
        wait_for(lambda: not browser.find_elements("css selector", "button.ack")
                 and "acknowledged" in text(browser, "alerts"), "the acknowledgement")

        browser.find_element("css selector", '[data-tab="now"]').click()
        wait_for(lambda: float(text(browser, "level-light")) > 0, "light on again", 60)
        browser.find_element("id", "stop").click()
        wait_for(lambda: all(text(browser, f"level-{k}") == "0.00"
                             for k in ("light", "audio", "vibration")), "every level at 0")
        wait_for(lambda: text(browser, "state") == "STOPPED", "the stopped state")
        assert "STOPPED from the station" in text(browser, "banner")
        shot(browser, tmp_path, "stopped")
        assert out_of_view(browser) == []  # the banner pushes no control off the screen

        # A deliberate Start clears the stop: the caregiver chooses the child; auto says why.
        browser.find_element("id", "start").click()
        wait_for(lambda: "Choose the child" in text(browser, "message"), "the child asked for")
        Select(browser.find_element("id", "start-child")).select_by_value("ada")
        Select(browser.find_element("id", "start-scenario")).select_by_value("auto")
        wait_for(lambda: text(browser, "start-why").startswith("Will play: "), "auto's reason")
        browser.find_element("id", "start").click()
        wait_for(lambda: text(browser, "state") == "running", "the new session")
        wait_for(lambda: text(browser, "child") == "Ada", "whose session it is")
        assert text(browser, "message").startswith("Started: ")
        shot(browser, tmp_path, "child")
        assert out_of_view(browser) == []

        bad = (ROOT / "scenarios" / "gentle-start.yaml").read_text().replace(
            "brightness: 0.", "brightness: 7.", 1)
        (tmp_path / "bad.yaml").write_text(bad)
        browser.find_element("css selector", '[data-tab="scenarios"]').click()
        browser.find_element("css selector", "button.preview").click()
        wait_for(lambda: text(browser, "timeline"), "the scenario's timeline")
        browser.find_element("id", "upload-file").send_keys(str(tmp_path / "bad.yaml"))
        browser.find_element("id", "upload-check").click()
        wait_for(lambda: re.search(r"bad\.yaml:\d+:\d+: ", text(browser, "upload-result")),
                 "the FILE:LINE:COL message")
        shot(browser, tmp_path, "scenarios")

        browser.find_element("css selector", '[data-tab="history"]').click()
        wait_for(lambda: browser.find_elements("css selector", "#sessions button"), "sessions")
        newest = browser.find_elements("css selector", "#sessions button")[0]
        assert " Ada\n" in newest.text, newest.text  # the child's session, by name
        browser.find_elements("css selector", "#sessions button")[-1].click()
        wait_for(lambda: browser.find_element("id", "csv").is_displayed(), "the plot and CSV")
        shot(browser, tmp_path, "history")
        for button in browser.find_elements("css selector", "button"):
            if button.is_displayed():
                size = button.size
                assert size["height"] >= 48 and size["width"] >= 48, button.text
    finally:
        chair.close()


SHOW_HEAT = """
render(Object.assign({}, last, {thermal: arguments[0]}));
const line = document.getElementById("thermal");
return [line.offsetParent ? line.textContent : null, OUT];
"""


def test_the_now_page_shows_a_warm_or_too_hot_chair_in_one_line(browser, tmp_path):
    chair = SimulatedChair(tmp_path / "chair", SCRIPT)
    try:
        browser.get(chair.link)
        wait_for(lambda: text(browser, "state") not in ("", "…"), "the live state")
        out_of_view(browser)  # the touch display's size
        shown = SHOW_HEAT.replace("OUT", "(() => {" + OUT_OF_VIEW + "})()")
        ok = {"temp_c": 52.0, "level": "ok", "throttled": []}
        assert browser.execute_script(shown, ok) == [None, []]
        warm = {"temp_c": 76.4, "level": "warm", "throttled": []}
        assert browser.execute_script(shown, warm) == [
            "The chair is warm (76.4 °C): it stops by itself if it gets hotter.", []]
        hot = {"temp_c": 81.2, "level": "too hot", "throttled": ["throttled"]}
        line, hidden = browser.execute_script(shown, hot)
        assert line.startswith("The chair is too hot (81.2 °C): every output is off.")
        assert line.endswith("The Pi reports: throttled.") and hidden == []
        shot(browser, tmp_path, "too-hot")
    finally:
        chair.close()


def test_stop_is_on_every_page_and_a_stop_that_does_not_reach_the_chair_fills_the_screen(
        browser, tmp_path):
    import os
    import signal

    chair = SimulatedChair(tmp_path / "chair", SCRIPT)
    station_pid = None
    try:
        browser.get(chair.link)
        wait_for(lambda: text(browser, "state") not in ("", "…"), "the live state")
        for tab in ("now", "alerts", "history", "scenarios", "audit"):
            browser.find_element("css selector", f'[data-tab="{tab}"]').click()
            assert browser.find_element("id", "stop").is_displayed(), tab
            assert out_of_view(browser) == [] or tab != "now"
        browser.find_element("css selector", '[data-tab="now"]').click()
        # The chair's display signed out: its sign-in page still has STOP, and it works.
        browser.delete_all_cookies()
        browser.get(chair.link.split("?")[0] + "login")
        assert browser.find_element("id", "stop").is_displayed()
        assert browser.find_elements("css selector", ".keypad button[data-key]")
        shot(browser, tmp_path, "sign-in-kiosk")
        browser.find_element("id", "stop").click()
        wait_for(lambda: any(e.get("type") == "estop" for e in chair.read_events()),
                 "the STOP from the sign-in page")
        assert "hidden" in browser.find_element("id", "stop-failed").get_attribute("class")
        # The daemon gone: STOP cannot reach the chair, and says so on the whole screen.
        station_pid = chair.station_pid()
        chair.proc.send_signal(signal.SIGKILL)
        chair.proc.wait(10)
        browser.find_element("id", "stop").click()
        overlay = browser.find_element("id", "stop-failed")
        wait_for(overlay.is_displayed, "the full-screen STOP warning", 10)
        assert "STOP did NOT reach the chair — press the red button on the chair" in overlay.text
        size = overlay.size
        assert size["width"] >= 800 and size["height"] >= 480
        shot(browser, tmp_path, "stop-not-reached")
        wait_for(lambda: overlay.get_attribute("data-state") == "gave-up", "10 s of retries", 20)
        assert overlay.is_displayed()  # it stays until dismissed
        browser.find_element("id", "stop-dismiss").click()
        assert not overlay.is_displayed()
    finally:
        if station_pid is not None:
            os.kill(station_pid, signal.SIGTERM)
        chair.close()
