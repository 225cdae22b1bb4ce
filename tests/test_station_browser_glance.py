# ruff: noqa: F811 - the browser fixture of test_station_browser, imported
"""The state of the chair at a glance, in a real browser (headless Chromium on a real
``relaxd --simulate --ui``, 800x480): a banner per state with its next step, the newest alert
in plain words naming the child, Start's summary and refusals, manual mode at the child's
maximum, a clinic stop that is not an e-stop, History in local time, the child's breathing
beside the chair's tempo, and every control of every tab fully in view and >= 48 px.
Screenshots go to out/station/ (docs/station/ keeps a copy of each)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from station_process import SimulatedChair, wait_for
from test_station_browser import CHROMIUM, DRIVER, Select, browser, shot, text  # noqa: F401

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="headless Chromium is absent: apt-get install -y chromium chromium-driver")

#: At 10x: calm, then a strong negative reaction every 100 s of the chair's time (a halt
#: comes whichever session is running), calm again after each.
SCRIPT = "\n".join(
    f"- {{at: {at}, mood: neutral}}\n- {{at: {at + 5}, mood: positive}}\n"
    f"- {{at: {at + 60}, mood: negative, confidence: 0.95}}\n- {{at: {at + 75}, mood: neutral}}"
    for at in range(0, 2000, 100)) + "\n"

#: Every control shown on the open tab (and the header): wholly on the 800x480 screen, at
#: least 48x48 px, and not covered by another element at its centre.
CONTROLS = """
const out = [];
for (const e of document.querySelectorAll(
    "header button, main button, main select, main input, main .button, main label.check")) {
  if (!e.offsetParent) continue;  // not shown
  const r = e.getBoundingClientRect();
  const name = (e.id || e.textContent.trim().slice(0, 30));
  if (r.top < 0 || r.left < 0 || r.bottom > innerHeight || r.right > innerWidth)
    out.push(name + " out of view " + JSON.stringify([r.left, r.top, r.right, r.bottom]));
  else if (r.height < 48 || (r.width < 48 && e.type !== "checkbox"))
    out.push(name + " smaller than 48 px " + JSON.stringify([r.width, r.height]));
  else {
    const top = document.elementFromPoint((r.left + r.right) / 2, (r.top + r.bottom) / 2);
    if (top && top !== e && !e.contains(top) && !top.contains(e)) out.push(name + " covered");
  }
}
if (document.scrollingElement.scrollHeight > innerHeight) out.push("the page scrolls");
return out;
"""


def problems(driver) -> list[str]:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 800, "height": 480, "deviceScaleFactor": 1, "mobile": False})
    return driver.execute_script(CONTROLS)


def in_view(driver, element_id: str) -> bool:
    """The element is shown and wholly on the 800x480 screen."""
    return driver.execute_script("""
