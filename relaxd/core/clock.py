"""Clocks: real time for the chair, virtual time for replaying scripted sessions fast.

Pure logic never reads a clock; it is handed ``t`` (seconds since session start).
The daemon asks its clock for ``t`` and for the pause between ticks.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the clock started."""

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of this clock's time pass."""

    def restart(self) -> None:
        """Count from 0 again (a new session)."""

    def next_tick(self, period: float, busy: float) -> None:
        """Wait for the next tick of the loop, ``period`` after the last one began; ``busy``
        real seconds of it went to the tick's work."""


class RealClock:
    """Monotonic wall time."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def restart(self) -> None:
        self._t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._t0

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def next_tick(self, period: float, busy: float) -> None:
        self.sleep(period - busy)


class VirtualClock:
    """Time that runs ``speed`` times faster than real time; ``speed=None`` means as fast as possible."""

    def __init__(self, speed: float | None = None) -> None:
        if speed is not None and speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._t = 0.0

    def restart(self) -> None:
        self._t = 0.0

    def now(self) -> float:
        return self._t

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        if self.speed is not None:
            time.sleep(seconds / self.speed)
        self._t += seconds

    def next_tick(self, period: float, busy: float) -> None:
        """A tick lasts exactly ``period`` of virtual time, however long its work took in
        real time, so a file played at any speed gives the same events every time."""
        if self.speed is not None:
            time.sleep(max(0.0, period / self.speed - busy))
        self._t += period
