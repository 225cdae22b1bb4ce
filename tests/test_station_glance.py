# ruff: noqa: F811 - the fixtures of test_station, imported
"""The chair at a glance, at HTTP level (Starlette's TestClient against a stand-in daemon on a
real control socket): the banner for every state with its next step, a clinic stop worded as
such and never as the e-stop, alerts in plain words naming the child, acknowledge all, Start's
refusals without shell commands, manual mode at the child's maximum, the child's breathing
beside the chair's tempo (``vitals`` present and absent), History's outcome, and the About
page's certificate fingerprint. The browser side: tests/test_station_browser_glance.py."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("starlette")
from test_station import (  # noqa: E402, F401 - the fixtures
    StandInDaemon,
    client,
    daemon,
    place,
    post,
    signed_in,
    station,
)

from relaxd.station import words  # noqa: E402

RUNNING = {"state": "running", "scenario": "Calm blue waves", "child": "ada", "t": 30.0,
           "at": time.time(), "estop": False, "latch_causes": [], "manual": False,
           "levels": {"light": 0.3, "audio": 0.2, "vibration": 0.1}, "intensity": 0.4,
           "breath": {"bpm": 7.0, "phase": 0.2}, "alerts": []}


def know_names(c) -> None:
    """The station has the children's names from the daemon (its link may still be connecting:
    a page shows "the child" until they arrive)."""
    deadline = time.monotonic() + 5
    while c.get("/api/children").status_code != 200:
        assert time.monotonic() < deadline, "the station never had the children's names"
        time.sleep(0.02)


def show(daemon, c, **changes) -> dict:
    """Publish a state as the daemon would; the station's view of it once it has arrived."""
    state = {**RUNNING, "at": time.time(), **changes}
    daemon.server.publish(state)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        view = c.get("/api/state").json()
        if all(view.get(k) == v for k, v in changes.items() if k != "alerts") and \
                len(view.get("alerts", [])) == len(state["alerts"]):
            return view
        time.sleep(0.02)
    raise AssertionError(f"the station never showed {changes}")


STATES = [  # (the state's changes, the banner's kind, words in its title, words in its next)
    ({"state": "idle", "waiting": True, "child": None}, "waiting", "Waiting for Start",
     "Choose the child"),
    ({}, "running", "Running: Calm blue waves", "Watch Ada"),
    ({"state": "reduced"}, "running", "Running, calmer", "Ada seemed unsettled"),
    ({"state": "halted"}, "halted", "HALTED — everything is off.", "Check on Ada"),
    ({"state": "paused"}, "halted", "PAUSED — Ada is not seen.", "Is Ada still in the chair?"),
    ({"state": "fading"}, "running", "Ending gently", "Nothing to do."),
    ({"state": "ended"}, "ended", "Session ended.", "Start a new session when Ada is ready."),
    ({"state": "running", "manual": True}, "manual", "MANUAL — camera off", "suit Ada"),
    ({"state": "estopped", "estop": True, "latch_causes": ["station-stop"],
      "station_stop": True}, "stopped", "STOPPED from the station", "Check on Ada, then Start"),
    ({"state": "estopped", "estop": True, "latch_causes": ["clinic-stop"], "station_stop": True},
     "clinic", "Stopped from the clinic desk — not an emergency stop.",
     "Check on Ada, then Start again."),
    ({"state": "estopped", "estop": True, "estop_pressed": True, "latch_causes": ["estop"]},
     "estop", "E-STOP PRESSED", "Twist the e-stop free"),
    ({"state": "estopped", "estop": True, "latch_causes": ["clinic-stop", "fault"],
      "latch": "a fault"}, "estop", "STOPPED — a fault", "hold the reset button"),
]


