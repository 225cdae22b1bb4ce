"""The clinic with real parts: mosquitto (deploy/mosquitto/relaxd.acl, a password a user) on a
port of its own, two simulated chairs with their stations and bridges, and the overview.

The tests run in order on one clinic (starting chairs is the slow part): every wait is on a
condition, never a fixed sleep."""

from __future__ import annotations

import os
import signal
import sqlite3
import time

import pytest

from relaxd.clinic.topics import HEARTBEAT_S, STALE_HEARTBEATS
from relaxd.records.sessions import list_sessions
from tests.clinic_process import (
    MOSQUITTO,
    MOSQUITTO_PASSWD,
    OVERVIEW_USER,
    VIEWER_USER,
    Broker,
    Chair,
    OverviewProcess,
    Watcher,
    wait_until,
)

#: The overview account's presence, the only one the broker lets it write.
DESK_PRESENCE = f"relaxd/overview/{OVERVIEW_USER}/status"

pytestmark = pytest.mark.skipif(MOSQUITTO is None or MOSQUITTO_PASSWD is None,
                                reason="mosquitto not installed (apt-get install mosquitto)")


@pytest.fixture(scope="module")
def clinic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clinic")
    broker = Broker(folder / "broker", ["A", "B", "C", OVERVIEW_USER, VIEWER_USER])
    broker.start()
    chairs = {c: Chair(folder, broker, c) for c in ("A", "B")}
    watcher = Watcher(broker, OVERVIEW_USER, ["relaxd/#"])
    overview = OverviewProcess(folder, broker)
    silent = Watcher(broker, "C")  # chair C: one state, then silence (its bridge hung)
    try:
        for chair in chairs.values():
            wait_until(lambda c=chair: (c.state() or {}).get("state") == "running", 90,
                       f"chair {chair.id} running")
        wait_until(lambda: {"A", "B"} <= {c["chair"] for c in overview.view()["chairs"]}, 30,
                   "both chairs on the overview")
        silent.publish("relaxd/C/status", {"online": True, "daemon": True, "room": "3"},
                       retain=True, expiry=None)
        silent.publish("relaxd/C/state", {"seq": 1, "state": "running"}, retain=True, expiry=None)
        silent.last_state = time.monotonic()  # type: ignore[attr-defined]
        wait_until(lambda: (overview.chair("C") or {}).get("tile") == "running", 10,
                   "C running on the overview")
        yield broker, chairs, watcher, overview, silent
    finally:
        overview.stop()
        silent.close()
        watcher.close()
        for chair in chairs.values():
            chair.stop()
        broker.kill()


def test_both_chairs_appear_as_running_tiles(clinic):
    _, _, watcher, overview, _ = clinic
    wait_until(lambda: all(c["tile"] == "running" for c in overview.view()["chairs"]), 30,
               "running tiles")
    status = watcher.on("relaxd/A/status")[-1]
    assert status["online"] and status["daemon"] and status["room"] == "simulated A"


def test_start_from_afar_is_refused_with_a_reply(clinic):
    _, chairs, watcher, _, _ = clinic
    seq = chairs["B"].state()["stop_seq"]
    for name, fields in (("start", {"scenario": "gentle-start"}), ("hold", {"on": False}),
                         ("nudge", {"steps": 1})):
        reply = watcher.reply("B", watcher.command("B", name, **fields))
        assert reply["ok"] is False and reply["error"], name
    assert chairs["B"].state()["stop_seq"] == seq and chairs["B"].state()["hold"] is False


def test_retained_expired_and_repeated_commands_are_not_carried_out(clinic):
    _, chairs, watcher, _, _ = clinic
    retained = watcher.command("B", "stop", retain=True)
    assert "retained" in watcher.reply("B", retained)["error"]
    watcher.client.publish("relaxd/B/cmd/stop", b"", qos=1, retain=True).wait_for_publish(10)
    expired = watcher.command("B", "calmer", at=time.time() - 60)
    assert "expired" in watcher.reply("B", expired)["error"]
    unexpiring = watcher.command("B", "stop", expiry=None)
    assert "expiry" in watcher.reply("B", unexpiring)["error"]
    # a repeat of a command already answered is dropped: one reply only
    watcher.publish("relaxd/B/cmd/calmer", {"id": expired, "by": "test"})
    last = watcher.reply("B", watcher.command("B", "hold"))
    assert last["ok"], last
    assert [r["id"] for r in watcher.on("relaxd/B/reply")].count(expired) == 1
    state = chairs["B"].state()
    assert state["latch_causes"] == [] and state["state"] in ("running", "reduced")


