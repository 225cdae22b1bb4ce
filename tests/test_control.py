"""The control socket and the loop's side of the caregiver station (relaxd.daemon.server, relaxd.daemon.link).

A real Session on mock pins runs in a thread; the tests talk to it over the real unix socket.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import tempfile
import threading
import time
from pathlib import Path

import pytest

from relaxd.children.store import ChildLimits, ChildStore
from relaxd.control.controller import Controller, MoodSample, State
from relaxd.core.clock import VirtualClock
from relaxd.core.errors import RelaxdError
from relaxd.core.labels import Mood
from relaxd.core.paths import default_scenario, resource_dir
from relaxd.daemon.build import SessionRecords
from relaxd.daemon.hardware import SimulatedHands
from relaxd.daemon.link import ControlLink
from relaxd.daemon.loop import Session
from relaxd.daemon.server import ControlServer
from relaxd.daemon.station_inputs import ManualInput, StayUp, manual_or_camera, read_against
from relaxd.outputs.actuators import Actuators
from relaxd.outputs.audio import NullOutput
from relaxd.outputs.settings import ActuatorSettings
from relaxd.records.events import EventLog, MemorySink
from relaxd.safety.alerts import Alerter
from relaxd.safety.estop import EmergencyStop
from relaxd.safety.latch import FaultLatch
from relaxd.safety.settings import AlertSettings, SafetySettings
from relaxd.vision.body.vitals import Vitals
from relaxd.vision.inputs import Sensed

PINS = ActuatorSettings()
SAFETY = SafetySettings()


class Child:
    """A child whose mood the test sets; ``block`` stalls the loop inside read()."""

    scripted = exhausted = False

    def __init__(self, mood: Mood = Mood.POSITIVE) -> None:
        self.mood, self.block = mood, threading.Event()
        self.block.set()
        self.ticks = 0

    def read(self, t: float) -> Sensed:
        self.block.wait()
        self.ticks += 1
        return Sensed(MoodSample(self.mood, 0.8))

    def close(self) -> None:
        pass


def ask(path: Path, message: dict, timeout: float = 10.0) -> dict:
    """One command over the socket, as the station sends it; the daemon's answer."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall((json.dumps(message) + "\n").encode())
        return json.loads(s.makefile().readline())