def test_one_banner_per_state_with_its_colour_words_and_next_step(station, daemon):
    c, _ = signed_in(station, "bob")
    with c:
        c.get("/api/children")  # the station learns Ada's name
        for changes, kind, title, next_step in STATES:
            view = show(daemon, c, **changes)
            b = view["banner"]
            assert (b["kind"], title in b["title"], next_step in b["next"]) == (
                kind, True, True), (changes, b)
        view = show(daemon, c, state="fading")
        view = show(daemon, c, state="idle", waiting=True)  # the chair goes straight on waiting
        assert view["banner"]["kind"] == "ended" and view["child_name"] == "Ada"
        view = show(daemon, c, state="running")
        assert show(daemon, c, state="idle", waiting=True)["banner"]["kind"] == "waiting"
    assert words.banner({"connected": False}, "Ada")["kind"] == "offline"


def test_a_clinic_stop_never_reads_as_an_emergency_stop(station, daemon):
    c, _ = signed_in(station, "bob")
    with c:
        know_names(c)
        alert = {"id": 7, "t": 31.0, "at": time.time(), "reason": "clinic-stop",
                 "detail": "clinic stop by nurse Kim", "acknowledged": False}
        view = show(daemon, c, state="estopped", estop=True, latch_causes=["clinic-stop"],
                    station_stop=True, alerts=[alert])
        said = view["banner"]["title"] + view["banner"]["next"] + view["alerts"][0]["words"]
        assert "not an emergency stop" in said
        assert not any(w in said.lower() for w in ("e-stop", "emergency stop (", "estop"))
        assert view["alerts"][0]["words"] == (
            "Stopped from the clinic desk — not an emergency stop. Check on Ada, then Start "
            "again.")


def test_alerts_in_plain_words_naming_the_child_and_acknowledge_all(station, daemon):
    now = time.time()
    halt = {"id": 1, "t": 20.0, "at": now - 10, "reason": "halt", "acknowledged": False,
            "detail": "strong negative reaction (confidence 0.95 over 1.0 s): stimuli halted"}
    body = {"id": 2, "t": 25.0, "at": now - 5, "reason": "halt", "acknowledged": False,
            "detail": "breathing fast and restless; face calm for 20 s: stimuli halted"}
    stop = {"id": 3, "t": 26.0, "at": now - 4, "reason": "estop", "acknowledged": False,
            "detail": "emergency stop (station stop by kiosk)"}
    old = {"id": 4, "t": 5.0, "at": now - 3600, "reason": "pause", "acknowledged": True,
           "detail": "no face for 20 s: the child may have left"}
    c, token = signed_in(station, "bob")
    with c:
        know_names(c)
        view = show(daemon, c, alerts=[old, halt, body, stop])
        said = {a["id"]: a["words"] for a in view["alerts"]}
        assert said[1] == ("Ada seemed very upset; everything was stopped. Check on Ada: it "
                           "starts again gently once Ada is calm, or end the session.")
        assert said[2].startswith("Ada was breathing fast and restless while the face looked "
                                  "calm; everything was stopped.")
        assert said[3].startswith("STOP was pressed at the station (kiosk); everything is off.")
        assert said[4].startswith("The child's face was not seen")  # before Ada's session
        assert all("confidence" not in w and "estop" not in w for w in said.values())
        assert view["child"] == "ada" and view["child_name"] == "Ada"
        assert [a["child"] for a in view["alerts"]] == [None, "ada", "ada", "ada"]
        # A later session keeps each alert's child.
        later = show(daemon, c, child="bea", t=1.0, alerts=[old, halt, body, stop])
        assert [a["child"] for a in later["alerts"]] == [None, "ada", "ada", "ada"]
        r = post(c, "/api/alerts/ack-all", token)
        assert r.status_code == 200 and r.json()["acknowledged"] == [1, 2, 3]
        assert [m["alert"] for m in daemon.commands if m["cmd"] == "ack"] == [1, 2, 3]
        assert post(c, "/api/alerts/ack-all", None).status_code == 403


