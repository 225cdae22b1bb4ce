"""Attacks on the clinic's remote path (a bridge per chair, mosquitto, the overview), with real
parts: mosquitto with deploy/mosquitto/relaxd.acl on a port of its own, ``relaxd bridge`` and
``relaxd overview`` as processes, paho clients as chairs, overviews, viewers and intruders, the
real control socket (:class:`ControlServer`) with the test playing the daemon's loop, and, for
what needs the whole chair, a simulated chair (``relaxd --simulate --ui --bridge``).

A test marked ``xfail(strict=True)`` is a break that still works on the current code: it fails
until the product is fixed, and then the mark must go. The others are attacks that held.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from relaxd.daemon import server as control_server
from relaxd.daemon.server import ControlServer
from tests.clinic_process import (
    MOSQUITTO,
    MOSQUITTO_PASSWD,
    OVERVIEW_USER,
    ROOT,
    VIEWER_USER,
    Broker,
    Chair,
    OverviewProcess,
    Watcher,
    ask_socket,
    wait_until,
)

pytestmark = pytest.mark.skipif(MOSQUITTO is None or MOSQUITTO_PASSWD is None,
                                reason="mosquitto not installed (apt-get install mosquitto)")

CHAIRS = ["A", "B"]
#: Broker users no chair id may be, but an administrator could create: does the ACL's
#: ``%u`` pattern give them another chair's topics? ("#" cannot even be one: a password file's
#: line that begins with "#" is a comment.)
ODD_USERS = ["+", "B/cmd", "B/state"]
#: JSON nested deeper than Python's recursion limit (json.loads raises RecursionError).
DEEP = b"[" * 100_000 + b"]" * 100_000
#: How long the bridges here honour a command from afar (10 s on site; --command-lifetime).
LIFETIME = 3
#: The overview's broker timeout and keepalive here (10 s on site; --broker-timeout).
DESK_BROKER_TIMEOUT = 2


@pytest.fixture(scope="module")
def broker(tmp_path_factory) -> Iterator[Broker]:
    folder = tmp_path_factory.mktemp("breaker") / "broker"
    (folder / "B").mkdir(parents=True)  # the password files of the users named "B/..."
    broker = Broker(folder, [*CHAIRS, OVERVIEW_USER, VIEWER_USER, *ODD_USERS])
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="brk-", dir="/tmp"))  # unix sockets <= 107 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --- the daemon's side, played by the test on the real control socket ---------------------------

class Daemon:
    """The real :class:`ControlServer`; the test's thread plays the loop: it publishes a state
    every ``tick`` seconds (``extra`` added to it) and carries out every queued command."""

    def __init__(self, path: Path, tick: float = 0.1) -> None:
        self.seq, self.tick = 0, tick
        self.clinic_stops: list[dict[str, Any]] = []
        self.commands: list[tuple[str, dict[str, Any]]] = []
        self.publish_s: list[float] = []
        self.extra: dict[str, Any] = {}
        self.server = ControlServer(path, stop=self._stop, stop_seq=lambda: self.seq,
                                    stops={"clinic_stop": self._clinic_stop})
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _stop(self, by: str) -> int:
        self.seq += 1
        return self.seq

    def _clinic_stop(self, message: dict[str, Any]) -> dict[str, Any]:
        self.clinic_stops.append(message)
        self.seq += 1
        return {"ok": True, "stop_seq": self.seq}

    def _loop(self) -> None:
        n = 0
        while not self._done.wait(self.tick):
            n += 1
            state = {"t": n * self.tick, "at": time.time(), "state": "running",
                     "scenario": "calm", "phase": "settle", "intensity": 0.4 + 0.001 * (n % 7),
                     "levels": {"light": 0.4, "audio": 0.3, "vibration": 0.2},
                     "estop": False, "estop_pressed": False, "latch": None,
                     "latch_causes": [], "stop_seq": self.seq, "hold": False,
                     "manual": False, "waiting": False, "child": "c-17", "alerts": [],
                     **self.extra}
            began = time.monotonic()
            self.server.publish(state)
            self.publish_s.append(time.monotonic() - began)
            for command in self.server.take():
                if command.claim():
                    self.commands.append((command.name, dict(command.args)))
                    command.finish({"ok": True})

    def ask(self, message: dict[str, Any], timeout: float = 5.0) -> tuple[dict[str, Any], float]:
        """One command as the station sends it; the answer and how long it took."""
        began = time.monotonic()
        answer = ask_socket(str(self.server.path), message, timeout)
        return answer, time.monotonic() - began

    def close(self) -> None:
        self._done.set()
        self._thread.join(2)
        self.server.close()


class BridgeProcess:
    """``relaxd bridge`` for chair ``chair`` against ``daemon``'s socket."""

    def __init__(self, folder: Path, broker: Broker, chair: str, daemon: Daemon) -> None:
        self.log = folder / f"bridge-{chair}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "relaxd", "bridge", "--broker", broker.url, "--chair-id", chair,
             "--room", f"room {chair}", "--socket", str(daemon.server.path),
             "--records", str(folder / "records"), "--state-dir", str(folder / "bridge"),
             "--password-file", str(broker.password_file(chair)),
             "--command-lifetime", str(LIFETIME)],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"))

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def chair(broker, short_dir) -> Iterator[tuple[Daemon, BridgeProcess, Watcher]]:
    """Chair A: the real control socket played by the test, its real bridge, and the
    overview's account watching (and sending) on the broker."""
    daemon = Daemon(short_dir / "ctl.sock")
    # not the command topics: the watcher's own JSON parser would choke on the garbage sent there
    watcher = Watcher(broker, OVERVIEW_USER, [f"relaxd/A/{leaf}" for leaf in ("status", "state",
                                                                                "reply", "alert")])
    bridge = BridgeProcess(short_dir, broker, "A", daemon)
    try:
        wait_until(lambda: any(s.get("online") and s.get("daemon")
                               for s in watcher.on("relaxd/A/status")), 30, "A's bridge online")
        # the bridge subscribes to its commands before it says it is online: one round trip
        watcher.reply("A", watcher.command("A", "hold", at=time.time()))
        yield daemon, bridge, watcher
    finally:
        bridge.stop()
        watcher.close()
        daemon.close()
        clear_retained(broker, OVERVIEW_USER, [DESK_PRESENCE])
        clear_retained(broker, "A", [f"relaxd/A/{leaf}" for leaf in ("status", "state", "alerts")])