def wait_for(cond, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class Chair:
    """A session with a station link, running in a thread."""

    def __init__(self, factory, folder: Path, latch_path: Path | None = None,
                 start_on: str = "face", child: Child | None = None,
                 records: bool = False) -> None:
        """``records``: session records and child profiles in ``folder``, as on the chair."""
        self.factory, self.sink = factory, MemorySink()
        self.records = SessionRecords(folder, "Calm blue waves", "test") if records else None
        self.events = self.records.events if records else EventLog([])
        self.events.sinks.append(self.sink)
        self.actuators = Actuators(PINS, NullOutput(), pin_factory=factory)
        self.alerter = Alerter(AlertSettings(), self.events, pin_factory=factory)
        self.latch = FaultLatch(latch_path)
        clock = VirtualClock(10.0)
        self.estop = EmergencyStop(
            self.actuators, SAFETY, alerter=self.alerter, events=self.events, now=clock.now,
            latch=self.latch, pin_factory=factory)
        self.hands = SimulatedHands(factory, SAFETY)
        self.hands.rest()
        self.socket = folder / "ctl.sock"
        self.link = ControlLink(self.socket, [resource_dir("scenarios")], estop=self.estop,
                                latch=self.latch, state_dir=folder if records else None)
        self.events.sinks.append(self.link.board)
        self.child = child or Child()
        controller = Controller(_scenario(), start_on=start_on)
        self.session = Session(clock=clock, input=StayUp(self.child), controller=controller,
                               actuators=self.actuators, estop=self.estop, alerter=self.alerter,
                               events=self.events, latch=self.latch, period=0.1, repeat=True,
                               control=self.link, stall_timeout=60,
                               roll_record=self.records.roll if records else None)
        self.thread = threading.Thread(target=self.session.run, daemon=True)

    def __enter__(self) -> Chair:
        self.thread.start()
        wait_for(self.socket.exists, "the control socket")
        wait_for(self.state, "the first state published")  # {} until the first tick is out
        return self

    def __exit__(self, *exc) -> None:
        self.child.block.set()
        self.session.request_stop("test over")
        self.thread.join(10)
        self.link.close()
        self.alerter.close()

    def pins(self) -> list[float]:
        return [self.factory.pin(p).state for p in (PINS.red_pin, PINS.green_pin, PINS.blue_pin,
                                                    PINS.vibration_pin)]

    def state(self) -> dict:
        return ask(self.socket, {"cmd": "state"})["state"]

    def lit(self) -> bool:
        return max(self.pins()) > 0

    def of_type(self, kind: str) -> list[dict]:
        return [e for e in list(self.sink.events) if e["type"] == kind]


def _scenario():
    from relaxd.control.scenario import load_scenario

    return load_scenario(default_scenario())


@pytest.fixture
def folder():
    path = Path(tempfile.mkdtemp(prefix="ctl-", dir="/tmp"))  # short: unix sockets <= 107 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_stop_zeroes_every_output_at_once_latches_and_records(mock_factory, folder):
    with Chair(mock_factory, folder, latch_path=folder / "latch.json") as chair:
        wait_for(chair.lit, "the chair to light up")
        answer = ask(chair.socket, {"id": 7, "cmd": "stop", "by": "ana"})
        assert answer == {"id": 7, "ok": True, "stop_seq": 1}
        assert chair.pins() == [0, 0, 0, 0]  # when the answer comes, everything is already off
        assert chair.estop.latched

        def on_disk() -> list:
            latch = FaultLatch(folder / "latch.json")
            return [latch.causes, latch.reason, latch.stop_seq]

        wait_for(lambda: on_disk() == [{"station-stop"}, "station stop by ana", 1], "the latch")
        wait_for(lambda: chair.state()["state"] == "estopped", "the loop to see the stop")
        wait_for(lambda: any(a["reason"] == "estop" for a in chair.state()["alerts"]),
                 "the alert on the board")
        state = chair.state()
        assert state["estop"] and state["station_stop"] and state["levels"] == {
            "light": 0.0, "audio": 0.0, "vibration": 0.0}
        assert state["stop_seq"] == 1 and state["latch_causes"] == ["station-stop"]
        assert [e["source"] for e in chair.of_type("estop")] == ["station stop by ana"]
        time.sleep(0.3)
        assert chair.pins() == [0, 0, 0, 0]  # and it stays off: nothing restarts by itself


def test_a_start_sent_just_before_a_stop_never_undoes_it(mock_factory, folder):
    """The loop is busy; a Start is queued, then a STOP comes from a second station. When the
    loop gets to the Start, the newer stop refuses it: the chair stays stopped."""
    with Chair(mock_factory, folder, start_on="station") as chair:
        ask(chair.socket, {"cmd": "stop", "by": "kiosk"})
        wait_for(lambda: chair.state()["state"] == "estopped", "the first stop")
        chair.child.block.clear()  # the loop now hangs inside read()
        answers: list[dict] = []
        sender = threading.Thread(target=lambda: answers.append(ask(chair.socket, {
            "cmd": "start", "scenario": "calm-blue-waves", "by": "tablet"})))
        sender.start()
        wait_for(lambda: chair.link.server._commands.qsize() == 1, "the Start to be queued")
        assert ask(chair.socket, {"cmd": "stop", "by": "kiosk"})["stop_seq"] == 2
        chair.child.block.set()
        sender.join(10)
        assert not answers[0]["ok"] and "came after this Start" in answers[0]["error"]
        time.sleep(0.3)
        assert chair.estop.latched and chair.pins() == [0, 0, 0, 0]
        assert chair.state()["state"] == "estopped"


def test_a_start_naming_an_older_stop_is_refused(mock_factory, folder):
    with Chair(mock_factory, folder, start_on="station") as chair:
        first = ask(chair.socket, {"cmd": "stop", "by": "kiosk"})["stop_seq"]
        second = ask(chair.socket, {"cmd": "stop", "by": "tablet"})["stop_seq"]
        refused = ask(chair.socket, {"cmd": "start", "scenario": "calm-blue-waves",
                                     "after_stop": first})
        assert not refused["ok"] and "came after this Start" in refused["error"]
        assert ask(chair.socket, {"cmd": "start", "scenario": "calm-blue-waves",
                                  "after_stop": second})["ok"]
        wait_for(chair.lit, "the session started after the newest stop")


def test_stop_works_while_the_loop_is_stalled(mock_factory, folder):
    with Chair(mock_factory, folder) as chair:
        wait_for(chair.lit, "the chair to light up")
        chair.child.block.clear()  # the loop now hangs inside read()
        ticks = chair.child.ticks
        time.sleep(0.2)
        assert ask(chair.socket, {"cmd": "stop"})["ok"]
        assert chair.pins() == [0, 0, 0, 0] and chair.child.ticks == ticks


def test_start_clears_only_a_station_stop_and_never_while_pressed(mock_factory, folder):
    with Chair(mock_factory, folder) as chair:
        wait_for(chair.lit, "the chair to light up")
        ask(chair.socket, {"cmd": "stop", "by": "ana"})
        answer = ask(chair.socket, {"cmd": "start", "scenario": "gentle-start", "by": "ana"})
        assert answer["ok"], answer
        wait_for(lambda: chair.state()["scenario"] == "Gentle start" and chair.lit(),
                 "the new session to light up")
        assert not chair.estop.latched and chair.latch.reason is None
        assert chair.state()["stop_seq"] == 1
        # The e-stop button: a Start never clears that, only the reset button at the chair.
        chair.hands("press", "estop")
        wait_for(lambda: chair.state()["estop_pressed"], "the press")
        refused = ask(chair.socket, {"cmd": "start", "scenario": "gentle-start"})
        assert not refused["ok"] and "pressed down" in refused["error"]
        chair.hands("release", "estop")
        wait_for(lambda: not chair.state()["estop_pressed"], "the release")
        refused = ask(chair.socket, {"cmd": "start", "scenario": "gentle-start"})
        assert not refused["ok"] and "reset button" in refused["error"]
        assert chair.pins() == [0, 0, 0, 0]


def test_a_station_stop_survives_a_daemon_restart(mock_factory, folder):
    latch = folder / "latch.json"
    with Chair(mock_factory, folder, latch_path=latch) as chair:
        wait_for(chair.lit, "the chair to light up")
        ask(chair.socket, {"cmd": "stop", "by": "ana"})
        wait_for(lambda: chair.state()["state"] == "estopped", "the stop")
    mock_factory.reset()
    with Chair(mock_factory, folder, latch_path=latch) as chair:
        wait_for(lambda: chair.state().get("estop"), "the restarted chair to come up stopped")
        time.sleep(0.3)
        assert chair.pins() == [0, 0, 0, 0] and chair.state()["station_stop"]
        assert ask(chair.socket, {"cmd": "start", "scenario": "calm-blue-waves"})["ok"]
        wait_for(chair.lit, "the started session")


def test_with_a_station_no_session_starts_because_a_face_appeared(mock_factory, folder):
    with Chair(mock_factory, folder, start_on="station") as chair:
        time.sleep(0.5)
        state = chair.state()
        assert state["state"] == "idle" and state["waiting"] and not chair.lit()
        assert ask(chair.socket, {"cmd": "start", "scenario": "calm-blue-waves"})["ok"]
        wait_for(chair.lit, "the session the caregiver started")
        refused = ask(chair.socket, {"cmd": "start", "scenario": "calm-blue-waves"})
        assert not refused["ok"] and "running" in refused["error"]


def test_acknowledging_every_alert_stops_the_buzzer_and_led(mock_factory, folder):
    with Chair(mock_factory, folder) as chair:
        chair.alerter.alert(1.0, "halt", "negative mood for 30 s: <b>stimuli halted</b>")
        wait_for(lambda: chair.state()["alerts"], "the alert on the board")
        alert = chair.state()["alerts"][0]
        assert alert["reason"] == "halt" and not alert["acknowledged"] and alert["id"] >= 1
        wait_for(lambda: chair.alerter.led.value, "the LED to blink")
        assert ask(chair.socket, {"cmd": "ack", "alert": alert["id"], "by": "ana"})["ok"]
        assert chair.state()["alerts"][0]["acknowledged"]
        chair.alerter.wait(2)
        time.sleep(0.1)
        assert not chair.alerter.buzzer.value and not chair.alerter.led.value
        assert not ask(chair.socket, {"cmd": "ack", "alert": 999})["ok"]
        audit = chair.of_type("audit")
        assert audit[-1]["action"] == "ack" and audit[-1]["by"] == "ana"


def test_gentle_controls_and_manual_mode(mock_factory, folder):
    with Chair(mock_factory, folder, child=Child(Mood.NEUTRAL)) as chair:
        wait_for(lambda: chair.state()["state"] == "running", "the session")
        before = chair.state()["intensity"]
        assert ask(chair.socket, {"cmd": "calmer"})["ok"]
        assert chair.session.controller.intensity < before
        assert ask(chair.socket, {"cmd": "hold", "on": True})["ok"]
        assert chair.state()["hold"]
        assert ask(chair.socket, {"cmd": "observe", "what": "calm", "by": "ana"})["ok"]
        assert chair.of_type("observation")[-1]["what"] == "calm"
        assert not ask(chair.socket, {"cmd": "observe", "what": "bored"})["ok"]
        assert ask(chair.socket, {"cmd": "end_gently"})["ok"]
        assert chair.session.controller.state is State.FADING
        wait_for(lambda: chair.state()["state"] in ("idle", "ended"), "the fade-out", 120)
        assert ask(chair.socket, {"cmd": "start", "scenario": "calm-blue-waves",
                                  "manual": True})["ok"]
        wait_for(lambda: chair.state()["manual"] and chair.state()["state"] == "running",
                 "the manual session")
        ticks = chair.child.ticks
        time.sleep(0.3)
        assert chair.child.ticks == ticks  # manual: the camera's input is not read
        start = chair.session.controller.intensity
        assert ask(chair.socket, {"cmd": "nudge", "steps": 1})["ok"]
        assert chair.session.controller.intensity > start
        assert not ask(chair.socket, {"cmd": "nudge", "steps": 5})["ok"]


def test_the_state_carries_the_breath_the_outputs_follow(mock_factory, folder):
    """The station's breathing indicator: the default scenario breathes from 12 to 6 a minute;
    no breath is shown while nothing plays (idle, stopped)."""
    with Chair(mock_factory, folder, start_on="station", child=Child(Mood.NEUTRAL)) as chair:
        assert chair.state()["waiting"] and chair.state()["breath"] is None
        assert ask(chair.socket, {"cmd": "start", "scenario": "calm-blue-waves"})["ok"]
        wait_for(lambda: chair.state()["breath"] is not None, "the breathing to begin")
        breath = chair.state()["breath"]
        assert 6 <= breath["bpm"] <= 12 and 0 <= breath["phase"] < 1
        assert ask(chair.socket, {"cmd": "stop", "by": "ana"})["ok"]
        wait_for(lambda: chair.state()["breath"] is None, "the breathing to stop with the outputs")


class Breathing(Child):
    """A child seen breathing at 9 a minute, chest in view."""

    def read(self, t: float) -> Sensed:
        self.ticks += 1
        return Sensed(MoodSample(self.mood, 0.8), vitals=Vitals(9.0, None, 0.1, 0.8, 0.0),
                      chest_seen=True)


def test_the_state_and_the_record_carry_the_vitals_beside_the_chairs_tempo(mock_factory, folder):
    """For the station's "Ada 9 / min · chair 7 / min" and the clinic: the latest vitals, the
    tempo the chair breathes on (None while nothing plays), the chest in view; each recorded
    ``vitals`` event carries the tempo too."""
    with Chair(mock_factory, folder, start_on="station", child=Breathing(Mood.NEUTRAL)) as chair:
        wait_for(lambda: chair.state()["vitals"] is not None, "the vitals")
        state = chair.state()
        assert state["vitals"]["breathing"] == 9.0 and state["tempo"] is None
        assert state["chest_in_view"] is True
        assert ask(chair.socket, {"cmd": "start", "scenario": "calm-blue-waves"})["ok"]
        wait_for(lambda: chair.state()["tempo"] is not None, "the tempo")
        assert 6 <= chair.state()["tempo"] <= 12
        wait_for(lambda: any(e.get("tempo") for e in chair.of_type("vitals")), "a vitals event")
        event = next(e for e in chair.of_type("vitals") if e.get("tempo"))
        assert event["breathing"] == 9.0 and 6 <= event["tempo"] <= 12


def test_bad_messages_get_a_one_line_error_and_the_server_lives_on(mock_factory, folder):
    with Chair(mock_factory, folder) as chair:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(chair.socket))
            f = s.makefile("rwb")
            for line in (b"not json\n", b"[1, 2]\n", b'{"cmd": "fly"}\n'):
                f.write(line)
                f.flush()
                answer = json.loads(f.readline())
                assert answer["ok"] is False and "\n" not in answer["error"]
        assert ask(chair.socket, {"cmd": "state"})["ok"]