class RefusingChair(StandInDaemon):
    """Refuses a Start for a child without consent as the daemon does (with the shell command
    a technician would use), and moves the intensity on a manual step up to 0.4."""

    def _loop(self) -> None:
        while not self._done.wait(0.01):
            for command in self.server.take():
                self.commands.append(command.args)
                if command.name == "start":
                    command.finish({"ok": False, "error": "child bea: no guardian consent "
                                    "recorded (relaxd children set bea --consent-by NAME)"})
                    continue
                if command.name == "nudge":
                    state = self.server._state
                    up = min(0.4, round(state["intensity"] + 0.05 * command.args["steps"], 2))
                    self.server.publish({**state, "intensity": up})
                    self.server.publish({**state, "intensity": up, "t": state["t"] + 0.1})
                command.finish({"ok": True})


@pytest.fixture
def refusing(place):
    d = RefusingChair(place / "ctl.sock")
    yield d
    d.close()


def test_start_refusals_in_plain_words_and_manual_at_the_childs_maximum(place, refusing):
    from relaxd.station.auth import RateLimit, Sessions, UserStore
    from relaxd.station.link import ChairLink
    from relaxd.station.server import Station

    users = UserStore(place / "ui" / "users.json")
    users.set_user("bob", "correct horse battery", "caregiver")
    st = Station(link=ChairLink(place / "ctl.sock"), users=users,
                 sessions=Sessions(3600, place / "ui" / "sessions.json"), records=place / "r",
                 scenario_dirs=[place / "s"], limiter=RateLimit())
    st.names["bea"] = "Beatrice-Marguerite"
    c, token = signed_in(st, "bob")
    with c:
        r = post(c, "/api/start", token, {"scenario": "auto", "child": "bea"})
        assert r.status_code == 409
        assert r.json()["error"] == ("Beatrice-Marguerite has no guardian consent recorded: a "
                                     "therapist records it first.")
        assert "relaxd" in r.json()["detail"]  # the daemon's own words, for the record
        show(refusing, c, manual=True, intensity=0.3)
        c.get("/api/children")  # Ada's name
        said = [post(c, "/api/manual", token, {"steps": 1}).json()["words"] for _ in range(3)]
        assert said == ["Intensity 0.35.", "Intensity 0.40.",
                        "At Ada's maximum (0.40): it goes no further."]


@pytest.mark.parametrize("vitals, expected", [
    ({"breathing": 9.0, "pulse": 88.4, "movement": 0.1,
      "quality": {"breathing": 0.8, "pulse": 0.7}},
     {"breathing": "Ada 9 / min · chair 7 / min", "pulse": "88 / min (quality 70 %)",
      "movement": "still (0.1)"}),
    ({"breathing": None, "pulse": None, "movement": 0.7,
      "quality": {"breathing": 0.1, "pulse": 0.0}},
     {"breathing": "Ada unknown · chair 7 / min", "pulse": "unknown",
      "movement": "restless (0.7)"}),
    (None, {"breathing": "Ada unknown · chair 7 / min", "pulse": "unknown",
            "movement": "unknown"}),
    ("absent", {"breathing": "chair 7 / min", "pulse": "", "movement": ""}),
])
def test_the_childs_breathing_beside_the_chairs_tempo(station, daemon, vitals, expected):
    c, _ = signed_in(station, "bob")
    with c:
        know_names(c)
        state = {} if vitals == "absent" else {"vitals": vitals}
        view = show(daemon, c, breath={"bpm": 7.0, "phase": 0.5}, **state)
        assert view["body"] == expected
        assert "alarm" not in str(view["body"]).lower()
    assert words.body_words({"breath": None}, "Ada") is None  # no tempo, no body readings


def test_a_chest_out_of_view_is_said_where_the_breathing_would_be():
    view = {"breath": {"bpm": 7.0}, "vitals": {"breathing": None, "movement": 0.1},
            "chest_in_view": False}
    assert words.body_words(view, "Ada")["breathing"] == \
        "Ada unknown (chest out of the camera's view) · chair 7 / min"
    view["chest_in_view"] = True
    assert words.body_words(view, "Ada")["breathing"] == "Ada unknown · chair 7 / min"