#: The overview account's own presence, the only one the broker lets it write.
DESK_PRESENCE = f"relaxd/overview/{OVERVIEW_USER}/status"


def clear_retained(broker: Broker, user: str, names: list[str]) -> None:
    """Empty the retained messages on ``names``, as ``user`` (who may write them)."""
    cleaner = Watcher(broker, user)
    try:
        for name in names:
            cleaner.client.publish(name, b"", qos=1, retain=True).wait_for_publish(10)
    finally:
        cleaner.close()


def command(watcher: Watcher, name: str, **fields: Any) -> dict[str, Any]:
    """A command to chair A as the overview sends it ("at": now), and the chair's reply."""
    return watcher.reply("A", watcher.command("A", name, **{"at": time.time(), **fields}))


def raw_command(watcher: Watcher, name: str, payload: bytes, expiry: int | None = 10) -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    properties = Properties(PacketTypes.PUBLISH)
    if expiry is not None:
        properties.MessageExpiryInterval = expiry
    watcher.client.publish(f"relaxd/A/cmd/{name}", payload, qos=1,
                           properties=properties).wait_for_publish(10)


# --- commands from afar: what they may do ---------------------------------------------------

def test_only_the_four_lowering_commands_reach_the_daemon(chair):
    daemon, _, watcher = chair
    for name, fields in (("start", {"scenario": "x"}), ("reset", {}), ("ack", {"alert": 1}),
                         ("nudge", {"steps": 1}), ("hold", {"on": False}), ("hold", {"on": 0}),
                         ("scenario", {}), ("clinic_stop", {}), ("end_gently", {}),
                         ("Stop", {}), ("stop ", {})):
        reply = command(watcher, name, **fields)
        assert reply["ok"] is False and reply["error"], (name, reply)
    for name in ("stop", "calmer", "end-gently", "hold"):
        assert command(watcher, name, scenario="x", on=True, steps=1, after_stop=0)["ok"]
    carried = [name for name, _ in daemon.commands]
    assert set(carried) <= {"calmer", "end_gently", "hold"}
    assert all(args.get("on", True) is True for name, args in daemon.commands if name == "hold")
    assert not any({"scenario", "steps", "after_stop"} & set(args) for _, args in daemon.commands)
    assert len(daemon.clinic_stops) == 1