def test_a_subscriber_that_never_reads_never_blocks_publishing(folder):
    server = ControlServer(folder / "ctl.sock", stop=lambda by: None)
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(folder / "ctl.sock"))
            s.sendall(b'{"cmd": "subscribe"}\n')
            big = {"alerts": ["x" * 1000] * 50}
            for i in range(2000):  # far more than the socket buffers hold
                server.publish({**big, "n": i})
        assert stat.S_IMODE(os.stat(folder / "ctl.sock").st_mode) == 0o660
    finally:
        server.close()


def test_socket_paths_longer_than_unix_allows_are_refused(folder):
    with pytest.raises(RelaxdError, match="107 bytes"):
        ControlServer(folder / ("x" * 120), stop=lambda by: None)


def _children(folder: Path) -> None:
    """Ada (camera consent, vibration <= 0.3, no pulsing light), Bo (no consent), Cy (manual
    mode only), Di (sessions of at most 5 minutes)."""
    store = ChildStore(folder)
    ada = store.add("ada", "Ada", real_name=True)
    ada.limits = ChildLimits(vibration=0.3, no_pulse=True)
    store.save(ada)
    store.consent(ada, "Ada's mother", "camera")
    store.add("bo")
    store.consent(store.add("cy"), "Cy's father", "manual")
    di = store.add("di")
    di.limits = ChildLimits(session_min=5)
    store.save(di)
    store.consent(di, "Di's mother", "camera")
    store.close()