const e = document.getElementById(arguments[0]);
if (!e || !e.offsetParent) return false;
const r = e.getBoundingClientRect();
return r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight && r.right <= innerWidth;
""", element_id)


def banner(driver) -> tuple[str, str]:
    b = driver.find_element("id", "banner")
    return b.get_attribute("data-kind"), b.text


def clinic_stop(chair_dir: Path, by: str = "nurse Kim") -> dict:
    """The clinic overview's software stop, as the chair's bridge sends it."""
    path = (chair_dir / "control-socket").read_text().strip()
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.sendall(json.dumps({"cmd": "clinic_stop", "by": by}).encode() + b"\n")
        return json.loads(s.makefile().readline())


def children(folder: Path) -> None:
    from relaxd.children.store import ChildStore

    store = ChildStore(folder)
    store.consent(store.add("ada", "Ada", real_name=True), "Ada's mother", "camera")
    store.add("bea", "Beatrice-Marguerite", real_name=True)  # no consent yet
    store.close()


def start(driver, child: str, scenario: str = "auto", manual: bool = False) -> None:
    Select(driver.find_element("id", "start-child")).select_by_value(child)
    Select(driver.find_element("id", "start-scenario")).select_by_value(scenario)
    box = driver.find_element("id", "start-manual")
    if box.is_selected() != manual:
        box.click()
    wait_for(lambda: text(driver, "start-why").startswith("Will play: "), "the summary")
    driver.find_element("id", "start").click()


def test_the_chair_at_a_glance_in_every_state(browser, tmp_path):
    chair_dir = tmp_path / "chair"
    children(chair_dir)
    chair = SimulatedChair(chair_dir, SCRIPT, speed=10.0)
    b = browser
    try:
        b.get(chair.link)
        wait_for(lambda: banner(b)[0] == "running", "the running banner", 30)
        assert banner(b)[1].startswith("Running: ")
        # STOP on the chair's own display: stopped, and its alert needs no acknowledgement here.
        b.find_element("id", "stop").click()
        wait_for(lambda: banner(b)[0] == "stopped", "the stopped banner")
        assert "Check on the child, then Start again" in banner(b)[1]
        assert text(b, "level-light") == "0.00" and text(b, "intensity") == "0"
        wait_for(lambda: '"estop"' in json.dumps(chair.read_events()), "the stop recorded")
        b.find_element("css selector", '[data-tab="alerts"]').click()
        wait_for(lambda: "✓ acknowledged" in text(b, "alerts"), "the chair's STOP acknowledged", 10)
        assert "STOP was pressed at the station" in text(b, "alerts")
        b.find_element("css selector", '[data-tab="now"]').click()
        assert not b.find_element("id", "alert-now").is_displayed()
        shot(b, tmp_path, "state-stopped")
        assert problems(b) == []

        # Start: whole names and consent, a refusal in plain words, fully visible.
        options = [o.text for o in b.find_elements("css selector", "#start-child option")]
        assert "Beatrice-Marguerite · NO consent" in options and "Ada · consent" in options
        start(b, "bea")
        wait_for(lambda: text(b, "message").startswith("Not started"), "the refusal")
        assert text(b, "message") == ("Not started: Beatrice-Marguerite has no guardian consent "
                                      "recorded: a therapist records it first.")
        assert "relaxd" not in text(b, "message") and in_view(b, "message")
        shot(b, tmp_path, "start-refused")

        # What will play and why, before it starts; then what is playing, not the next choice.
        Select(b.find_element("id", "start-child")).select_by_value("ada")
        wait_for(lambda: "Ada's limits" in text(b, "start-why"), "the summary for Ada")
        assert in_view(b, "start-why")
        shot(b, tmp_path, "start-summary")
        b.find_element("id", "start").click()
        wait_for(lambda: banner(b)[0] == "running", "Ada's session")
        wait_for(lambda: text(b, "start-why").startswith("Playing now: "), "what is playing")
        assert " for Ada" in text(b, "start-why") and text(b, "child") == "Ada"

        # The halt: the banner, and the newest alert on Now in plain words naming Ada.
        wait_for(lambda: banner(b)[0] == "halted", "the halt", 60)
        wait_for(lambda: b.find_element("id", "alert-now").is_displayed(), "the alert on Now")
        words = text(b, "alert-now-words")
        assert "Ada seemed very upset; everything was stopped. Check on Ada" in words, words
        assert "confidence" not in words and "estop" not in words
        assert "Check on Ada" in banner(b)[1]
        shot(b, tmp_path, "state-halted")
        assert problems(b) == []
        b.find_element("id", "alert-now-ack").click()
        wait_for(lambda: not b.find_element("id", "alert-now").is_displayed(), "acknowledged")

        # A clinic stop: worded as such, never as the e-stop; the station's Start clears it.
        assert clinic_stop(chair_dir)["ok"]
        wait_for(lambda: banner(b)[0] == "clinic", "the clinic stop's banner")
        assert banner(b)[1] == ("Stopped from the clinic desk — not an emergency stop.\n"
                                "Check on Ada, then Start again.")
        assert "E-STOP" not in b.find_element("tag name", "main").text
        wait_for(lambda: b.find_element("id", "alert-now").is_displayed(), "its alert")
        assert text(b, "alert-now-words").endswith(
            "Stopped from the clinic desk — not an emergency stop. Check on Ada, then Start again.")
        shot(b, tmp_path, "state-clinic-stop")
        assert problems(b) == []
        b.find_element("id", "alert-now-ack").click()

        # Manual: MANUAL — camera off, and "at Ada's maximum" at the limit.
        start(b, "ada", manual=True)
        wait_for(lambda: banner(b)[0] == "manual", "the manual banner")
        assert banner(b)[1].startswith("MANUAL — camera off")
        for _ in range(12):
            b.execute_script('document.getElementById("message").textContent = ""')
            b.find_element("id", "manual-up").click()
            wait_for(lambda: text(b, "message"), "the step's answer")
            if "maximum" in text(b, "message"):
                break
        assert text(b, "message").startswith("At Ada's maximum ("), text(b, "message")
        shot(b, tmp_path, "state-manual")
        assert problems(b) == []

        # End gently: fading, then ended; the next step is a new Start.
        b.find_element("id", "end-gently").click()
        seen = []
        wait_for(lambda: seen.append(banner(b)) or seen[-1][0] == "ended", "the end", 60)
        assert ("running", "Ending gently: the outputs fade out.\nNothing to do.") in seen
        assert "Start a new session when Ada is ready" in banner(b)[1]
        shot(b, tmp_path, "state-ended")
        assert problems(b) == []

        # History: local time, child, scenario, duration and outcome; the chosen one shown.
        b.find_element("css selector", '[data-tab="history"]').click()
        wait_for(lambda: b.find_elements("css selector", "#sessions button"), "sessions")
        first = b.find_elements("css selector", "#sessions button")[0]
        assert "Ada" in first.text and "ended" in first.text and "T" not in first.text[:12]
        first.click()
        wait_for(lambda: first.get_attribute("aria-pressed") == "true", "the chosen session")
        wait_for(lambda: b.find_element("id", "csv").is_displayed(), "the plot")
        shot(b, tmp_path, "history")
        for tab in ("alerts", "history", "scenarios", "audit", "about", "now"):
            b.find_element("css selector", f'[data-tab="{tab}"]').click()
            assert problems(b) == [], tab
            shot(b, tmp_path, f"tab-{tab}")
            if tab == "alerts":  # each alert keeps its child's name after later sessions
                assert "Ada seemed very upset; everything was stopped." in text(b, "alerts")
            if tab == "about":  # the simulated chair has no network listener
                wait_for(lambda: text(b, "cert-fingerprint").startswith("none: "), "About")
    finally:
        chair.close()


SHOW = """
window.extra = arguments[0];  // on every live state from now on, as the daemon would send it
if (!window.wrapped) {
  const real = render;
  window.wrapped = true;
  render = (s) => real(Object.assign({}, s, window.extra));
}
render(last);
const shown = (row, id) => document.getElementById(row).offsetParent
  ? document.getElementById(id).textContent : null;