def test_a_chair_cannot_write_or_read_another_chairs_topics(clinic):
    broker, chairs, watcher, _, _ = clinic
    intruder = Watcher(broker, "A", ["relaxd/B/cmd/#", "relaxd/overview/+/status"])
    try:
        # mosquitto 2.0 grants the subscription but never delivers what the ACL denies
        watcher.reply("B", watcher.command("B", "hold"))
        watcher.publish(DESK_PRESENCE, {"online": True, "marker": True}, expiry=None)
        wait_until(lambda: any(m.get("marker") for m in intruder.on(DESK_PRESENCE)), 10,
                   "the marker")
        assert not [m for m in intruder.messages if m[1].startswith("relaxd/B/")]
        intruder.publish("relaxd/B/state", {"state": "running", "forged": True}, expiry=None)
        intruder.publish("relaxd/B/cmd/stop", {"id": "forged", "by": "A"})
        intruder.publish("relaxd/A/reply", {"id": "marker"}, expiry=None)  # its own: allowed
        wait_until(lambda: any(r.get("id") == "marker" for r in watcher.on("relaxd/A/reply")),
                   10, "the marker after the forgeries")
    finally:
        intruder.close()
    assert not any(s.get("forged") for s in watcher.on("relaxd/B/state"))
    assert not any(r.get("id") == "forged" for r in watcher.on("relaxd/B/reply"))
    assert chairs["B"].state()["latch_causes"] == []


def test_a_stop_from_afar_zeroes_one_chair_and_its_alert_reaches_the_overview(clinic):
    _, chairs, _, overview, _ = clinic
    answer = overview.send("A", "stop")
    assert answer.status_code == 200, answer.text
    a, b = chairs["A"].state(), chairs["B"].state()
    assert a["levels"] == {"light": 0.0, "audio": 0.0, "vibration": 0.0}
    assert a["latch_causes"] == ["clinic-stop"] and a["estop_pressed"] is False
    assert b["latch_causes"] == [] and b["state"] in ("running", "reduced")
    assert any(b["levels"].values())
    alert = wait_until(lambda: next((x for x in overview.view()["alerts"]
                                     if x["chair"] == "A" and x["reason"] == "clinic-stop"), None),
                       20, "chair A's alert on the overview")
    assert alert["room"] == "simulated A" and "child" in alert
    wait_until(lambda: overview.chair("A")["tile"] == "stopped", 20, "A's tile stopped")
    # nothing from afar clears it: a start is refused, the chair stays stopped
    assert overview.send("A", "start").status_code == 404
    assert chairs["A"].state()["latch_causes"] == ["clinic-stop"]


def test_a_viewer_sends_no_command(clinic):
    broker, chairs, watcher, _, _ = clinic
    viewer = Watcher(broker, VIEWER_USER)
    try:
        viewer.publish("relaxd/B/cmd/stop", {"id": "from-viewer", "by": "viewer"})
        viewer_marker = watcher.command("B", "calmer")  # after it, from the overview's account
        watcher.reply("B", viewer_marker)
    finally:
        viewer.close()
    assert not any(r.get("id") == "from-viewer" for r in watcher.on("relaxd/B/reply"))
    assert chairs["B"].state()["latch_causes"] == []


def finished(chair: Chair) -> set[str]:
    """The ids of the chair's finished sessions, as its bridge names their summaries."""
    return {f"{chair.id}:{s.started}:{s.id}" for s in list_sessions(chair.out) if s.ended}


def stored(overview: OverviewProcess, summary: str) -> int:
    """How many times the overview's SQLite holds the summary ``summary``."""
    with sqlite3.connect(overview.state_dir / "overview.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM sessions WHERE id = ?", (summary,)).fetchone()[0]


def start_again(chair: Chair) -> None:
    """A Start at the chair's own station."""
    answer = chair.command("start")
    assert answer and answer["ok"], answer
    wait_until(lambda: (chair.state() or {}).get("state") == "running", 30, "running again")


def test_a_finished_session_reaches_the_overviews_store_once(clinic):
    _, chairs, watcher, overview, _ = clinic
    before = finished(chairs["B"])
    assert overview.send("B", "end-gently").status_code == 200
    new = wait_until(lambda: finished(chairs["B"]) - before, 30, "B's session finished")
    for key in new:
        wait_until(lambda key=key: stored(overview, key), 20, f"{key} in the overview's store")
    key = min(new)
    summary = next(s for s in overview.http.get("/api/sessions?chair=B").json()["sessions"]
                   if s["id"] == key)
    assert summary["chair"] == "B" and summary["duration"] > 0 and "name" not in summary
    # an overview coming online makes each bridge send its latest summaries again: still once
    sent = len([m for m in watcher.on("relaxd/B/event/session") if m["id"] == key])
    for online in (False, True):  # the desk's account off and online again
        watcher.publish(DESK_PRESENCE, {"online": online, "at": time.time()}, expiry=None)
    wait_until(lambda: len([m for m in watcher.on("relaxd/B/event/session")
                            if m["id"] == key]) > sent, 20, "the summaries sent again")
    overview.view()  # the overview has taken every message before this one
    assert stored(overview, key) == 1
    start_again(chairs["B"])


