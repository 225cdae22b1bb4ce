"""The breath clock: one phase-continuous tempo for light, sound and vibration."""

from __future__ import annotations

import pytest

from relaxd.control.breath import BreathClock
from relaxd.control.controller import Controller, MoodSample
from relaxd.control.scenario import Colour, Light, Phase, Scenario, Tempo
from relaxd.core.labels import Mood


def scenario(tempo=None, phase_tempos=(None, None)) -> Scenario:
    return Scenario(name="t", tempo=tempo, phases=[
        Phase(name=f"p{i}", duration=60, light=Light(colour=Colour(0, 0, 255)), tempo=pt)
        for i, pt in enumerate(phase_tempos)])


def test_a_steady_tempo_counts_breaths_and_halves_peak_at_0_5():
    clock = BreathClock(scenario(Tempo(start=6)))
    assert clock.at(0).breaths == 0 and clock.at(0).bpm == 6
    b = clock.at(5)  # half a breath at 6 a minute
    assert b.phase == pytest.approx(0.5) and b.swell == pytest.approx(1.0) and not b.inhaling
    assert clock.at(2.5).inhaling and clock.at(120).breaths == pytest.approx(12)


def test_a_slowing_tempo_is_the_integral_of_its_rate_and_never_jumps():
    clock = BreathClock(scenario(Tempo(start=12, end=6)))
    assert clock.at(60).bpm == pytest.approx(9)
    assert clock.at(120).breaths == pytest.approx(18)  # mean 9 a minute over 2 minutes
    ts = [k * 0.05 for k in range(int(130 / 0.05))]
    counts = [clock.at(t).breaths for t in ts]
    steps = [b - a for a, b in zip(counts, counts[1:])]
    assert min(steps) > 0 and max(steps) <= 12 / 60 * 0.05 + 1e-9  # continuous, monotonic
    assert clock.at(130).bpm == 6  # the fade-out keeps the last tempo


def test_a_phase_tempo_overrides_and_a_phase_without_one_has_none():
    clock = BreathClock(scenario(None, (Tempo(start=10, end=8), None)))
    assert clock.at(30).bpm == pytest.approx(9) and clock.at(70) is None
    both = BreathClock(scenario(Tempo(start=12, end=6), (None, Tempo(start=5))))
    assert both.at(30).bpm == pytest.approx(10.5)  # the scenario's, over its 2 minutes
    before, after = both.at(59.999), both.at(60.001)
    assert after.bpm == 5 and after.breaths == pytest.approx(before.breaths, abs=1e-3)


def test_the_controllers_steps_carry_the_breath_for_a_caregivers_display():
    ctrl = Controller(scenario(Tempo(start=6)))
    assert ctrl.step(0.0, MoodSample(Mood.NO_FACE, 0.0)).breath is None  # idle: no session yet
    ctrl.step(10.0, MoodSample(Mood.NEUTRAL))  # seated: the scenario's clock starts
    step = ctrl.step(15.0, MoodSample(Mood.NEUTRAL))
    assert step.breath.bpm == 6 and step.breath.phase == pytest.approx(0.5)
    assert Controller(scenario()).step(0.0, MoodSample(Mood.NEUTRAL)).breath is None
