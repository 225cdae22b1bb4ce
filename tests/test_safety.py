"""The e-stop and the reset button on gpiozero mock pins: zero at once from the button's own
path, latch, no e-stop pattern ever resets, the deliberate reset never resumes the old intensity,
a failing output or a lost edge never leaves a stimulus on; the latency with a stalled loop."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import failing_pin

from relaxd.commands.bench import estop_latency
from relaxd.control.controller import Controller, MoodSample, State
from relaxd.control.scenario import load_scenario
from relaxd.core import yamlspec
from relaxd.core.errors import RelaxdError
from relaxd.core.labels import Mood
from relaxd.core.paths import default_scenario
from relaxd.outputs.actuators import Actuators
from relaxd.outputs.audio import NullOutput
from relaxd.outputs.settings import ActuatorSettings
from relaxd.records.events import EventLog, MemorySink
from relaxd.safety.alerts import Alerter
from relaxd.safety.estop import EmergencyStop, ResetButton
from relaxd.safety.settings import AlertSettings, SafetySettings

A = ActuatorSettings()
HOLD = 0.15
#: A normally-open sense contact, so a test's drive_low() is a press (NC is tested on its own).
SAFE = SafetySettings(estop_contact="no", hold_to_reset=HOLD)


def wait_for(cond, timeout=2.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.fixture
def chair(mock_factory):
    """Actuators playing a scenario's step, an e-stop, a controller and the event record."""
    sink = MemorySink()
    events = EventLog([sink])
    acts = Actuators(A, NullOutput(), pin_factory=mock_factory)
    stop = EmergencyStop(acts, SAFE, events=events, now=lambda: 12.5, pin_factory=mock_factory)
    ctrl = Controller(load_scenario(default_scenario()))
    ctrl.step(0.0, MoodSample(Mood.NEUTRAL))
    acts.apply(30.0, ctrl.step(30.0, MoodSample(Mood.NEUTRAL)))
    out = [mock_factory.pin(p) for p in (A.red_pin, A.green_pin, A.blue_pin, A.vibration_pin)]
    assert all(p.state > 0 for p in out)
    yield stop, acts, ctrl, out, mock_factory.pin(SAFE.estop_pin), sink
    stop.close()
    acts.close()


def test_press_zeroes_every_actuator_in_the_callback_and_latches(chair):
    stop, acts, _, out, button, sink = chair
    button.drive_low()  # the mock calls when_pressed synchronously: no main loop involved
    assert [p.state for p in out] == [0, 0, 0, 0] and acts.levels().audio == 0
    assert stop.latched
    wait_for(lambda: sink.events)
    assert sink.events[0] == {"t": 12.5, "type": "estop", "action": "press", "source": "button",
                              "cause": "estop", "stop_seq": 1}
    button.drive_high()
    assert stop.latched  # releasing does not reset


def test_press_works_while_the_main_loop_is_blocked_and_stale_steps_stay_off(chair):
    stop, acts, ctrl, out, button, _ = chair
    gate, inside = threading.Event(), threading.Event()

    class Stuck(NullOutput):
        def advance(self, t):
            inside.set()
            gate.wait(5)

    acts.audio = Stuck()
    step = ctrl.step(31.0, MoodSample(Mood.NEUTRAL))
    loop = threading.Thread(target=lambda: [acts.apply(31.0, step), acts.apply(31.1, step)])
    loop.start()
    assert inside.wait(5)  # the loop is stuck inside apply(), holding the actuators' lock
    button.drive_low()
    assert [p.state for p in out] == [0, 0, 0, 0]
    gate.set()
    loop.join()  # it wakes and applies its stale, non-zero step again
    assert [p.state for p in out] == [0, 0, 0, 0]


