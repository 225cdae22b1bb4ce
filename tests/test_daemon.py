"""The loop's safety paths: exceptions, stalls, signals and restarts leave every output at 0."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from relaxd.control.controller import Controller, MoodSample
from relaxd.control.scenario import load_scenario
from relaxd.core.clock import VirtualClock
from relaxd.core.labels import Mood
from relaxd.core.paths import default_scenario
from relaxd.daemon.hardware import SimulatedHands
from relaxd.daemon.loop import EXIT_CAMERA_RESTART, Session
from relaxd.outputs.actuators import Actuators
from relaxd.outputs.audio import NullOutput
from relaxd.outputs.settings import ActuatorSettings
from relaxd.records.events import EventLog, MemorySink
from relaxd.safety.alerts import Alerter
from relaxd.safety.estop import EmergencyStop, ResetButton
from relaxd.safety.latch import UNCLEAN_REASON, FaultLatch, RunMarker
from relaxd.safety.settings import AlertSettings, SafetySettings
from relaxd.vision.inputs import Sensed

PINS = ActuatorSettings()


class ScriptedInput:
    """Positive mood every tick; from tick ``fail_at`` on, runs ``action`` instead."""

    scripted = exhausted = False

    def __init__(self, fail_at: int, action) -> None:
        self.ticks, self.fail_at, self.action = 0, fail_at, action

    def read(self, t: float) -> Sensed | None:
        self.ticks += 1
        if self.ticks >= self.fail_at:
            return self.action()
        return Sensed(MoodSample(Mood.POSITIVE, 0.9))

    def close(self) -> None:
        pass


def _pin_values(factory) -> list[float]:
    return [factory.pin(p).state for p in (PINS.red_pin, PINS.green_pin, PINS.blue_pin,
                                           PINS.vibration_pin)]


def _session(factory, inp, latch_path: Path | None = None, stall_timeout: float = 5.0,
             remote_reset: bool = False, marker: RunMarker | None = None,
             reset_button: bool = False):
    sink = MemorySink()
    events = EventLog([sink])
    actuators = Actuators(PINS, NullOutput(), pin_factory=factory)
    alerter = Alerter(AlertSettings(), events, pin_factory=factory)
    latch = FaultLatch(latch_path)
    clock = VirtualClock(None)
    estop = EmergencyStop(actuators, SafetySettings(), alerter=alerter, events=events,
                          now=clock.now, pin_factory=factory,
                          latch=latch)
    if reset_button:
        ResetButton(estop, now=clock.now, pin_factory=factory)
    SimulatedHands(factory, estop.settings).rest()  # the NC contact's line at its released level
    session = Session(clock=clock, input=inp, controller=Controller(load_scenario(default_scenario())),
                      actuators=actuators, estop=estop, alerter=alerter, events=events,
                      latch=latch, period=0.5, stall_timeout=stall_timeout,
                      remote_reset=remote_reset, marker=marker)
    return session, sink, estop


def _lit_then(action, fail_at: int = 200):
    """An input that lights the chair up for a while, then does ``action``."""
    return ScriptedInput(fail_at, action)


def test_exception_turns_everything_off_alerts_and_latches(mock_factory, tmp_path):
    seen: list[list[float]] = []

    def boom():
        seen.append(_pin_values(mock_factory))
        raise OSError("model file vanished")

    session, sink, estop = _session(mock_factory, _lit_then(boom), tmp_path / "latch.json")
    assert session.run() == 1
    assert max(seen[0]) > 0  # the chair was on when the fault came
    assert _pin_values(mock_factory) == [0, 0, 0, 0]
    alerts = [e for e in sink.events if e["type"] == "alert"]
    assert alerts and alerts[-1]["reason"] == "fault" and "model file vanished" in alerts[-1]["detail"]
    latch = FaultLatch(tmp_path / "latch.json")
    assert latch.causes == {"fault"} and "model file vanished" in latch.reason


def test_restart_after_fault_stays_safe_until_reset_then_idle_until_a_start(mock_factory, tmp_path):
    latch = tmp_path / "latch.json"
    FaultLatch(latch).latch("fault", "fault: earlier")
    levels: list[list[float]] = []
    hands = SimulatedHands(mock_factory, SafetySettings())

    def ask_reset_then_start():
        levels.append(_pin_values(mock_factory))
        if len(levels) == 100:
            FaultLatch(latch).request_reset()  # `relaxd reset` with safety.remote_reset: true
        if len(levels) == 200:  # the reset button pressed for a moment: the deliberate start
            hands("press", "reset")
        if len(levels) == 201:
            hands("release", "reset")
        if len(levels) > 300:
            return None
        return Sensed(MoodSample(Mood.POSITIVE, 0.9))

    session, sink, estop = _session(mock_factory, _lit_then(ask_reset_then_start, fail_at=1),
                                    latch, remote_reset=True, reset_button=True)
    assert session.run() == 0
    assert all(max(v) == 0 for v in levels[:202])  # latched, then reset: idle, nothing plays
    assert max(levels[-1]) > 0  # after the start the session played
    actions = [e["action"] for e in sink.events if e["type"] == "decision"]
    assert actions[:2] == ["reset", "start"] and "start intensity" not in actions
    starts = [e for e in sink.events if e["type"] == "decision" and e["action"] == "start"]
    assert "intensity 0.50" in starts[0]["reason"]
    assert not FaultLatch(latch).latched


def test_stalled_loop_is_cut_off_by_the_guard(mock_factory, tmp_path):
    during: list[list[float]] = []

    def stall():
        time.sleep(0.8)  # the loop hangs (a stuck camera read, say)
        during.append(_pin_values(mock_factory))
        return None

    session, sink, estop = _session(mock_factory, _lit_then(stall), tmp_path / "latch.json",
                                    stall_timeout=0.3)
    assert session.run() == 1
    assert during == [[0, 0, 0, 0]]  # already off while the loop was still stuck
    assert any(e["type"] == "alert" and e["reason"] == "stalled" for e in sink.events)
    # Latched on disk: if systemd's watchdog restarts relaxd, it waits for a caregiver.
    latch = FaultLatch(tmp_path / "latch.json")
    assert latch.causes == {"stall"} and "stalled" in latch.reason


def test_stop_request_from_signal_handler_zeroes_at_once(mock_factory):
    holder: dict = {}

    def signal_arrives():
        holder["session"].request_stop("SIGTERM")
        holder["at_signal"] = _pin_values(mock_factory)
        return Sensed(MoodSample(Mood.POSITIVE, 0.9))

    session, sink, estop = _session(mock_factory, _lit_then(signal_arrives))
    holder["session"] = session
    assert session.run() == 0
    assert holder["at_signal"] == [0, 0, 0, 0]
    assert sink.events[-1]["reason"] == "SIGTERM"


def test_estop_while_loop_blocked_then_latched(mock_factory):
    gate = threading.Event()
    pressed_levels: list[list[float]] = []

    def blocked():
        gate.wait(5)
        return None

    inp = _lit_then(blocked)
    session, sink, estop = _session(mock_factory, inp)
    runner = threading.Thread(target=session.run)
    runner.start()
    deadline = time.monotonic() + 10
    while inp.ticks < inp.fail_at and time.monotonic() < deadline:
        time.sleep(0.01)
    assert max(_pin_values(mock_factory)) > 0  # lit, and the loop is now blocked
    hands = SimulatedHands(mock_factory, estop.settings)
    hands("press", "estop")
    pressed_levels.append(_pin_values(mock_factory))
    hands("release", "estop")
    gate.set()
    runner.join(10)
    assert pressed_levels == [[0, 0, 0, 0]]
    assert estop.latched


def test_a_remote_reset_is_refused_unless_the_configuration_allows_it(mock_factory, tmp_path):
    latch = tmp_path / "latch.json"
    FaultLatch(latch).latch("estop")
    lit = []

    def ask_reset():
        lit.append(max(_pin_values(mock_factory)))
        if len(lit) == 5:
            FaultLatch(latch).request_reset()
        return None if len(lit) > 100 else Sensed(MoodSample(Mood.POSITIVE, 0.9))

    session, _, estop = _session(mock_factory, _lit_then(ask_reset, fail_at=1), latch)
    assert session.run() == 0
    assert max(lit) == 0 and estop.latched and FaultLatch(latch).latched


def test_a_clean_exit_removes_the_run_marker_and_a_fault_keeps_it(mock_factory, tmp_path):
    marker = RunMarker.in_state_dir(tmp_path)
    session, _, _ = _session(mock_factory, _lit_then(lambda: None, fail_at=20),
                             tmp_path / "latch.json", marker=marker)
    assert session.run() == 0 and not marker.present

    def boom():
        raise OSError("segfault stand-in")

    session, _, _ = _session(mock_factory, _lit_then(boom, fail_at=20), tmp_path / "latch.json",
                             marker=marker)
    assert session.run() == 1 and marker.present


def test_a_start_after_an_unclean_exit_comes_up_latched(mock_factory, tmp_path):
    marker = RunMarker.in_state_dir(tmp_path)
    marker.begin()  # the previous run was killed: its marker is still there
    lit = []

    def watch():
        lit.append(max(_pin_values(mock_factory)))
        return None if len(lit) > 100 else Sensed(MoodSample(Mood.POSITIVE, 0.9))

    session, sink, estop = _session(mock_factory, _lit_then(watch, fail_at=1),
                                    tmp_path / "latch.json", marker=marker)
    assert session.run() == 0
    assert max(lit) == 0 and estop.latched
    latch = FaultLatch.in_state_dir(tmp_path)
    assert latch.causes == {"crash"} and UNCLEAN_REASON in latch.reason
    alerts = [e for e in sink.events if e["type"] == "alert"]
    assert alerts[0]["reason"] == "fault" and "uncleanly" in alerts[0]["detail"]
    assert not marker.present  # this run ended cleanly; the latch stays until the reset button


def test_a_camera_down_too_long_exits_cleanly_for_a_restart(mock_factory, tmp_path):
    marker = RunMarker.in_state_dir(tmp_path)

    def camera_gone():
        return Sensed(MoodSample(Mood.NO_FACE, 0.0), no_input="picamera: timeout")

    session, _, _ = _session(mock_factory, _lit_then(camera_gone, fail_at=100),
                             tmp_path / "latch.json", marker=marker)
    session.camera_grace = 30.0
    assert session.run() == EXIT_CAMERA_RESTART
    assert "camera down" in session.stop_reason and _pin_values(mock_factory) == [0, 0, 0, 0]
    assert not marker.present and FaultLatch.in_state_dir(tmp_path).reason is None


def test_camera_loss_zeroes_at_once_alerts_once_and_resumes_ramping(mock_factory):
    log: list[tuple[int, list[float]]] = []
    inp = ScriptedInput(0, None)

    def tick():
        n = inp.ticks
        log.append((n, _pin_values(mock_factory)))
        if n > 260:
            return None
        if 200 <= n < 220:
            return Sensed(MoodSample(Mood.NO_FACE, 0.0), no_input=f"picamera: timeout {n}")
        return Sensed(MoodSample(Mood.NEUTRAL, 0.8))

    inp.fail_at, inp.action = 1, tick
    session, sink, _ = _session(mock_factory, inp)
    assert session.run() == 0
    pins = dict(log)
    assert max(pins[200]) > 0.05  # lit when the camera went
    assert all(max(pins[n]) == 0 for n in range(201, 221))  # off from that tick on
    assert [e["reason"] for e in sink.events if e["type"] == "alert"] == ["camera"]
    actions = [e["action"] for e in sink.events if e["type"] == "decision"]
    assert "pause" in actions and "resume" in actions
    assert 0 < max(pins[222]) < max(pins[200])  # back, ramping up from 0, no jump


def test_a_reset_request_left_from_before_the_start_is_ignored(mock_factory, tmp_path):
    latch = tmp_path / "latch.json"
    FaultLatch(latch).latch("estop")
    FaultLatch(latch).request_reset()  # `relaxd reset` while no daemon ran
    lit = []

    def watch():
        lit.append(max(_pin_values(mock_factory)))
        return None if len(lit) > 50 else Sensed(MoodSample(Mood.POSITIVE, 0.9))

    session, sink, _ = _session(mock_factory, _lit_then(watch, fail_at=1), latch,
                                remote_reset=True)
    assert session.run() == 0
    assert max(lit) == 0 and FaultLatch(latch).latched


def test_fault_is_alerted_even_when_the_latch_cannot_be_written(mock_factory, tmp_path):
    def boom():
        raise ValueError("bad frame")

    session, sink, _ = _session(mock_factory, _lit_then(boom, fail_at=5),
                                tmp_path / "missing-dir" / "latch.json")
    assert session.run() == 1
    alerts = [(e["reason"], e["detail"]) for e in sink.events if e["type"] == "alert"]
    assert [reason for reason, _ in alerts] == ["fault", "fault"]  # the fault first, then...
    assert "bad frame" in alerts[0][1] and "cannot record the stop" in alerts[1][1]
    assert _pin_values(mock_factory) == [0, 0, 0, 0]


def test_the_chair_runs_session_after_session(mock_factory):
    sc = load_scenario(default_scenario())
    rolled: list[int] = []
    state = {"ticks": 0}
    period = 0.5
    session_ticks = int((sc.duration + sc.rules.fade_out) / period) + 10

    def children():
        state["ticks"] += 1
        n = state["ticks"]
        if n > 2 * session_ticks + 400:
            return None
        first_child_leaves = session_ticks + 50
        if first_child_leaves <= n < first_child_leaves + 100:
            return Sensed(MoodSample(Mood.NO_FACE, 0.0))  # the seat is empty for a while
        return Sensed(MoodSample(Mood.NEUTRAL, 0.8))

    session, sink, _ = _session(mock_factory, ScriptedInput(1, children))
    session.repeat, session.roll_record = True, lambda *_: rolled.append(1)
    assert session.run() == 0
    starts = [e for e in sink.events if e["type"] == "decision" and e["action"] == "start"]
    ends = [e for e in sink.events if e["type"] == "decision" and e["action"] == "end"]
    assert len(starts) == 2 and len(ends) >= 1 and rolled
    # The second session's clock starts at 0 again, and it starts only once the seat was empty.
    assert starts[1]["t"] < sc.duration


def test_the_heartbeat_toggles_every_healthy_tick_and_stops_with_the_loop(mock_factory):
    from relaxd.safety.estop import Heartbeat

    pin = mock_factory.pin(24)
    heartbeat = Heartbeat(24, pin_factory=mock_factory)
    seen = []

    def tick():
        seen.append(pin.state)
        return None if len(seen) > 20 else Sensed(MoodSample(Mood.NEUTRAL, 0.8))

    session, _, _ = _session(mock_factory, _lit_then(tick, fail_at=1))
    session.heartbeat = heartbeat
    assert session.run() == 0
    assert all(a != b for a, b in zip(seen, seen[1:]))  # a new level at every tick
    heartbeat.close()