def test_start_for_a_child_checks_as_child_does_and_the_session_is_theirs(mock_factory, folder):
    _children(folder)
    with Chair(mock_factory, folder, start_on="station", records=True,
               child=Child(Mood.NEUTRAL)) as chair:
        listed = ask(chair.socket, {"cmd": "children"})["children"]
        assert [(c["id"], c["consent"]) for c in listed] == [
            ("ada", "camera"), ("bo", None), ("cy", "manual"), ("di", "camera")]
        auto = ask(chair.socket, {"cmd": "recommend", "child": "ada"})
        assert auto["ok"] and auto["why"].startswith(auto["scenario"] + ": ")

        def start(**args) -> dict:
            return ask(chair.socket, {"cmd": "start", "by": "ana", **args})

        refusals = {
            "no guardian consent": start(child="bo", scenario="calm-blue-waves"),
            "manual mode only": start(child="cy", scenario="calm-blue-waves"),
            "longer than their longest session": start(child="di", scenario="calm-blue-waves"),
            "choose the child": start(scenario="auto"),
            "no child 'zed'": start(child="zed", scenario="auto"),
        }
        for reason, answer in refusals.items():
            assert not answer["ok"] and reason in answer["error"] and "\n" not in answer["error"]
        assert not chair.lit() and chair.state()["child"] is None

        answer = start(child="ada", scenario="auto")
        assert answer["ok"] and answer["child"] == "ada" and answer["scenario"] == auto["scenario"]
        assert answer["why"] == auto["why"]
        wait_for(lambda: chair.state()["state"] == "running", "Ada's session")
        state = chair.state()
        assert (state["child"], state["why"]) == ("ada", auto["why"])
        assert chair.session.controller.caps.level.vibration == 0.3
        assert chair.actuators.steady_light
        assert ask(chair.socket, {"cmd": "observe", "what": "calm", "by": "ana"})["ok"]
        assert not chair.session.child.baseline.confirmed
        assert ask(chair.socket, {"cmd": "observe", "what": "misread", "by": "ana"})["ok"]
        assert chair.session.child.baseline.confirmed  # the live baseline trusts this face now
        assert ask(chair.socket, {"cmd": "stop", "by": "ana"})["ok"]
        wait_for(lambda: chair.state()["state"] == "estopped", "the stop")
        start_event = [e for e in chair.of_type("session") if e.get("child")][-1]
        assert (start_event["child"], start_event["why"]) == ("ada", auto["why"])
        assert "Ada" not in json.dumps(list(chair.sink.events))  # the id only, never the name

        # manual mode with consent for manual only; the installation's caps again
        assert start(child="cy", scenario="gentle-start", manual=True)["ok"]
        wait_for(lambda: chair.state()["child"] == "cy", "Cy's session")
        assert chair.session.controller.caps.level.vibration == 1.0
        assert not chair.actuators.steady_light
    store = ChildStore(folder)
    (ada_session,) = store.sessions("ada")
    assert ada_session["scenario"] == auto["scenario"] and ada_session["why"] == auto["why"]
    assert [e["what"] for e in ada_session["events"]
            if e["type"] == "observation"] == ["calm", "misread"]
    assert len(store.sessions("cy")) == 1 and not store.sessions("bo")
    store.close()