def test_sync_latches_the_controller_and_a_reset_leaves_it_idle_with_outputs_off(chair):
    stop, acts, ctrl, out, button, _ = chair
    for t in (31.0, 121.0, 211.0):  # positive: two raises above the start
        ctrl.step(t, MoodSample(Mood.POSITIVE))
    assert ctrl.intensity > ctrl.scenario.intensity.start
    button.drive_low()
    button.drive_high()
    (s,) = stop.sync(400.0, ctrl)
    assert s.state is State.ESTOPPED and stop.sync(401.0, ctrl) == []
    assert stop.reset() is True and stop.reset() is False
    (s,) = stop.sync(402.0, ctrl)
    assert s.state is State.IDLE and s.levels.light == 0 and ctrl.waiting_for_start
    assert [d.action for d in s.decisions] == ["reset"]
    assert acts.inhibited  # a reset is not a restart
    for t in (403.0, 500.0):
        acts.apply(t, ctrl.step(t, MoodSample(Mood.POSITIVE)))
        assert all(p.state == 0 for p in out)
    ctrl.begin()  # the deliberate start
    assert stop.enable_outputs()
    s = ctrl.step(501.0, MoodSample(Mood.NEUTRAL))
    assert s.intensity == ctrl.scenario.intensity.start
    acts.apply(501.0, s)
    acts.apply(502.0, ctrl.step(502.0, MoodSample(Mood.NEUTRAL)))
    assert 0 < out[3].state < 0.05  # ramps up from 0


def test_press_and_reset_while_the_loop_was_stalled_leave_the_chair_idle(chair):
    stop, acts, ctrl, out, button, _ = chair
    button.drive_low()
    button.drive_high()
    stop.reset()
    assert acts.inhibited  # the reset alone never switches anything on
    steps = stop.sync(31.0, ctrl)
    assert [s.state for s in steps] == [State.ESTOPPED, State.IDLE]
    assert acts.inhibited and all(p.state == 0 for p in out)


def test_reset_refused_while_the_button_is_held(chair):
    stop, _, _, _, button, _ = chair
    button.drive_low()
    assert stop.reset() is False and stop.latched


class FakeTime:
    """The session clock the buttons are timed with, moved by hand."""

    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


@pytest.fixture
def stand(mock_factory):
    """An e-stop and the chair's reset button on mock pins, with a hand-moved clock."""
    clock = FakeTime()
    acts = Actuators(A, NullOutput(), pin_factory=mock_factory)
    stop = EmergencyStop(acts, SAFE, now=clock, pin_factory=mock_factory)
    reset = ResetButton(stop, now=clock, pin_factory=mock_factory)
    ctrl = Controller(load_scenario(default_scenario()))
    ctrl.step(0.0, MoodSample(Mood.NEUTRAL))
    yield stop, acts, ctrl, mock_factory.pin(SAFE.estop_pin), mock_factory.pin(SAFE.reset_pin), clock
    reset.close()
    stop.close()
    acts.close()


def hold(pin, clock, seconds):
    pin.drive_low()
    clock.t += seconds
    pin.drive_high()


@pytest.mark.parametrize("pattern", [
    "press release", "press hold10 release", "press release press hold10 release",
    "chatter hold5 release", "press release rest2 press hold4 release rest1 press release"])
def test_no_pattern_on_the_estop_ever_clears_the_latch(stand, pattern):
    stop, acts, ctrl, estop_pin, _, clock = stand
    for move in pattern.split():
        if move == "press":
            estop_pin.drive_low()
        elif move == "release":
            estop_pin.drive_high()
        elif move == "chatter":
            for _ in range(5):
                estop_pin.drive_low()
                estop_pin.drive_high()
            estop_pin.drive_low()
        else:
            clock.t += float(move.removeprefix("hold").removeprefix("rest"))
        steps = stop.sync(clock.t, ctrl)
        assert stop.latched and ctrl.state is State.ESTOPPED and acts.inhibited
        assert all(s.state is State.ESTOPPED for s in steps)


def test_the_reset_button_resets_only_when_held_long_enough_and_its_next_press_starts(stand):
    stop, acts, ctrl, estop_pin, reset_pin, clock = stand
    hold(estop_pin, clock, 1.0)  # pressed and twisted free
    stop.sync(clock.t, ctrl)
    hold(reset_pin, clock, HOLD / 2)  # a tap does nothing
    assert stop.latched and stop.sync(clock.t, ctrl) == []
    for _ in range(4):  # chatter never adds up to a hold
        hold(reset_pin, clock, HOLD / 3)
    assert stop.latched
    reset_pin.drive_low()
    clock.t += HOLD
    assert stop.latched  # not while still held: it acts when let go
    reset_pin.drive_high()
    assert not stop.latched and acts.inhibited
    (s,) = stop.sync(clock.t, ctrl)
    assert s.state is State.IDLE and s.levels.light == 0 and acts.inhibited
    assert stop.take_start_request() is None  # the resetting press is not also a start
    hold(reset_pin, clock, 0.3)  # the reset's bounce, too soon after it: nothing
    assert stop.take_start_request() is None
    clock.t += 2.0
    hold(reset_pin, clock, 0.01)  # a glitch of the contact: nothing
    assert stop.take_start_request() is None
    hold(reset_pin, clock, 0.3)  # the next deliberate press: a start
    assert stop.take_start_request() == stop.latch.stop_seq
    assert stop.take_start_request() is None  # once


