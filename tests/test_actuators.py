"""Actuators on gpiozero's mock PWM pins: start at 0, follow Steps, off() latches, close() to 0."""

from __future__ import annotations

import threading

import pytest

from relaxd.control.controller import Levels, State, Step, Stimulus
from relaxd.control.scenario import Audio, Generator, Pattern
from relaxd.core import yamlspec
from relaxd.core.errors import RelaxdError
from relaxd.outputs.actuators import Actuators, pattern_level, pulse_level
from relaxd.outputs.audio import NullOutput
from relaxd.outputs.settings import ActuatorSettings, MaxRamp

#: Ramps free enough that one apply() shows the mapping; the installation's slew limit (the
#: defaults) has tests of its own below.
S = ActuatorSettings(max_ramp=MaxRamp(light=100, audio=100, vibration=100))
CAPPED = ActuatorSettings()


def step(light=0.5, audio=0.5, vibration=0.5, colour=(255, 128, 0), pulse=None,
         pattern=Pattern.CONTINUOUS, period=4.0) -> Step:
    stim = Stimulus(colour, pulse, Audio(generator=Generator.PINK), pattern, period)
    lv = Levels(light, audio, vibration)
    return Step(0.0, State.RUNNING, 0, "p", 0.5, stim, lv, lv)


def pins(factory, settings=S):
    return [factory.pin(p) for p in (settings.red_pin, settings.green_pin, settings.blue_pin,
                                     settings.vibration_pin)]


def states(factory, settings=S):
    return [p.state for p in pins(factory, settings)]


def test_everything_starts_at_zero(mock_factory):
    acts = Actuators(S, NullOutput(), pin_factory=mock_factory)
    assert states(mock_factory) == [0, 0, 0, 0]
    assert acts.levels() == Levels()
    acts.close()


def test_apply_sets_colour_with_gamma_vibration_and_capped_volume(mock_factory):
    audio = NullOutput()
    acts = Actuators(S, audio, pin_factory=mock_factory)
    acts.apply(1.0, step(light=0.5, audio=0.5, vibration=0.4))
    duty = 0.5 ** S.light_gamma
    assert states(mock_factory) == pytest.approx([duty, duty * 128 / 255, 0, 0.4])
    assert audio.volume() == pytest.approx(0.5 * S.volume_cap)
    assert acts.levels() == pytest.approx(Levels(0.5, 0.5, 0.4))
    assert [p.frequency for p in pins(mock_factory)] == [S.light_frequency] * 3 + \
        [S.vibration_frequency]
    acts.close()


def test_off_zeroes_at_once_and_latches_until_enable(mock_factory):
    acts = Actuators(S, NullOutput(), pin_factory=mock_factory)
    acts.apply(1.0, step())
    acts.off()
    acts.off()  # idempotent
    assert states(mock_factory) == [0, 0, 0, 0] and acts.levels() == Levels()
    assert acts.inhibited
    acts.apply(2.0, step())  # a stale step from a loop that was stalled: stays off
    assert states(mock_factory) == [0, 0, 0, 0]
    acts.enable()
    acts.apply(3.0, step())
    assert states(mock_factory)[3] == pytest.approx(0.5)
    acts.close()


def test_close_returns_to_zero_releases_pins_and_is_idempotent(mock_factory):
    acts = Actuators(S, NullOutput(), pin_factory=mock_factory)
    acts.apply(1.0, step())
    acts.close()
    acts.close()
    acts.off()
    assert states(mock_factory) == [0, 0, 0, 0] and acts.levels() == Levels()
    again = Actuators(S, NullOutput(), pin_factory=mock_factory)  # pins were released
    again.close()


def test_off_from_another_thread_while_apply_is_stuck(mock_factory):
    gate, inside = threading.Event(), threading.Event()

    class Stuck(NullOutput):
        def advance(self, t):
            inside.set()
            gate.wait(5)

    acts = Actuators(S, Stuck(), pin_factory=mock_factory)
    loop = threading.Thread(target=acts.apply, args=(1.0, step()))
    loop.start()
    assert inside.wait(5) and states(mock_factory)[3] > 0
    acts.off()  # must not wait for the stuck loop's lock
    assert states(mock_factory) == [0, 0, 0, 0]
    gate.set()
    loop.join()
    assert states(mock_factory) == [0, 0, 0, 0]
    acts.close()


def test_active_low_drivers_are_off_when_high(mock_factory):
    low = ActuatorSettings(active_high=False)
    acts = Actuators(low, NullOutput(), pin_factory=mock_factory)
    assert states(mock_factory, low) == [1, 1, 1, 1]
    acts.apply(1.0, step(vibration=1.0))
    assert states(mock_factory, low)[3] == 0
    acts.close()
    assert states(mock_factory, low) == [0, 0, 0, 0]  # released: the driver's pull keeps it off


def test_pins_in_use_give_a_clear_error(mock_factory):
    first = Actuators(S, NullOutput(), pin_factory=mock_factory)
    with pytest.raises(RelaxdError, match="cannot open the actuators' GPIO pins"):
        Actuators(S, NullOutput(), pin_factory=mock_factory)
    first.close()