def test_a_newly_installed_scenario_appears_in_the_published_state(mock_factory, folder):
    """The installed scenarios are listed again when a folder changes (not every tick)."""
    extra = folder / "installed"
    with Chair(mock_factory, folder) as chair:
        chair.link.scenario_dirs = [extra, resource_dir("scenarios")]
        wait_for(lambda: "calm-blue-waves" in chair.state()["scenarios"], "the bundled ones")
        assert "my-own" not in chair.state()["scenarios"]
        extra.mkdir()
        shutil.copy(resource_dir("scenarios") / "gentle-start.yaml", extra / "my-own.yaml")
        wait_for(lambda: "my-own" in chair.state()["scenarios"], "the new scenario listed")


def test_a_dead_control_socket_is_alerted_at_the_chair(mock_factory, folder):
    """The accept thread gives up (its socket gone): the loop notices and alerts once."""
    import errno

    from test_control_server import FailingListener

    with Chair(mock_factory, folder) as chair:
        server = chair.link.server
        server._sock = FailingListener(server._sock, failures=1, error=errno.EBADF)
        with socket.socket(socket.AF_UNIX) as poke:  # wakes an accept under way (if any);
            poke.connect(str(chair.socket))          # the next accept fails: the thread ends
        wait_for(lambda: not chair.link.server.alive, "the accept thread to end")
        wait_for(lambda: any("stopped accepting" in a["detail"] for a in chair.of_type("alert")),
                 "the alert")
        time.sleep(0.3)
        assert len([a for a in chair.of_type("alert") if "stopped accepting" in a["detail"]]) == 1


class Camera(Child):
    """The camera's input: it reads the face against a child's resting face."""

    baseline: object = None


def test_manual_mode_keeps_the_camera_and_the_baseline_reaches_it_through_the_wrappers():
    camera = Camera()
    chair = StayUp(camera)
    manual = manual_or_camera(chair, manual=True)
    assert isinstance(manual, ManualInput) and manual.camera is chair
    assert manual_or_camera(manual, manual=True) is manual
    assert manual_or_camera(manual, manual=False) is chair
    read_against(manual, "the child's resting face")
    assert camera.baseline == "the child's resting face"
    read_against(chair, None)
    assert camera.baseline is None
    read_against(StayUp(Child()), "no camera to read against")  # a script: nothing to set