def test_the_reset_button_does_nothing_while_the_estop_is_down(stand):
    stop, _, ctrl, estop_pin, reset_pin, clock = stand
    estop_pin.drive_low()
    hold(reset_pin, clock, HOLD * 3)
    assert stop.latched
    reset_pin.drive_low()  # held while the e-stop is down...
    estop_pin.drive_high()  # ...then the e-stop is twisted free before letting go
    clock.t += HOLD * 2
    reset_pin.drive_high()
    assert stop.latched and stop.sync(clock.t, ctrl)[0].state is State.ESTOPPED


@pytest.mark.parametrize("during", ["e-stop pressed and twisted free", "a software stop"])
def test_a_stop_during_the_reset_hold_voids_it(stand, during):
    """Reset held from before a stop until after it: the newer stop is not cleared."""
    stop, _, ctrl, estop_pin, reset_pin, clock = stand
    stop.trigger("station stop by ana", cause="station-stop")
    reset_pin.drive_low()  # the hold begins while only the station's stop is latched
    clock.t += HOLD / 3
    if during == "a software stop":
        stop.trigger("main loop stalled", cause="stall")
    else:
        estop_pin.drive_low()
        clock.t += HOLD / 3
        estop_pin.drive_high()  # twisted free before the reset is let go
    clock.t += HOLD * 2
    reset_pin.drive_high()
    assert stop.latched and stop.sync(clock.t, ctrl)[0].state is State.ESTOPPED
    assert stop.take_start_request() is None


def test_a_start_press_spanning_a_stop_starts_nothing(stand):
    stop, _, ctrl, estop_pin, reset_pin, clock = stand
    reset_pin.drive_low()  # not latched: a start press...
    hold(estop_pin, clock, 0.5)  # ...during which the e-stop is pressed and twisted free
    reset_pin.drive_high()
    assert stop.take_start_request() is None and stop.latched


def test_a_press_whose_edge_was_lost_is_caught_by_the_loop(chair):
    """The second channel: the loop reads the line's level every tick."""
    stop, acts, ctrl, out, button, _ = chair
    button.edges = "none"  # the edge detection (or lgpio's callback thread) is gone
    button.drive_low()
    assert not stop.latched and any(p.state > 0 for p in out)
    (s,) = stop.sync(31.0, ctrl)
    assert stop.latched and s.state is State.ESTOPPED
    assert [p.state for p in out] == [0, 0, 0, 0] and acts.levels().audio == 0


def test_a_normally_closed_contact_reads_a_broken_wire_as_pressed(mock_factory):
    from relaxd.daemon.hardware import SimulatedHands

    nc = SafetySettings(estop_contact="nc")
    acts = Actuators(A, NullOutput(), pin_factory=mock_factory)
    stop = EmergencyStop(acts, nc, pin_factory=mock_factory)
    line = mock_factory.pin(nc.estop_pin)
    assert stop.pressed  # nothing holds the line low: as a cut wire, it reads pressed
    hands = SimulatedHands(mock_factory, nc)
    hands.rest()
    assert not stop.pressed and line.state == 0 and not stop.latched
    line.drive_high()  # the wire breaks: the pull-up wins
    assert stop.latched
    hands("release", "estop")
    hands("press", "estop")
    assert stop.pressed and line.state == 1
    stop.close()
    acts.close()