def test_patterns_start_at_one_and_stay_within_zero_and_one():
    for p in Pattern:
        assert pattern_level(p, 4.0, 0.0) == 1.0
        assert all(0.0 <= pattern_level(p, 4.0, k / 10) <= 1.0 for k in range(100))
    assert pattern_level(Pattern.WAVE, 4.0, 2.0) == pytest.approx(0.0)
    assert pattern_level(Pattern.PULSE, 4.0, 2.0) == 0.0
    on = sum(pattern_level(Pattern.PULSE, 4.0, k / 100) > 0.5 for k in range(400))
    assert on == pytest.approx(200, abs=4)  # on for half the period
    assert pulse_level(None, 3.0) == 1.0
    assert pulse_level(10.0, 0.0) == 1.0 and pulse_level(10.0, 5.0) == pytest.approx(0.6)


def test_pattern_changes_blend_instead_of_jumping(mock_factory):
    acts = Actuators(S, NullOutput(), pin_factory=mock_factory)
    motor = pins(mock_factory)[3]
    acts.apply(0.0, step(vibration=1.0, pattern=Pattern.WAVE, period=4.0))
    acts.apply(2.0, step(vibration=1.0, pattern=Pattern.WAVE, period=4.0))
    assert motor.state == pytest.approx(0.0)  # wave trough
    acts.apply(2.1, step(vibration=1.0, pattern=Pattern.CONTINUOUS))
    assert motor.state == pytest.approx(pattern_level(Pattern.WAVE, 4.0, 2.1))  # no jump
    acts.apply(3.1, step(vibration=1.0, pattern=Pattern.CONTINUOUS))
    assert motor.state == pytest.approx(0.5 + 0.5 * pattern_level(Pattern.WAVE, 4.0, 3.1))
    acts.apply(4.1, step(vibration=1.0, pattern=Pattern.CONTINUOUS))
    assert motor.state == 1.0
    acts.close()


def test_settings_from_yaml_with_limits(tmp_path):
    p = tmp_path / "a.yaml"
    p.write_text("red_pin: 17\ngreen_pin: 17\nvolume_cap: 2\nlight_frequency: 50\n")
    with pytest.raises(yamlspec.SpecError) as err:
        yamlspec.load(ActuatorSettings, p)
    text = str(err.value)
    assert "'volume_cap' is 2" in text and "'light_frequency' is 50" in text
    p.write_text("")
    assert yamlspec.load(ActuatorSettings, p) == ActuatorSettings()


def ticks(acts, mock_factory, steps, dt=0.1, t0=0.0):
    """Apply each step a tick apart; the (light level, motor duty, volume/cap) driven after each."""
    out = []
    for k, st in enumerate(steps):
        acts.apply(t0 + k * dt, st)
        out.append(acts.levels())
    return out


def test_every_output_is_slew_limited_to_max_ramp_pulse_included(mock_factory):
    acts = Actuators(CAPPED, NullOutput(), pin_factory=mock_factory)
    full = step(light=0.8, audio=0.8, vibration=0.8, pulse=2.0, pattern=Pattern.PULSE, period=1.0)
    driven = ticks(acts, mock_factory, [step(0, 0, 0)] + [full] * 100)
    r = CAPPED.max_ramp
    for a, b in zip(driven, driven[1:]):
        assert abs(b.light - a.light) <= r.light * 0.1 + 1e-9
        assert abs(b.audio - a.audio) <= r.audio * 0.1 + 1e-9
        assert abs(b.vibration - a.vibration) <= r.vibration * 0.1 + 1e-9
    assert driven[1].vibration == pytest.approx(r.vibration * 0.1)  # not 0.8 at once
    assert max(d.vibration for d in driven[-20:]) > 0.5  # the pulse still pulses
    assert min(d.vibration for d in driven[-20:]) < 0.2
    assert all(d.light <= 0.8 and d.vibration <= 0.8 for d in driven)
    acts.close()


def test_outputs_follow_a_fast_halt_down_and_off_is_instant(mock_factory):
    acts = Actuators(CAPPED, NullOutput(), pin_factory=mock_factory)
    ticks(acts, mock_factory, [step(0, 0, 0)] + [step(light=0.6, audio=0.6, vibration=0.6)] * 100)
    assert acts.levels() == pytest.approx(Levels(0.6, 0.6, 0.6))
    acts.apply(10.1, step(light=0.3, audio=0.3, vibration=0.3))  # a halt's envelope, 3/s down
    assert acts.levels() == pytest.approx(Levels(0.3, 0.3, 0.3))  # never above the envelope
    acts.off()
    assert states(mock_factory) == [0, 0, 0, 0] and acts.levels() == Levels()
    acts.enable()
    acts.apply(10.2, step(light=0.3, audio=0.3, vibration=0.3))
    # up from 0 again: the first apply after enable() moves one second's worth at most
    assert acts.levels() == pytest.approx(Levels(0.2, 0.1, 0.3))
    acts.close()


def test_installation_caps_from_yaml(tmp_path):
    p = tmp_path / "a.yaml"
    p.write_text("max_level: {light: 0.5, vibration: 1.2}\nmax_ramp: {audio: 0}\n")
    with pytest.raises(yamlspec.SpecError) as err:
        yamlspec.load(ActuatorSettings, p)
    assert "'vibration' is 1.2" in str(err.value) and "'audio' is 0" in str(err.value)
    p.write_text("max_level: {light: 0.5}\nmax_ramp: {audio: 0.02}\n")
    caps = yamlspec.load(ActuatorSettings, p).caps()
    assert caps.level == Levels(0.5, 0.8, 0.8)
    assert caps.ramp == Levels(0.2, 0.02, 1.5)