def test_the_rate_limit_never_holds_back_a_stop(chair):
    daemon, _, watcher = chair
    replies = [command(watcher, "calmer") for _ in range(12)]
    assert any("too many" in (r["error"] or "") for r in replies)
    for _ in range(3):  # one after another, all while the limit is spent
        assert command(watcher, "stop")["ok"]
    assert len(daemon.clinic_stops) == 3


def test_garbage_on_the_command_topics_leaves_the_stop_working(chair):
    """Malformed, huge, deeply nested and control-character payloads: the bridge carries on,
    and the daemon's loop never waits."""
    daemon, _, watcher = chair
    for payload in (b"{", b"\xff\xfe", b"[]", b"null", DEEP, b'{"id": "x"' + b" " * 5_000_000 + b"}",
                    json.dumps({"id": "\x00\x1b[2J", "by": "\n" * 10}).encode()):
        raw_command(watcher, "stop", payload)
    for i in range(300):
        raw_command(watcher, "calmer", b"not json %d" % i)
    reply = command(watcher, "stop")
    assert reply["ok"], reply
    assert max(daemon.publish_s) < 0.05


def test_a_command_with_an_absurd_sent_time_is_answered(chair):
    _, _, watcher = chair
    reply = watcher.reply("A", watcher.command("A", "stop", at=10 ** 400), timeout=8)
    assert reply["ok"] is False


@pytest.mark.parametrize("skew", [-60.0, 60.0])
def test_a_fresh_stop_is_carried_out_when_the_desk_clock_differs(chair, skew):
    """The broker delivered it within its 10 s message expiry; only the two clocks differ. A
    stop is never refused for its sent time; the other commands are read against the desk's
    clock as its heartbeat tells it."""
    daemon, _, watcher = chair
    reply = command(watcher, "stop", at=time.time() + skew)
    assert reply["ok"], reply
    assert daemon.clinic_stops
    unheard = command(watcher, "calmer", at=time.time() + skew, desk=OVERVIEW_USER)
    assert "expired" in unheard["error"]  # the desk's clock not known yet: taken as the chair's
    watcher.publish(DESK_PRESENCE, {"online": True, "at": time.time() + skew}, expiry=None)
    heard = command(watcher, "calmer", at=time.time() + skew, desk=OVERVIEW_USER)
    assert heard["ok"], heard
    assert [name for name, _ in daemon.commands].count("calmer") == 1


def test_a_command_held_up_past_its_lifetime_is_not_carried_out_but_a_stop_is(chair):
    """SIGSTOP: the bridge stalls past the commands' lifetime while they wait in its socket. A
    calmer that waited is refused as expired (by its ``at``), and a hold without ``at`` is
    refused outright; a stop held up just as long, even without ``at``, is still carried out:
    a late stop only stops the chair, the safe direction (deploy/SAFETY.md, H12)."""
    daemon, bridge, watcher = chair
    os.kill(bridge.process.pid, signal.SIGSTOP)
    try:
        late = watcher.command("A", "calmer", at=time.time())
        bare = watcher.command("A", "hold", at=None)
        stop = watcher.command("A", "stop", at=None)
        time.sleep(LIFETIME + 1.5)
    finally:
        os.kill(bridge.process.pid, signal.SIGCONT)
    assert "expired" in str(watcher.reply("A", late)["error"])
    assert "(at)" in str(watcher.reply("A", bare)["error"])
    assert watcher.reply("A", stop)["ok"] and daemon.clinic_stops
    assert [name for name, _ in daemon.commands] == ["hold"]  # the fixture's own, on time


def test_control_characters_in_by_never_reach_the_chair(chair):
    daemon, _, watcher = chair
    reply = command(watcher, "stop", by="nurse\n\x1b[2J; the emergency stop\u202e")
    assert daemon.clinic_stops and reply["ok"]
    by = str(daemon.clinic_stops[-1].get("by"))
    assert by.isprintable() and "\u202e" not in by, repr(by)


