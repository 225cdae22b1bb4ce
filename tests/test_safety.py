"""The e-stop on gpiozero mock pins: zero at once from the button's own path, latch, deliberate
reset that never resumes the old intensity; the fault monitor; the latency benchmark."""

from __future__ import annotations

import threading
import time

import pytest

from relaxd import yamlspec
from relaxd.actuators import ActuatorSettings, Actuators
from relaxd.audio import NullOutput
from relaxd.controller import Controller, MoodSample, State
from relaxd.errors import RelaxdError
from relaxd.events import EventLog, MemorySink
from relaxd.labels import Mood
from relaxd.paths import default_scenario
from relaxd.safety import EmergencyStop, SafetySettings, estop_latency
from relaxd.scenario import load_scenario

A = ActuatorSettings()
HOLD = 0.15
REARM = 0.05
SAFE = SafetySettings(hold_to_reset=HOLD, rearm_after=REARM, buzzer_pin=None, alert_led_pin=None)


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
    assert sink.events[0] == {"t": 12.5, "type": "estop", "action": "press", "source": "button"}
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


def test_sync_latches_the_controller_and_reset_restarts_at_start_intensity(chair):
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
    assert s.intensity == ctrl.scenario.intensity.start and s.levels.light == 0
    assert [d.action for d in s.decisions] == ["restart"]
    assert not acts.inhibited
    acts.apply(402.0, s)
    assert all(p.state == 0 for p in out)  # ramps up from 0
    acts.apply(403.0, ctrl.step(403.0, MoodSample(Mood.NEUTRAL)))
    assert 0 < out[3].state < 0.05


def test_press_and_reset_while_the_loop_was_stalled_still_restart_from_start(chair):
    stop, acts, ctrl, out, button, _ = chair
    button.drive_low()
    button.drive_high()
    stop.reset()
    assert acts.inhibited  # the reset alone never switches anything on
    steps = stop.sync(31.0, ctrl)
    assert [s.state for s in steps] == [State.ESTOPPED, State.RUNNING]
    assert steps[1].intensity == ctrl.scenario.intensity.start and not acts.inhibited


def test_reset_refused_while_the_button_is_held(chair):
    stop, _, _, _, button, _ = chair
    button.drive_low()
    assert stop.reset() is False and stop.latched


def test_hold_to_reset_needs_a_new_press(chair):
    stop, acts, ctrl, out, button, sink = chair
    button.drive_low()
    time.sleep(HOLD * 2.5)  # a long panic press is held past hold_time...
    button.drive_high()
    assert stop.latched  # ...and does not reset
    time.sleep(REARM * 2)
    button.drive_low()
    button.drive_high()  # a short new press does not either
    assert stop.latched
    time.sleep(REARM * 2)
    button.drive_low()
    time.sleep(HOLD * 2.5)
    assert stop.latched  # not while still held
    button.drive_high()
    assert not stop.latched
    assert all(p.state == 0 for p in out) and acts.inhibited  # until the loop syncs
    wait_for(lambda: len(sink.events) == 2)
    assert sink.events[1]["action"] == "reset" and "held" in sink.events[1]["source"]


def test_contact_chatter_then_a_long_press_never_resets(chair):
    stop, _, _, _, button, _ = chair
    button.drive_low()
    button.drive_high()  # the contact bounces...
    button.drive_low()  # ...and closes again at once, then the mushroom stays down
    time.sleep(HOLD * 2.5)
    button.drive_high()  # twisted out
    assert stop.latched


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
    with pytest.raises(RelaxdError, match="cannot open the e-stop button on GPIO"):
        EmergencyStop(acts, SafetySettings(estop_pin=A.red_pin), pin_factory=mock_factory)
    acts.close()


def test_latency_benchmark_with_a_stalled_main_loop():
    stats = estop_latency(n=20)
    assert stats.n == 20 and 0 < stats.median_ms <= stats.p95_ms <= stats.max_ms
    assert "median" in str(stats)


def test_safety_settings_from_yaml(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("estop_pin: 6\nbuzzer_pin: 6\nhold_to_reset: 1\nbounce_time: 0.1\n")
    with pytest.raises(yamlspec.SpecError) as err:
        yamlspec.load(SafetySettings, p)
    text = str(err.value)
    assert "'hold_to_reset' is 1" in text and "'bounce_time' is 0.1" in text
    p.write_text("estop_pin: 6\nbuzzer_pin: 6\n")
    with pytest.raises(yamlspec.SpecError, match="must differ"):
        yamlspec.load(SafetySettings, p)
    p.write_text("buzzer_pin: null\nalert_command: [/usr/bin/notify, --urgent]\n")
    s = yamlspec.load(SafetySettings, p)
    assert s.buzzer_pin is None and s.alert_command == ["/usr/bin/notify", "--urgent"]


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
    with pytest.raises(RuntimeError):
        button.drive_low()
    assert stop.latched  # latched although the software path failed
    wait_for(lambda: len(calls) == 2)  # the worker lived on
    assert [e["source"] for e in sink.events if e["action"] == "press"] == ["first", "button"]
