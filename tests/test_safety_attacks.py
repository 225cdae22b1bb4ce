"""Attacks on the stop arbiter, the reset button, the control socket and the latch file, each
one a fault an attacker once reproduced; each test holds the fix (its docstring tells the attack
and the code that answers it).

Real parts throughout: gpiozero mock pins, real Sessions, real unix sockets, the station's real
web application and link.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from relaxd.control.controller import Controller, MoodSample
from relaxd.control.scenario import load_scenario
from relaxd.core.clock import VirtualClock
from relaxd.core.labels import Mood
from relaxd.core.paths import default_scenario
from relaxd.daemon import server as control
from relaxd.daemon.hardware import SimulatedHands
from relaxd.daemon.loop import Session
from relaxd.outputs.actuators import Actuators
from relaxd.outputs.audio import NullOutput
from relaxd.outputs.settings import ActuatorSettings
from relaxd.records.events import EventLog, MemorySink
from relaxd.safety.alerts import Alerter
from relaxd.safety.estop import EmergencyStop, ResetButton
from relaxd.safety.latch import FaultLatch, RunMarker
from relaxd.safety.settings import AlertSettings, SafetySettings
from relaxd.vision.inputs import Sensed

PINS = ActuatorSettings()


def pins(factory) -> list[float]:
    return [factory.pin(p).state for p in (PINS.red_pin, PINS.green_pin, PINS.blue_pin,
                                           PINS.vibration_pin)]


@pytest.fixture
def place():
    path = Path(tempfile.mkdtemp(prefix="brk-", dir="/tmp"))  # short: unix sockets <= 107 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Script:
    """A seated, calm child; ``actions[tick]()`` runs inside that tick's read (the loop's own
    thread, before the loop looks at the buttons). Records the actuator pins every tick."""

    scripted = exhausted = False

    def __init__(self, factory, actions: dict, ticks: int) -> None:
        self.factory, self.actions, self.ticks, self.tick = factory, actions, ticks, 0
        self.seen: list[list[float]] = []

    def read(self, t: float) -> Sensed | None:
        self.tick += 1
        self.seen.append(pins(self.factory))
        if self.tick in self.actions:
            self.actions[self.tick]()
        if self.tick > self.ticks:
            return None
        return Sensed(MoodSample(Mood.POSITIVE, 0.9))

    def close(self) -> None:
        pass


def chair_session(factory, inp, *, latch: FaultLatch, marker: RunMarker | None = None,
                  reset_button: bool = False, remote_reset: bool = False,
                  safety: SafetySettings | None = None):
    """A Session on mock pins without a station (the chair starts on a face), as relaxd builds
    it; the hands on its buttons."""
    sink = MemorySink()
    events = EventLog([sink])
    actuators = Actuators(PINS, NullOutput(), pin_factory=factory)
    alerter = Alerter(AlertSettings(), events, pin_factory=factory)
    clock = VirtualClock(None)
    s = safety or SafetySettings()
    estop = EmergencyStop(actuators, s, alerter=alerter, events=events, now=clock.now,
                          pin_factory=factory, latch=latch)
    if reset_button:
        ResetButton(estop, s, now=clock.now, pin_factory=factory)
    hands = SimulatedHands(factory, s)
    hands.rest()
    session = Session(clock=clock, input=inp,
                      controller=Controller(load_scenario(default_scenario())),
                      actuators=actuators, estop=estop, alerter=alerter, events=events,
                      latch=latch, period=0.1, marker=marker, remote_reset=remote_reset,
                      stall_timeout=60)
    return session, sink, hands


# --- 1. The station drops the stop number its caregiver saw ------------------------------------

def test_a_station_start_pressed_before_another_tablets_stop_never_undoes_that_stop(
        mock_factory, place):
    """Two tablets. Ana's page shows the chair idle (stop_seq 0) and she presses Start; her
    request reaches relaxd after Bob's STOP from the other tablet (a slow Wi-Fi, a busy station).
    Rule (C2a, H2 "a Start queued just before a STOP (a double tap, a second station) carried out
    after it"): a stop overrides every start given before it. Today the station passes no stop
    number (station.js sends none, ``_start_args`` in relaxd/station/server.py keeps only
    scenario/manual/child), so relaxd binds Ana's Start to Bob's STOP, clears it (station-stop
    alone) and the chair plays: Bob's STOP is undone.

    Assumes the browser's Start carries the stop number its page showed as ``after_stop`` (the
    control protocol's own name for it); the fix needs station.js to send it and the station to
    forward it."""
    pytest.importorskip("starlette")
    import re

    from starlette.testclient import TestClient
    from test_control import Chair, wait_for
    from test_station import ORIGIN, PASSWORD, post

    from relaxd.station.auth import RateLimit, Sessions, UserStore
    from relaxd.station.link import ChairLink
    from relaxd.station.server import Station, create_app

    with Chair(mock_factory, place, start_on="station") as chair:
        users = UserStore(place / "users.json")
        users.set_user("ana", PASSWORD, "caregiver")
        users.set_user("bob", PASSWORD, "caregiver")
        station = Station(link=ChairLink(chair.socket), users=users, sessions=Sessions(3600),
                          records=place, scenario_dirs=[place / "scenarios"], limiter=RateLimit())

        def tablet(user: str):
            c = TestClient(create_app(station), client=("127.0.0.1", 50000),
                           follow_redirects=False)
            r = c.post("/login", data={"username": user, "password": PASSWORD},
                       headers={"Origin": ORIGIN})
            assert r.status_code == 303, r.text
            token = re.search(r'<meta name="csrf-token" content="([^"]+)">',
                              c.get("/").text).group(1)
            return c, token

        (ana, ana_token), (bob, bob_token) = tablet("ana"), tablet("bob")
        with ana:  # its lifespan follows the chair; Bob's tablet only sends
            wait_for(lambda: ana.get("/api/state").json().get("waiting"), "the station's state")
            seen = ana.get("/api/state").json()
            assert seen["stop_seq"] == 0 and not seen["estop"]
            start_body = {"scenario": "calm-blue-waves", "child": None, "manual": False,
                          "after_stop": seen["stop_seq"]}  # what Ana's page knew when pressed
            stopped = post(bob, "/api/stop", bob_token)  # Bob's STOP arrives first
            assert stopped.status_code == 200 and stopped.json()["stop_seq"] == 1
            late = post(ana, "/api/start", ana_token, start_body)  # then Ana's Start
            time.sleep(0.5)
            assert chair.pins() == [0, 0, 0, 0], "Bob's STOP was undone by a Start pressed before it"
            assert late.status_code == 409
            assert chair.estop.latched


def test_a_start_sent_before_a_stop_on_another_connection_never_undoes_it(mock_factory, place):
    """A double tap at the socket, as ``relaxd start`` sends them (no ``after_stop``): the
    chair is stopped by the station; a Start is sent on one connection, then a STOP on a
    second. Whichever the chair carries out first, it ends stopped and dark (C2a): the Start is
    bound to the newest stop when its connection was accepted, so a STOP accepted after it
    always wins (relaxd/daemon/server.py ControlServer._hand_over)."""
    from test_control import Chair, ask, wait_for

    undone = 0
    with Chair(mock_factory, place, start_on="station") as chair:
        ask(chair.socket, {"cmd": "stop"})
        for _ in range(30):
            wait_for(lambda: chair.state()["state"] == "estopped", "the chair stopped")
            first, second = socket.socket(socket.AF_UNIX), socket.socket(socket.AF_UNIX)
            first.connect(str(chair.socket))
            second.connect(str(chair.socket))
            time.sleep(0.01)
            first.sendall(b'{"cmd":"start","scenario":"calm-blue-waves","by":"tap 1"}\n')
            second.sendall(b'{"cmd":"stop","by":"tap 2"}\n')  # sent after the Start
            started = json.loads(first.makefile().readline())
            json.loads(second.makefile().readline())
            first.close()
            second.close()
            time.sleep(0.2)  # a few ticks: a Start carried out before the STOP came is stopped
            if chair.lit() or not chair.estop.latched:
                undone += 1
            if started.get("ok"):  # it ran first, then the STOP: stop again for the next trial
                ask(chair.socket, {"cmd": "stop"})
    assert undone == 0, f"{undone} of 30 STOPs undone by a Start sent before them"


# --- 2. A Start whose sender was told "no answer" is carried out later --------------------------

class StalledListener:
    """The listening socket, with accept() failing (EMFILE: out of file descriptors) until
    ``recovered`` is set; connections wait in the kernel's backlog meanwhile."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.recovered = sock, threading.Event()

    def accept(self):
        if not self.recovered.is_set():
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return self.sock.accept()

    def __getattr__(self, name: str):
        return getattr(self.sock, name)


def test_a_start_the_station_was_told_went_unanswered_is_never_carried_out_later(
        mock_factory, place, monkeypatch):
    """accept() fails for a while (EMFILE; H10 says it is survived). The station's Start waits
    in the socket's backlog; the station gives up (ChairLink: ANSWER_WAIT_S, 8 s; 1 s here) and
    tells the caregiver "the chair's daemon did not answer" (503). When accepting recovers,
    relaxd reads the dead connection's line and starts the session: the chair lights up after
    its caregiver was told the Start failed. Rule (C2a): a queued command whose sender was told
    it timed out is cancelled, never carried out later. At fault: ControlServer._queue starts
    ANSWER_TIMEOUT_S when relaxd reads the line, not when the client sent it, and a client that
    has gone is still obeyed (relaxd/daemon/server.py)."""
    from test_control import Chair

    from relaxd.station import link as station_link
    from relaxd.station.link import ChairLink, ChairUnreachable

    monkeypatch.setattr(station_link, "ANSWER_WAIT_S", 1.0)
    with Chair(mock_factory, place, start_on="station") as chair:
        server = chair.link.server
        listener = StalledListener(server._sock)
        server._sock = listener
        with socket.socket(socket.AF_UNIX) as poke:  # wakes an accept under way, if any
            poke.connect(str(chair.socket))
        time.sleep(0.2)  # accept() now fails, and is retried with a growing pause

        async def station_start() -> str:
            try:
                await ChairLink(chair.socket).command("start", scenario="calm-blue-waves",
                                                      by="ana")
            except ChairUnreachable as exc:
                return str(exc)
            return "answered"

        told = asyncio.run(station_start())
        assert "did not answer" in told  # the caregiver sees the Start failed
        listener.recovered.set()
        time.sleep(2.5)  # the accept loop's pause (<= 1 s), then a few ticks
        assert not chair.lit(), "a Start its sender gave up on was carried out later"
        assert not [e for e in chair.of_type("audit") if e["action"] == "start"]


# --- 3. A stop that could not be written is forgotten by a clean exit ---------------------------

class CameraDropsOut(Script):
    """A Script whose camera goes down for good from tick ``down_from``."""

    def __init__(self, factory, actions: dict, ticks: int, down_from: int) -> None:
        super().__init__(factory, actions, ticks)
        self.down_from = down_from

    def read(self, t: float) -> Sensed | None:
        sensed = super().read(t)
        if sensed is not None and self.tick >= self.down_from:
            return Sensed(MoodSample(Mood.NO_FACE, 0.0), no_input="camera: no frames")
        return sensed


@pytest.mark.parametrize("ending", ["SIGTERM", "camera restart (exit 75)"])
def test_a_stop_whose_latch_could_not_be_written_survives_a_clean_exit(mock_factory, place,
                                                                       ending):
    """The e-stop is pressed while latch.json cannot be written (here latch.json.tmp is in the
    way; on the chair an SD card that is full: ENOSPC, while unlinking still works). The write
    failure is alerted and the stop holds in memory (C2). The caregiver twists the e-stop free.
    Then relaxd ends cleanly: SIGTERM (systemctl restart, a reboot, a technician freeing the
    disk), or, with no human act at all, the camera-restart exit 75 that systemd restarts by
    itself. ``Session._finish`` removes the run marker although the stop was never saved. The
    next start finds neither marker nor latch and comes up unlatched: with no station the chair
    plays on the next face, the reset button never pressed (C5, H2). At fault:
    relaxd/daemon/loop.py Session._finish (marker.end() on a clean exit whatever the latch's save
    did), relaxd/safety/estop.py EmergencyStop._save (a failed write leaves nothing a restart sees)."""
    latch_path, marker = place / "latch.json", RunMarker.in_state_dir(place)
    (place / "latch.json.tmp").mkdir()  # the latch file cannot be written
    holder: dict = {}
    actions = {
        30: lambda: holder["hands"]("press", "estop"),
        40: lambda: holder["hands"]("release", "estop"),  # twisted free: clears nothing
    }
    if ending == "SIGTERM":
        actions[60] = lambda: holder["session"].request_stop("SIGTERM")
        first = Script(mock_factory, actions, ticks=1000)
    else:
        first = CameraDropsOut(mock_factory, actions, ticks=1000, down_from=50)
    session, sink, hands = chair_session(mock_factory, first, latch=FaultLatch(latch_path),
                                         marker=marker)
    session.camera_grace = 2.0
    holder.update(session=session, hands=hands)
    assert session.run() in (0, 75)  # a clean exit
    assert max(first.seen[25]) > 0 and first.seen[-1] == [0, 0, 0, 0]
    alerts = [e["detail"] for e in sink.events if e["type"] == "alert"]
    assert any("cannot record the stop on disk" in a for a in alerts)  # alerted, as C2 says

    # The restart (the disk has room again).
    (place / "latch.json.tmp").rmdir()
    mock_factory.reset()
    second = Script(mock_factory, {}, ticks=100)
    session, _, _ = chair_session(mock_factory, second, latch=FaultLatch(latch_path),
                                  marker=RunMarker.in_state_dir(place))
    session.run()
    assert all(max(v) == 0 for v in second.seen), \
        "the chair played after a restart although its e-stop was never reset"


# --- 4. The reset button's start: a bounce is taken for a deliberate press --------------------

def _reset_then(mock_factory, after_release) -> Script:
    """E-stop pressed and twisted free; the reset button held 4 s and released; then
    ``after_release(hands)`` in the same instant. Returns the script (pins every tick)."""
    holder: dict = {}

    def release_reset() -> None:
        holder["hands"]("release", "reset")
        after_release(holder["hands"])

    script = Script(mock_factory, {
        30: lambda: holder["hands"]("press", "estop"),
        35: lambda: holder["hands"]("release", "estop"),
        50: lambda: holder["hands"]("press", "reset"),
        90: release_reset,  # held 4 s (period 0.1 s, virtual clock)
    }, ticks=200)
    session, sink, hands = chair_session(mock_factory, script, latch=FaultLatch(None),
                                         reset_button=True)
    holder["hands"] = hands
    session.run()
    assert max(script.seen[25]) > 0  # it played before the stop
    assert not session.estop.latched  # the reset itself worked
    return script


def test_a_bounce_of_the_reset_buttons_release_does_not_start_the_chair(mock_factory):
    """The reset button is released after its 3 s hold and its contact bounces once (a pulse
    longer than safety.bounce_time, 10 ms, gets through lgpio's debounce). The reset cleared the
    latch on the release; the bounce reads as "the next press and release (any length)" and
    starts a session: stimulation restarts with no deliberate act (C5 "a reset is not a
    restart"; H2 "contact chatter", "an intermittent reset contact"). At fault:
    relaxd/safety/estop.py ResetButton._pressed/_released (a start needs no minimum press and may
    follow the reset's release at once), relaxd/daemon/loop.py Session._start_at_chair."""
    def bounce(hands) -> None:
        hands("press", "reset")
        hands("release", "reset")

    script = _reset_then(mock_factory, bounce)
    after = script.seen[91:]
    assert all(max(v) == 0 for v in after), "a contact bounce started stimulation after a reset"


def test_a_glitch_of_the_reset_contact_while_idle_after_a_reset_starts_nothing(mock_factory):
    """After a reset the chair waits, idle. An intermittent reset contact (H2) gives one short
    pulse (a few ms, no caregiver's finger), seconds later: it starts a session. At fault: as
    above."""
    holder: dict = {}

    def pulse() -> None:
        holder["hands"]("press", "reset")
        holder["hands"]("release", "reset")  # the same instant: no finger held it

    script = Script(mock_factory, {
        30: lambda: holder["hands"]("press", "estop"),
        35: lambda: holder["hands"]("release", "estop"),
        50: lambda: holder["hands"]("press", "reset"),
        90: lambda: holder["hands"]("release", "reset"),  # the reset: held 4 s
        150: pulse,  # 6 s later, while idle
    }, ticks=250)
    session, _, hands = chair_session(mock_factory, script, latch=FaultLatch(None),
                                      reset_button=True)
    holder["hands"] = hands
    session.run()
    assert max(script.seen[25]) > 0 and not session.estop.latched
    assert all(max(v) == 0 for v in script.seen[91:150])  # idle after the reset, as it should be
    assert all(max(v) == 0 for v in script.seen[151:]), "a contact glitch started stimulation"


# --- 5. latch.json crafted or damaged --------------------------------------------------------

@pytest.mark.parametrize("text", [
    '{"causes": null, "stop_seq": 7}',
    '{"causes": 0, "stop_seq": 7}',
    '{"causes": "", "stop_seq": 7}',
    '{"causes": {}, "stop_seq": 7}',
])
def test_a_damaged_latch_file_never_reads_as_unlatched(place, text):
    """A latch.json whose ``causes`` is not a list of causes reads as "nothing latched": a chair
    stopped by the e-stop or a fault comes up unlatched (with no station it plays on the next
    face). SAFETY H2: "old and damaged files need the reset button"; a file without "causes"
    does. At fault: relaxd/safety/latch.py _parse (``data.get("causes") or ()``)."""
    (place / "latch.json").write_text(text)
    latch = FaultLatch(place / "latch.json")
    assert latch.latched and not latch.station_clearable


@pytest.mark.parametrize("text", [
    '{"causes": ["estop"], "stop_seq": Infinity}',
    '{"causes": ["estop"], "stop_seq": 1e999}',
    '{"causes": 5, "stop_seq": 1}',
    '{"causes": [["estop"]], "stop_seq": 1}',
    '{"causes": [{}], "stop_seq": 1}',
])
def test_a_damaged_latch_file_latches_and_never_raises(place, text):
    """These raise OverflowError or TypeError out of FaultLatch(): relaxd does not start, and
    ``relaxd safe-off`` (ExecStartPre/ExecStopPost) dies with a traceback after driving the pins
    off, without adding ``crash`` (C7: "whatever else is wrong"); ``relaxd check`` dies too. At
    fault: relaxd/safety/latch.py _parse (catches only TypeError/ValueError around int(), iterates and
    hashes whatever "causes" holds), FaultLatch._read."""
    (place / "latch.json").write_text(text)
    latch = FaultLatch(place / "latch.json")
    assert latch.latched and not latch.station_clearable


def test_safe_off_latches_a_crash_whatever_the_latch_file_holds(place):
    """``relaxd safe-off`` after a crash (run marker present) with a latch.json it cannot parse
    must still add ``crash`` and exit 0 or say COULD NOT LATCH; today it ends in a traceback."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    RunMarker.in_state_dir(place).begin()
    (place / "latch.json").write_text('{"causes": ["station-stop"], "stop_seq": Infinity}')
    done = subprocess.run([sys.executable, "-m", "relaxd", "safe-off", "--simulate", "--out",
                           str(place)], capture_output=True, text=True, timeout=60, cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert "Traceback" not in done.stderr, done.stderr[-600:]
    assert "actuator pins off" in done.stdout


# --- 6. A malformed reset request ---------------------------------------------------------

@pytest.mark.parametrize("after_stop", ["Infinity", "1e999"])
def test_a_malformed_reset_request_is_ignored_not_a_fault(place, after_stop):
    """A request with ``"after_stop": Infinity`` raises OverflowError out of
    take_reset_request (only KeyError/TypeError/ValueError are caught): with remote_reset the
    loop dies in a fault at the next tick (safe, but a forged file stops every session, and
    the chair comes up with ``crash``+``fault``). At fault: relaxd/safety/latch.py take_reset_request."""
    latch = FaultLatch(place / "latch.json")
    latch.latch("estop")
    (place / "reset-request").write_text(f'{{"after_stop": {after_stop}, "at": {time.time()}}}')
    assert latch.take_reset_request() is None


# --- 7. STOP refused while clients that keep talking hold every slot ---------------------------

def test_stop_is_answered_while_busy_clients_hold_every_slot_and_the_reserve(place, monkeypatch):
    """H10 claims STOP stays answerable with every slot taken, and that a hostile local client
    can delay it by at most 10 s per held connection. A client that asks ``state`` every few
    seconds is never closed (IDLE_TIMEOUT_S counts from its last line), so 8 such connections
    hold the slots for good; 4 silent ones hold the STOP reserve (1 s each) and reconnect at
    once. Every further connection, the station's STOP included, is answered "too many
    clients": the STOP is refused, for as long as the clients like. At fault:
    relaxd/daemon/server.py ControlServer._hand_over (a connection over the reserve is refused
    without reading its line) and _lines (the idle timeout is per line, not per connection)."""
    monkeypatch.setattr(control, "IDLE_TIMEOUT_S", 0.5)
    stops: list[str] = []
    server = control.ControlServer(place / "ctl.sock", stop=lambda by: stops.append(by) or 1)
    quit_ = threading.Event()

    def chatty() -> None:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(server.path))
            f = s.makefile("rb")
            while not quit_.is_set():
                s.sendall(b'{"cmd":"state"}\n')
                f.readline()
                time.sleep(0.2)

    def squatter() -> None:
        while not quit_.is_set():
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(server.path))
                s.settimeout(2)
                try:
                    s.recv(100)  # held until the server closes it (1 s), then again
                except OSError:
                    pass

    threads = [threading.Thread(target=chatty, daemon=True) for _ in range(8)]
    for th in threads:
        th.start()
    time.sleep(1.5)  # three idle timeouts: the chatty clients are still there
    threads += [threading.Thread(target=squatter, daemon=True) for _ in range(4)]
    for th in threads[8:]:
        th.start()
    time.sleep(0.3)
    try:
        answers = []
        for _ in range(5):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(str(server.path))
                try:
                    s.sendall(b'{"cmd":"stop","by":"ana"}\n')
                except BrokenPipeError:
                    pass  # refused before it could even send: the answer is waiting
                answers.append(json.loads(s.makefile("rb").readline() or b"{}"))
            time.sleep(0.1)
        assert all(a.get("ok") for a in answers), answers
    finally:
        quit_.set()
        server.close()