# --- the bridge's own robustness ----------------------------------------------------------------

@pytest.mark.parametrize("user, presence", [
    (VIEWER_USER, "relaxd/overview/evil/status"),  # the broker refuses it
    (OVERVIEW_USER, DESK_PRESENCE),  # allowed: the bridge itself must hold
])
def test_a_poisoned_presence_message_does_not_cut_the_chair_off(chair, broker, user, presence):
    daemon, _, watcher = chair
    poisoner = Watcher(broker, user)
    try:
        poisoner.client.publish(presence, DEEP, qos=1, retain=True).wait_for_publish(10)
    finally:
        poisoner.close()
    reply = watcher.reply("A", watcher.command("A", "stop", at=time.time()), timeout=15)
    assert reply["ok"] and daemon.clinic_stops


@pytest.mark.parametrize("user", [VIEWER_USER, OVERVIEW_USER])
def test_nobody_can_make_the_chairs_republish_at_will(chair, broker, user):
    """The viewer on made-up overviews' presence (the broker refuses it), the overview's own
    account going off- and online on its own (the bridge republishes at most every few s)."""
    _, _, watcher = chair
    other = Watcher(broker, user)
    try:
        time.sleep(1.5)
        began, n = time.monotonic(), 0
        while time.monotonic() - began < 5:
            n += 1
            presence = (f"relaxd/overview/v{uuid.uuid4().hex[:6]}/status"
                        if user == VIEWER_USER else DESK_PRESENCE)
            other.publish(presence, {"online": n % 2 == 0, "at": time.time()}, expiry=None)
            time.sleep(0.05)
    finally:
        other.close()
    with watcher._lock:
        states = [m for m in watcher.messages
                  if m[1] == "relaxd/A/state" and began <= m[0] <= began + 5.5]
    # the state only wobbles: a heartbeat every 5 s, continuous values at most once a second
    assert len(states) <= 7, f"{len(states)} states in 5.5 s"


def test_a_stalled_bridge_never_slows_the_daemon(chair, monkeypatch):
    """SIGSTOP: the bridge's subscription stops reading while the states grow; the daemon's
    publishing never waits and the station's STOP and queries are answered at once. (The
    socket's send timeout, 5 s on the chair, is 1 s here: the same drop, sooner.)"""
    monkeypatch.setattr(control_server, "SEND_TIMEOUT_S", 1.0)
    daemon, bridge, _ = chair
    daemon.extra = {"padding": "x" * 200_000}  # fills the socket's buffer within a few ticks
    os.kill(bridge.process.pid, signal.SIGSTOP)
    try:
        time.sleep(2)
        daemon.publish_s.clear()
        answers = [daemon.ask({"cmd": "stop", "by": "station"}) for _ in range(3)]
        answers += [daemon.ask({"cmd": "state"}) for _ in range(3)]
        time.sleep(control_server.SEND_TIMEOUT_S + 1)  # the stalled client is dropped
        answers.append(daemon.ask({"cmd": "stop", "by": "station"}))
    finally:
        os.kill(bridge.process.pid, signal.SIGCONT)
        daemon.extra = {}
    assert all(answer["ok"] and took < 0.5 for answer, took in answers), answers
    assert max(daemon.publish_s) < 0.05, max(daemon.publish_s)


# --- the broker's ACL ---------------------------------------------------------------------------

def test_odd_user_names_get_no_chairs_topics(broker):
    """Users an administrator might create by mistake ("+", "#", names with "/"): the ACL's
    %u patterns give them nothing of chair B's (mosquitto refuses wildcards in %u)."""
    owner = Watcher(broker, OVERVIEW_USER, ["relaxd/#"])
    intruders = [Watcher(broker, user, ["relaxd/B/cmd/#", "relaxd/B/#", "relaxd/#"])
                 for user in ODD_USERS]
    try:
        for n, intruder in enumerate(intruders):
            for leaf in ("state", "status", "alerts", "alert", "reply", "cmd/stop"):
                intruder.publish(f"relaxd/B/{leaf}", {"id": f"forged-{n}", "by": "x",
                                                      "forged": True}, expiry=None)
        marker = owner.command("B", "stop")  # after them: B's command, read by no intruder
        wait_until(lambda: any(m[1] == "relaxd/B/cmd/stop" and (m[2] or {}).get("id") == marker
                               for m in owner.messages), 10, "the marker")
    finally:
        for intruder in intruders:
            intruder.close()
        owner.close()
    assert not any((m[2] or {}).get("forged") for m in owner.messages)
    assert not any(m[1].startswith("relaxd/B/") for i in intruders for m in i.messages)


