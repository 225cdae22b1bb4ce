"""A virtual child's body: breathing and restlessness that follow its true mood.

Pure and deterministic per seed. The mood's position ``x`` (-1 negative .. +1 positive, as in
:mod:`relaxd.sim.virtual_child`) sets the true breathing rate: from the calm rate at 0 up to
the upset rate at -1; above 0 (liking what plays) down towards the chair's tempo, or without
one to :data:`UNPACED_SLOWER` of the calm rate, in proportion to ``x``. Restlessness stays at
:data:`CALM_MOVEMENT` until ``x`` falls below :data:`RESTLESS_FROM` and reaches the file's
``restless`` at -1. Reported as the camera's meters report (:mod:`relaxd.vision.body`): the
breathing rate is the mean over the last :data:`WINDOW_S` seconds plus a little noise, first
reported once the child has been seen that long; pulse unknown.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from relaxd.vision.body.vitals import Vitals

#: The breathing window, as the camera's: the first report comes this long after the child
#: is first seen, and each rate is a mean over it.
WINDOW_S = 30.0
#: Restlessness of a calm child (the camera's level on the calm test clips is about this).
CALM_MOVEMENT = 0.08
#: Restlessness starts rising below this mood position.
RESTLESS_FROM = -0.4
#: A child who likes what plays, with no tempo to follow, breathes this share of their calm rate.
UNPACED_SLOWER = 0.85
#: Noise on each report: breaths a minute, restlessness (standard deviations).
RATE_NOISE, MOVEMENT_NOISE = 0.5, 0.02
#: The quality reported with a breathing rate (a clear chest, as on the test clips).
QUALITY = 0.8


class VirtualBody:
    """``update(t, x, tempo)`` each tick: the vitals the camera would report (None before its
    first window is full)."""

    def __init__(self, calm: float, upset: float, restless: float,
                 rng: np.random.Generator) -> None:
        self.calm, self.upset, self.restless, self.rng = calm, upset, restless, rng
        self._rates: deque[tuple[float, float]] = deque()
        self._first: float | None = None

    def true_rate(self, x: float, tempo: float | None) -> float:
        """Breaths a minute at mood position ``x`` under the chair's ``tempo``."""
        if x <= 0:
            return self.calm + (self.upset - self.calm) * min(1.0, -x)
        towards = tempo if tempo is not None else self.calm * UNPACED_SLOWER
        return self.calm + (towards - self.calm) * min(1.0, x)

    def true_movement(self, x: float) -> float:
        share = min(1.0, max(0.0, (RESTLESS_FROM - x) / (1 + RESTLESS_FROM)))
        return CALM_MOVEMENT + (self.restless - CALM_MOVEMENT) * share

    def update(self, t: float, x: float, tempo: float | None) -> Vitals | None:
        self._first = t if self._first is None else self._first
        self._rates.append((t, self.true_rate(x, tempo)))
        while self._rates[0][0] < t - WINDOW_S:
            self._rates.popleft()
        movement = float(np.clip(self.true_movement(x)
                                 + self.rng.normal(0, MOVEMENT_NOISE), 0, 1))
        if t - self._first < WINDOW_S:
            return None
        rate = float(np.mean([r for _, r in self._rates])) + self.rng.normal(0, RATE_NOISE)
        return Vitals(rate, None, movement, QUALITY, 0.0)