return [document.getElementById("breath-rates").textContent, shown("pulse-row", "pulse"),
        shown("movement-row", "movement")];
"""


#: Pixels of a colour (r, g, b within 30) in a band of the History plot.
COLOURED = """
const c = document.getElementById("plot"), [r, g, b, top, bottom] = arguments[0];
const data = c.getContext("2d").getImageData(0, top, c.width, bottom - top).data;
let n = 0;
for (let i = 0; i < data.length; i += 4)
  if (Math.abs(data[i] - r) < 30 && Math.abs(data[i + 1] - g) < 30 && Math.abs(data[i + 2] - b) < 30) n++;
return n;
"""


def recorded_session_with_vitals(folder: Path) -> None:
    """A past session whose body readings were recorded (breathing slowing towards the
    tempo, the pulse unknown for a while)."""
    from relaxd.records.sessions import SessionSink

    sink = SessionSink(folder, scenario="Calm blue waves", source="test")
    sink.write({"t": 0.0, "type": "session", "child": None})
    for i in range(40):
        t = 5.0 * i
        sink.write({"t": t, "type": "levels", "light": 0.3, "audio": 0.2, "vibration": 0.1})
        sink.write({"t": t, "type": "vitals", "breathing": 20 - i / 4, "movement": 0.1,
                    "pulse": None if 10 <= i < 15 else 90 - i / 2,
                    "quality": {"breathing": 0.8, "pulse": 0.6}})
    sink.close()


def test_the_childs_breathing_beside_the_chairs_tempo(browser, tmp_path):
    """The words come from the station (tested at HTTP level too); here, that a caregiver sees
    them beside the breathing dot, with the pulse as a trend, and nothing pushed off screen;
    and History draws a session's body readings."""
    recorded_session_with_vitals(tmp_path / "chair")
    chair = SimulatedChair(tmp_path / "chair", SCRIPT, speed=10.0)
    b = browser
    try:
        b.get(chair.link)
        wait_for(lambda: banner(b)[0] == "running", "the running banner", 30)
        body = {"breathing": "Ada 9 / min · chair 7 / min", "pulse": "88 / min (quality 70 %)",
                "movement": "still (0.1)"}
        shown = b.execute_script(SHOW, {"body": body, "child_name": "Ada",
                                        "breath": {"bpm": 7, "phase": 0.2}})
        assert shown == ["Ada 9 / min · chair 7 / min", "88 / min (quality 70 %)", "still (0.1)"]
        assert problems(b) == []
        shot(b, tmp_path, "breathing-along")
        unknown = {"breathing": "Ada unknown · chair 7 / min", "pulse": "unknown",
                   "movement": "unknown"}
        assert b.execute_script(SHOW, {"body": unknown, "breath": {"bpm": 7, "phase": 0.2}}) == [
            "Ada unknown · chair 7 / min", "unknown", "unknown"]
        absent = {"breathing": "chair 7 / min", "pulse": "", "movement": ""}
        assert b.execute_script(SHOW, {"body": absent, "breath": {"bpm": 7, "phase": 0.2}}) == [
            "chair 7 / min", None, None]

        b.find_element("css selector", '[data-tab="history"]').click()
        wait_for(lambda: len(b.find_elements("css selector", "#sessions button")) >= 2, "sessions")
        b.find_elements("css selector", "#sessions button")[-1].click()  # the recorded one
        wait_for(lambda: b.find_element("id", "csv").is_displayed(), "the plot")
        body_band = [158, 230]
        assert b.execute_script(COLOURED, [0x7b, 0x2c, 0xbf, *body_band]) > 100  # breathing
        assert b.execute_script(COLOURED, [0xd6, 0x28, 0x28, *body_band]) > 100  # pulse
        assert problems(b) == []
        shot(b, tmp_path, "history-body")
    finally:
        chair.close()