def test_a_chair_cannot_pose_as_an_overview_nor_read_the_others(broker):
    chair_a = Watcher(broker, "A", ["relaxd/#", "relaxd/+/state", "relaxd/B/cmd/#"])
    owner = Watcher(broker, OVERVIEW_USER, ["relaxd/#"])
    try:
        chair_a.publish("relaxd/overview/fake/status", {"online": True, "forged": True},
                        expiry=None)
        chair_a.publish("relaxd/B/cmd/stop", {"id": "forged", "by": "A", "forged": True})
        owner.publish("relaxd/B/state", {"state": "running"}, expiry=None)  # denied: not a chair
        owner.publish(DESK_PRESENCE, {"online": True, "marker": True}, expiry=None)
        wait_until(lambda: any((m[2] or {}).get("marker") for m in chair_a.messages), 10,
                   "the overview's presence at chair A")
    finally:
        chair_a.close()
        owner.close()
        clear_retained(broker, OVERVIEW_USER, [DESK_PRESENCE])
    assert not any((m[2] or {}).get("forged") for m in owner.messages)
    assert not any(m[1] == "relaxd/B/state" for m in owner.messages + chair_a.messages)
    assert {m[1] for m in chair_a.messages} == {DESK_PRESENCE}


# --- the overview ----------------------------------------------------------------------------

@pytest.fixture
def desk(broker, tmp_path) -> Iterator[OverviewProcess]:
    overview = OverviewProcess(tmp_path, broker, extra=(
        "--broker-timeout", str(DESK_BROKER_TIMEOUT)))
    try:
        wait_until(lambda: overview.view()["broker"], 20, "the overview connected")
        yield overview
    finally:
        overview.stop()
        for chair in CHAIRS:
            clear_retained(broker, chair, [f"relaxd/{chair}/{leaf}"
                                           for leaf in ("status", "state", "alerts")])


def chair_online(broker: Broker, chair: str) -> Watcher:
    """A chair's account publishing as its bridge does: status, state, no alerts."""
    client = Watcher(broker, chair)
    client.publish(f"relaxd/{chair}/status", {"online": True, "daemon": True, "room": f"room {chair}",
                                              "at": time.time()}, retain=True, expiry=None)
    client.publish(f"relaxd/{chair}/state", {"seq": 1, "at": time.time(), "state": "running",
                                             "latch_causes": [], "child": "c-1"},
                   retain=True, expiry=None)
    return client


def alert_reaches(desk: OverviewProcess, chair_a: Watcher, timeout: float = 10) -> bool:
    """A new alert from chair A shows on the overview within ``timeout``."""
    marker = int(time.time() * 1000) % 1_000_000
    chair_a.publish("relaxd/A/alert", {"chair": "A", "room": "room A", "child": "c-1",
                                       "id": marker, "reason": "upset", "detail": "marker",
                                       "at": time.time()}, expiry=None)
    try:
        wait_until(lambda: any(a.get("id") == marker for a in desk.view()["alerts"]), timeout,
                   "chair A's alert on the overview")
    except AssertionError:
        return False
    return True


#: What one chair's own account may publish on its own topics, which the overview chokes on.
POISON = {
    "deeply nested state": ("state", DEEP),
    "alerts that are a number": ("alerts", b'{"alerts": 5}'),
    "an alert id too big for SQLite": ("alert", b'{"id": 100000000000000000000000, "at": 1}'),
}


