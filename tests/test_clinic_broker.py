"""The clinic with real parts: mosquitto (deploy/mosquitto/relaxd.acl, a password a user) on a
port of its own, two simulated chairs with their stations and bridges, and the overview.

The tests run in order on one clinic (starting chairs is the slow part): every wait is on a
condition, never a fixed sleep."""

from __future__ import annotations

import os
import signal

import pytest

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

pytestmark = pytest.mark.skipif(MOSQUITTO is None or MOSQUITTO_PASSWD is None,
                                reason="mosquitto not installed (apt-get install mosquitto)")


@pytest.fixture(scope="module")
def clinic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clinic")
    broker = Broker(folder / "broker", ["A", "B", OVERVIEW_USER, VIEWER_USER])
    broker.start()
    chairs = {c: Chair(folder, broker, c) for c in ("A", "B")}
    watcher = Watcher(broker, OVERVIEW_USER, ["relaxd/#"])
    overview = OverviewProcess(folder, broker)
    try:
        for chair in chairs.values():
            wait_until(lambda c=chair: (c.state() or {}).get("state") == "running", 90,
                       f"chair {chair.id} running")
        wait_until(lambda: {"A", "B"} <= {c["chair"] for c in overview.view()["chairs"]}, 30,
                   "both chairs on the overview")
        yield broker, chairs, watcher, overview
    finally:
        overview.stop()
        watcher.close()
        for chair in chairs.values():
            chair.stop()
        broker.kill()


def test_both_chairs_appear_as_running_tiles(clinic):
    _, _, watcher, overview = clinic
    wait_until(lambda: all(c["tile"] == "running" for c in overview.view()["chairs"]), 30,
               "running tiles")
    status = watcher.on("relaxd/A/status")[-1]
    assert status["online"] and status["daemon"] and status["room"] == "simulated A"


def test_start_from_afar_is_refused_with_a_reply(clinic):
    _, chairs, watcher, _ = clinic
    seq = chairs["B"].state()["stop_seq"]
    for name, fields in (("start", {"scenario": "gentle-start"}), ("hold", {"on": False}),
                         ("nudge", {"steps": 1})):
        reply = watcher.reply("B", watcher.command("B", name, **fields))
        assert reply["ok"] is False and reply["error"], name
    assert chairs["B"].state()["stop_seq"] == seq and chairs["B"].state()["hold"] is False


def test_retained_expired_and_repeated_commands_are_not_carried_out(clinic):
    _, chairs, watcher, _ = clinic
    retained = watcher.command("B", "stop", retain=True)
    assert "retained" in watcher.reply("B", retained)["error"]
    watcher.client.publish("relaxd/B/cmd/stop", b"", qos=1, retain=True).wait_for_publish(10)
    expired = watcher.command("B", "stop", at=1.0)
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
    broker, chairs, watcher, _ = clinic
    intruder = Watcher(broker, "A", ["relaxd/B/cmd/#", "relaxd/overview/+/status"])
    try:
        # mosquitto 2.0 grants the subscription but never delivers what the ACL denies
        watcher.reply("B", watcher.command("B", "hold"))
        watcher.publish("relaxd/overview/marker/status", {"online": False}, expiry=None)
        wait_until(lambda: intruder.on("relaxd/overview/marker/status"), 10, "the marker")
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
    _, chairs, _, overview = clinic
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
    broker, chairs, watcher, _ = clinic
    viewer = Watcher(broker, VIEWER_USER)
    try:
        viewer.publish("relaxd/B/cmd/stop", {"id": "from-viewer", "by": "viewer"})
        viewer_marker = watcher.command("B", "calmer")  # after it, from the overview's account
        watcher.reply("B", viewer_marker)
    finally:
        viewer.close()
    assert not any(r.get("id") == "from-viewer" for r in watcher.on("relaxd/B/reply"))
    assert chairs["B"].state()["latch_causes"] == []


def test_the_broker_killed_mid_session_changes_nothing_and_all_comes_back(clinic):
    broker, chairs, _, overview = clinic
    before = {c: chairs[c].state() for c in chairs}
    broker.kill()
    wait_until(lambda: overview.view()["broker"] is False, 30, "the overview's broker warning")
    during = {c: chairs[c].state() for c in chairs}
    for c in chairs:
        assert during[c]["stop_seq"] == before[c]["stop_seq"]
        assert during[c]["latch_causes"] == before[c]["latch_causes"]
    assert during["B"]["state"] in ("running", "reduced") and any(during["B"]["levels"].values())
    broker.start()  # same port, no persistence: every retained topic is gone
    fresh = Watcher(broker, OVERVIEW_USER, ["relaxd/+/status", "relaxd/+/state", "relaxd/+/alerts"])
    try:
        for c in chairs:
            wait_until(lambda c=c: fresh.on(f"relaxd/{c}/status") and fresh.on(f"relaxd/{c}/state")
                       and fresh.on(f"relaxd/{c}/alerts"), 60, f"chair {c} republished")
    finally:
        fresh.close()
    wait_until(lambda: overview.view()["broker"] and overview.chair("B")["tile"] == "running",
               60, "the overview back")
    assert overview.chair("A")["tile"] == "stopped"


def test_the_bridge_killed_its_last_will_is_seen(clinic):
    broker, chairs, _, overview = clinic
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