def test_a_silent_chair_turns_stale_after_three_heartbeats(clinic):
    _, _, _, overview, silent = clinic
    silent.publish("relaxd/C/state", {"seq": 2, "state": "running"}, retain=True, expiry=None)
    heard = time.monotonic()
    wait_until(lambda: overview.chair("C")["tile"] == "running", 5, "C fresh again")
    wait_until(lambda: overview.chair("C")["tile"] == "stale",
               STALE_HEARTBEATS * HEARTBEAT_S + 5, "C stale")
    assert time.monotonic() - heard >= STALE_HEARTBEATS * HEARTBEAT_S - 0.5
    # the chairs with a live bridge send a heartbeat: never stale
    assert {c["chair"]: c["tile"] for c in overview.view()["chairs"]
            if c["chair"] != "C"} == {"A": "stopped", "B": "running"}


def test_an_overview_signed_in_as_the_viewer_refuses_a_stop_up_front(clinic, tmp_path):
    broker, chairs, _, desk, _ = clinic
    viewer = OverviewProcess(tmp_path, broker, VIEWER_USER, name="viewer")
    try:
        wait_until(lambda: viewer.view()["broker"] and viewer.chair("B"), 30, "viewer up")
        assert viewer.view()["commands"] is False and desk.view()["commands"] is True
        asked = time.monotonic()
        answer = viewer.send("B", "stop")
        assert answer.status_code == 403 and time.monotonic() - asked < 2
        assert "read-only" in answer.json()["error"] and "\n" not in answer.json()["error"]
    finally:
        viewer.stop()
    assert chairs["B"].state()["latch_causes"] == []


def test_the_broker_killed_mid_session_changes_nothing_and_all_comes_back(clinic):
    broker, chairs, _, overview, _ = clinic
    before = {c: chairs[c].state() for c in chairs}
    broker.kill()
    wait_until(lambda: overview.view()["broker"] is False, 30, "the overview's broker warning")
    during = {c: chairs[c].state() for c in chairs}
    for c in chairs:
        assert during[c]["stop_seq"] == before[c]["stop_seq"]
        assert during[c]["latch_causes"] == before[c]["latch_causes"]
    assert during["B"]["state"] in ("running", "reduced") and any(during["B"]["levels"].values())
    # a session ends at the chair while the broker is away: its summary goes out later
    sessions = finished(chairs["B"])
    assert chairs["B"].command("end_gently", by="station")["ok"]
    unsent = wait_until(lambda: finished(chairs["B"]) - sessions, 30, "B's session finished")
    start_again(chairs["B"])
    broker.start()  # same port, no persistence: every retained topic is gone
    fresh = Watcher(broker, OVERVIEW_USER, ["relaxd/+/status", "relaxd/+/state", "relaxd/+/alerts"])
    try:
        for c in chairs:
            wait_until(lambda c=c: fresh.on(f"relaxd/{c}/status") and fresh.on(f"relaxd/{c}/state")
                       and fresh.on(f"relaxd/{c}/alerts"), 60, f"chair {c} republished")
    finally:
        fresh.close()
    # each chair's republished state reaches the overview in its own time: wait for both
    wait_until(lambda: overview.view()["broker"] and overview.chair("B")["tile"] == "running"
               and overview.chair("A")["tile"] == "stopped", 60, "the overview back")
    for key in unsent:
        wait_until(lambda key=key: stored(overview, key), 30, f"{key}, sent after the outage")
        assert stored(overview, key) == 1


def test_the_bridge_killed_its_last_will_is_seen(clinic):
    broker, chairs, _, overview, _ = clinic
    watcher = Watcher(broker, OVERVIEW_USER, ["relaxd/B/status"])
    try:
        wait_until(lambda: watcher.on("relaxd/B/status"), 10, "B's retained status")
        pid = wait_until(chairs["B"].bridge_pid, 10, "B's bridge process")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: watcher.on("relaxd/B/status")[-1]["online"] is False, 40,
                   "B's last will")
    finally:
        watcher.close()
    wait_until(lambda: overview.chair("B")["tile"] == "lost", 20, "B's tile lost")
    state = chairs["B"].state()  # the chair itself goes on
    assert state["state"] in ("running", "reduced") and state["latch_causes"] == []