@pytest.mark.parametrize("poison", list(POISON))
def test_one_chairs_malformed_message_never_blinds_the_desk(broker, desk, poison):
    chair_a, chair_b = chair_online(broker, "A"), chair_online(broker, "B")
    try:
        wait_until(lambda: desk.chair("A") and desk.chair("B"), 10, "both chairs on the desk")
        assert alert_reaches(desk, chair_a)
        leaf, payload = POISON[poison]
        chair_b.client.publish(f"relaxd/B/{leaf}", payload, qos=1).wait_for_publish(10)
        reached = alert_reaches(desk, chair_a)
        # an alert that cannot reach the desk must at least raise the full-screen warning
        assert reached or not desk.view()["broker"], "no alert and no warning"
    finally:
        chair_a.close()
        chair_b.close()


def strict_json(text: str) -> Any:
    """JSON as a browser's JSON.parse reads it: NaN and Infinity are errors."""
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_a_chairs_nan_never_freezes_the_desk(broker, desk):
    chair_a = chair_online(broker, "A")
    try:
        chair_a.client.publish("relaxd/A/state", b'{"seq": 2, "state": "running", "at": NaN, '
                               b'"intensity": Infinity, "latch_causes": []}', qos=1,
                               retain=True).wait_for_publish(10)
        wait_until(lambda: (desk.chair("A") or {}).get("state", {}).get("seq") == 2, 10,
                   "the NaN state on the desk")
    except (ValueError, json.JSONDecodeError):
        pass  # /api/overview itself failed: asserted below
    finally:
        chair_a.close()
    answer = desk.http.get("/api/overview")
    assert answer.status_code == 200, answer.status_code
    with desk.http.stream("GET", "/api/events") as events:
        line = next(line for line in events.iter_lines() if line.startswith("data: "))
    strict_json(line[len("data: "):])


def test_markup_and_control_characters_from_a_chair_stay_text(broker, desk):
    """The page draws everything from a chair with textContent; the JSON the page reads
    carries markup as text, and no response is served as HTML from a chair's words."""
    chair_a = Watcher(broker, "A")
    try:
        evil = "<img src=x onerror=alert(1)><script>alert(2)</script>\u202e\x1b[2J"
        chair_a.publish("relaxd/A/status", {"online": True, "daemon": True, "room": evil},
                        retain=True, expiry=None)
        chair_a.publish("relaxd/A/state", {"seq": 1, "state": evil, "scenario": evil,
                                           "latch": evil, "child": evil, "latch_causes": []},
                        retain=True, expiry=None)
        wait_until(lambda: desk.chair("A"), 10, "chair A on the desk")
    finally:
        chair_a.close()
    assert desk.chair("A")["room"] == desk.chair("A")["state"]["latch"]
    page = desk.http.get("/").text
    assert "onerror" not in page and "<script>alert" not in page
    script = desk.http.get("/static/overview.js").text
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    assert "document.write" not in script


def test_the_overviews_commands_need_sign_in_csrf_same_origin_and_a_nurse(broker, desk):
    chair_a = chair_online(broker, "A")
    try:
        wait_until(lambda: desk.chair("A"), 10, "chair A on the desk")
    finally:
        chair_a.close()
    url = "/api/chairs/A/stop"
    anonymous = httpx.Client(base_url=desk.url)
    try:
        assert anonymous.post(url, json={}, headers={"Origin": desk.url}).status_code == 401
        assert anonymous.get("/api/overview").status_code == 401
    finally:
        anonymous.close()
    for headers in ({"Origin": desk.url}, {"X-CSRF-Token": desk.csrf},
                    {"X-CSRF-Token": desk.csrf, "Origin": "http://evil.example"},
                    {"X-CSRF-Token": desk.csrf, "Referer": "http://evil.example/x"},
                    {"X-CSRF-Token": "0" * len(desk.csrf), "Origin": desk.url}):
        assert desk.http.post(url, json={}, headers=headers).status_code == 403, headers
    assert desk.http.post("/logout", headers={"Origin": "http://evil.example"}).status_code == 403
    assert desk.view()["chairs"]  # still signed in


def test_a_hung_broker_raises_the_desks_warning(broker, desk):
    """SIGSTOP: the TCP connection stays up but nothing moves; the keepalive notices."""
    assert broker.process is not None
    os.kill(broker.process.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: desk.view()["broker"] is False, 40, "the broker warning")
    finally:
        os.kill(broker.process.pid, signal.SIGCONT)
    wait_until(lambda: desk.view()["broker"], 60, "the overview back")