def test_a_failing_output_never_keeps_the_others_on(mock_factory):
    red = failing_pin(mock_factory, A.red_pin)
    red.failing = False
    sink = MemorySink()
    events = EventLog([sink])
    audio = NullOutput()
    acts = Actuators(A, audio, pin_factory=mock_factory)
    alerter = Alerter(AlertSettings(buzzer_pin=None, led_pin=None), events,
                      pin_factory=mock_factory)
    stop = EmergencyStop(acts, SAFE, alerter=alerter, events=events, pin_factory=mock_factory)
    ctrl = Controller(load_scenario(default_scenario()))
    ctrl.step(0.0, MoodSample(Mood.NEUTRAL))
    step = ctrl.step(30.0, MoodSample(Mood.NEUTRAL))
    others = [mock_factory.pin(p) for p in (A.green_pin, A.blue_pin, A.vibration_pin)]
    button = mock_factory.pin(SAFE.estop_pin)
    for attempt in range(2):  # and a later press still stops everything
        acts.apply(30.0, step)
        assert all(p.state > 0 for p in others) and audio.volume() > 0
        red.failing = True
        button.drive_low()  # did not raise out of the callback
        assert [p.state for p in others] == [0, 0, 0] and audio.volume() == 0
        assert stop.latched
        wait_for(lambda: any(e["type"] == "alert" and e["reason"] == "fault"
                             and "red light" in e["detail"] for e in sink.events))
        sink.events.clear()
        red.failing = False
        button.drive_high()
        assert stop.reset()
        stop.sync(31.0 + 100 * attempt, ctrl)
        ctrl.begin()  # a start after the reset
        assert stop.enable_outputs()
        for t in range(60, 90):
            step = ctrl.step(t + 100.0 * attempt, MoodSample(Mood.NEUTRAL))
    stop.close()
    alerter.close()
    acts.close()


def test_a_press_with_the_main_loop_spinning_in_python_still_stops_at_once(mock_factory):
    """The loop holds the GIL (a pure-Python busy stall inside apply, holding the actuators'
    lock) and the press comes from another thread: the stop waits for no lock, only for the
    interpreter's switch interval."""
    stats = estop_latency(n=30)
    assert stats.median_ms < 100  # typically ~1 ms under the 1 ms switch interval
    assert stats.max_ms < 1000


def test_software_trigger_stops_latches_and_calls_on_press(mock_factory):
    acts = Actuators(A, NullOutput(), pin_factory=mock_factory)
    pressed = []
    stop = EmergencyStop(acts, SAFE, pin_factory=mock_factory, on_press=pressed.append,
                         now=lambda: 1.0)
    assert not stop.latched
    stop.trigger("relaxd stop")
    assert stop.latched and acts.inhibited
    wait_for(lambda: pressed == [1.0])
    assert stop.reset() and not stop.latched
    stop.close()
    acts.close()


def test_button_pin_in_use_is_a_clear_error(mock_factory):
    acts = Actuators(A, NullOutput(), pin_factory=mock_factory)
    with pytest.raises(RelaxdError, match="cannot open the button on GPIO"):
        EmergencyStop(acts, SafetySettings(estop_pin=A.red_pin), pin_factory=mock_factory)
    acts.close()


def test_safety_settings_from_yaml(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("estop_pin: 6\nestop_contact: nc\nhold_to_reset: 1\nbounce_time: 0.1\n")
    with pytest.raises(yamlspec.SpecError) as err:
        yamlspec.load(SafetySettings, p)
    text = str(err.value)
    assert "'hold_to_reset' is 1" in text and "'bounce_time' is 0.1" in text
    p.write_text("estop_contact: closed\n")
    with pytest.raises(yamlspec.SpecError, match="expected one of nc, no"):
        yamlspec.load(SafetySettings, p)
    p.write_text("reset_pin: 12\nremote_reset: true\nheartbeat_pin: 24\n")
    s = yamlspec.load(SafetySettings, p)
    assert (s.reset_pin, s.remote_reset, s.heartbeat_pin) == (12, True, 24)


def test_a_failing_hook_or_driver_never_loses_the_latch_or_the_next_record(chair, monkeypatch):
    stop, acts, _, _, button, sink = chair
    calls = []

    def broken_hook(t):
        calls.append(t)
        raise OSError("disk full")

    stop.on_press = broken_hook
    stop.trigger("first")
    wait_for(lambda: calls)
    assert stop.reset()
    monkeypatch.setattr(acts, "off", lambda: (_ for _ in ()).throw(RuntimeError("driver")))
    button.drive_low()  # the callback never raises into gpiozero's thread
    assert stop.latched  # latched although the software path failed
    wait_for(lambda: len(calls) == 2)  # the worker lived on
    assert [e["source"] for e in sink.events if e["action"] == "press"] == ["first", "button"]