def test_history_outcomes_and_the_waiting_session_left_out(station, daemon, place):
    from relaxd.records.sessions import SessionSink

    for events in ([{"t": 0.0, "type": "session", "child": "ada"}],
                   [{"t": 1.0, "type": "estop", "action": "press"}], []):
        sink = SessionSink(place / "records", scenario="Calm blue waves", source="test")
        for e in events:
            sink.write(e)
        if events:
            sink.close()  # the last one is still open: the current session
    c, _ = signed_in(station, "bob")
    with c:
        know_names(c)
        show(daemon, c, state="running")
        rows = c.get("/api/sessions").json()
        assert rows[0]["running"] and rows[0]["outcome"] == "still running"
        assert rows[1]["outcome"] == "stopped" and rows[2]["child_name"] == "Ada"
        show(daemon, c, state="idle", waiting=True)
        assert [r["id"] for r in c.get("/api/sessions").json()] == [r["id"] for r in rows[1:]]


def test_the_about_page_shows_the_certificate_fingerprint(station, place):
    from relaxd.station import cert

    c, _ = signed_in(station, "bob")
    with c:
        assert c.get("/api/about").json() == {"certificate": None}
        info = cert.make(place / "ui.crt", place / "ui.key", ["DNS:chair-1", "IP:127.0.0.1"])
        station.certificate = place / "ui.crt"
        shown = c.get("/api/about").json()["certificate"]
        assert shown["fingerprint"] == info.fingerprint and len(info.fingerprint) == 95
        assert shown["names"] == ["DNS:chair-1", "IP Address:127.0.0.1"]
    assert client(station, "192.0.2.9").get("/api/about").status_code == 401


class AlertingChair(StandInDaemon):
    """Its STOP raises the alert the daemon raises for a station stop."""

    def _stop(self, by: str) -> int:
        seq = super()._stop(by)
        alert = {"id": seq, "t": 1.0, "at": time.time(), "reason": "estop",
                 "detail": f"emergency stop (station stop by {by})", "acknowledged": False}
        self.server.publish({**RUNNING, "state": "estopped", "stop_seq": seq, "at": time.time(),
                             "alerts": [alert]})
        return seq


@pytest.fixture
def alerting(place):
    d = AlertingChair(place / "ctl.sock")
    yield d
    d.close()


def test_a_stop_pressed_at_the_chair_needs_no_acknowledgement_there_one_from_a_tablet_does(
        place, alerting):
    import re

    from relaxd.station.auth import RateLimit, Sessions, UserStore
    from relaxd.station.link import ChairLink
    from relaxd.station.server import Station

    users = UserStore(place / "ui" / "users.json")
    users.set_user("bob", "correct horse battery", "caregiver")
    st = Station(link=ChairLink(place / "ctl.sock"), users=users,
                 sessions=Sessions(3600, place / "ui" / "sessions.json"), records=place / "r",
                 scenario_dirs=[place / "s"], limiter=RateLimit())

    def acks() -> list[dict]:
        return [m for m in alerting.commands if m["cmd"] == "ack"]

    tablet, token = signed_in(st, "bob", address="192.0.2.7")
    with tablet:
        assert post(tablet, "/api/stop", token).status_code == 200
        time.sleep(1.5)
        assert acks() == []  # the tablet's STOP still sounds at the chair until acknowledged
    with client(st) as kiosk:
        page = kiosk.get("/login").text
        stop = re.search(r'<meta name="stop-token" content="([^"]+)">', page).group(1)
        r = kiosk.post("/api/stop", json={}, headers={"X-Stop-Token": stop,
                                                      "Origin": "http://testserver"})
        assert r.status_code == 200
        deadline = time.monotonic() + 5
        while not acks() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [(m["alert"], m["by"]) for m in acks()] == [
            (2, "chair display (pressed STOP at the chair)")]