def test_a_nurse_signs_in_to_the_overview_with_name_and_password(broker, tmp_path):
    subprocess.run([sys.executable, "-m", "relaxd", "overview-user", "ana", "--role", "nurse",
                    "--state-dir", str(tmp_path / "overview"), "--password-stdin"],
                   input="correct horse battery\n", text=True, check=True, cwd=ROOT,
                   env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True)
    desk = OverviewProcess(tmp_path, broker)
    try:
        fresh = httpx.Client(base_url=desk.url)
        try:
            assert fresh.get("/login").status_code == 200
            assert fresh.get("/?token=wrong").status_code == 401
            wrong = fresh.post("/login", data={"username": "ana", "password": "wrong one"},
                               headers={"Origin": desk.url})
            assert wrong.status_code == 401
            right = fresh.post("/login", data={"username": "ana", "password": "correct horse "
                               "battery"}, headers={"Origin": desk.url})
            assert right.status_code == 303, right.status_code
            assert fresh.get("/api/overview").status_code == 200
        finally:
            fresh.close()
        guessing = httpx.Client(base_url=desk.url)
        try:  # five wrong tries, then even the right password waits: counted before the check
            for _ in range(5):
                assert guessing.post("/login", data={"username": "ana", "password": "guess"},
                                     headers={"Origin": desk.url}).status_code == 401
            held = guessing.post("/login", data={"username": "ana", "password": "correct "
                                 "horse battery"}, headers={"Origin": desk.url})
            assert held.status_code == 429 and int(held.headers["Retry-After"]) > 0
        finally:
            guessing.close()
    finally:
        desk.stop()


# --- with a whole simulated chair ------------------------------------------------------------

@pytest.fixture(scope="module")
def sim_chair(broker, tmp_path_factory) -> Iterator[tuple[Chair, Watcher]]:
    """``relaxd --simulate --ui --bridge URL --chair-id B``: the real daemon, station and bridge."""
    chair = Chair(tmp_path_factory.mktemp("sim"), broker, "B")
    watcher = Watcher(broker, OVERVIEW_USER, ["relaxd/B/reply", "relaxd/B/event/session",
                                              "relaxd/B/status"])
    try:
        wait_until(lambda: (chair.state() or {}).get("state") == "running", 120, "B running")
        wait_until(lambda: any(s.get("daemon") for s in watcher.on("relaxd/B/status")), 30,
                   "B's bridge online")
        yield chair, watcher
    finally:
        watcher.close()
        chair.stop()


def station_says(chair: Chair, message: dict[str, Any]) -> dict[str, Any]:
    """One command on the chair's control socket, as its station sends it."""
    return ask_socket((chair.out / "control-socket").read_text().strip(), message, timeout=15)


def test_a_second_clinic_stop_overrides_a_start_given_before_it(sim_chair):
    chair, watcher = sim_chair
    first = watcher.reply("B", watcher.command("B", "stop", at=time.time()))
    assert first["ok"], first
    seen = chair.state()["stop_seq"]  # what the caregiver's page shows when Start is pressed
    second = watcher.reply("B", watcher.command("B", "stop", at=time.time()))
    assert second["ok"], second
    start = station_says(chair, {"cmd": "start", "by": "ana", "after_stop": seen})
    assert start["ok"] is False, start  # the nurse's later stop wins over the earlier Start
    assert chair.state()["latch_causes"] == ["clinic-stop"]


def test_a_clinic_stop_is_never_counted_as_an_emergency_stop(sim_chair):
    chair, watcher = sim_chair
    if not chair.state()["latch_causes"]:
        assert watcher.reply("B", watcher.command("B", "stop", at=time.time()))["ok"]
    wait_until(lambda: chair.state()["latch_causes"] == ["clinic-stop"], 10, "B's clinic stop")
    assert chair.state()["estop_pressed"] is False  # nobody touched the e-stop
    # a new session at the chair ends the stopped one, whose summary then goes to the desk
    start = station_says(chair, {"cmd": "start", "by": "ana",
                                 "after_stop": chair.state()["stop_seq"]})
    assert start["ok"], start
    summary = wait_until(lambda: next((s for s in watcher.on("relaxd/B/event/session")
                                       if s.get("ended")), None), 40, "a session summary")
    assert summary["estops"] == 0, summary
