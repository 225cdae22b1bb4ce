"""One tempo for light, sound and vibration: the breath clock of a scenario.

A scenario (or a phase) may give a ``tempo``: breaths per minute at its start and at its end,
changing linearly over the scenario (or the phase). The breath clock counts breaths as the
integral of bpm/60 over the scenario's time, so the rhythm is phase-continuous: when the tempo
slows or a phase begins, the count goes on without a jump. Pure: it takes the scenario's elapsed
time and never reads a clock. Each breath is an "in" half (phase 0..0.5, rising to its peak) and
an "out" half; light, vibration and sound all peak at phase 0.5 (see :mod:`relaxd.outputs.actuators`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from relaxd.control.scenario import Scenario


@dataclass(frozen=True)
class Breath:
    """Where the breathing rhythm is: ``breaths`` counted since the start, at ``bpm``."""

    breaths: float
    bpm: float

    @property
    def phase(self) -> float:
        """0..1 within the current breath: 0 starts breathing in, 0.5 is the peak."""
        return self.breaths % 1.0

    @property
    def inhaling(self) -> bool:
        return self.phase < 0.5

    @property
    def swell(self) -> float:
        """0 at the start of a breath, 1 at its peak (phase 0.5), 0 again at its end."""
        return 0.5 - 0.5 * math.cos(2 * math.pi * self.phase)


class _Span(NamedTuple):
    start: float  # seconds into the scenario
    duration: float
    tempo: tuple[float, float] | None  # breaths a minute at its start and end; None: no tempo
    breaths0: float  # breaths counted at its start


class BreathClock:
    """``at(elapsed)``: the scenario's breath ``elapsed`` seconds in, or None where no tempo
    applies (periods given per phase play as they are)."""

    def __init__(self, scenario: Scenario) -> None:
        self._spans: list[_Span] = []
        t, breaths = 0.0, 0.0
        for i, p in enumerate(scenario.phases):
            tempo = scenario.tempo_of(i)
            self._spans.append(_Span(t, p.duration, tempo, breaths))
            if tempo is not None:
                breaths += (tempo[0] + tempo[1]) / 2 * p.duration / 60.0
            t += p.duration

    def at(self, elapsed: float) -> Breath | None:
        elapsed = max(0.0, elapsed)
        span = next((s for s in self._spans if elapsed < s.start + s.duration), self._spans[-1])
        if span.tempo is None:
            return None
        bpm0, bpm1 = span.tempo
        inside = min(elapsed - span.start, span.duration)
        bpm = bpm0 + (bpm1 - bpm0) * inside / span.duration
        breaths = span.breaths0 + (bpm0 + bpm) / 2 * inside / 60.0
        after = elapsed - span.start - span.duration  # the fade-out keeps the last tempo
        if after > 0:
            breaths += bpm1 * after / 60.0
        return Breath(breaths, bpm)
