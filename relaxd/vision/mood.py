"""The child's mood over time: smoothed, with hysteresis, and NO_FACE when the face is gone.

Pure logic: every call is handed ``t`` (seconds) and never reads a clock.

Smoothing is an exponential moving average in continuous time: a sample arriving ``dt`` seconds
after the previous one moves the average by ``1 - exp(-dt / window_s)`` of the way towards it,
so a steady input weighs the same whatever the frame rate, however irregular (``dt`` is capped at
``max_gap_s`` so one frame after a gap cannot stand for the whole gap).

The reported mood changes from ``m`` to the smoothed favourite ``c`` only when
``p[c] >= enter_threshold`` and ``p[c] - p[m] >= switch_margin`` and ``m`` has been reported
for at least ``min_dwell_s``. Until the first face, the mood is NEUTRAL with confidence 0. With
no face, the last mood is kept (its confidence fading linearly) until ``no_face_timeout_s`` has
passed since the last face; strictly after that the mood is NO_FACE and the average restarts:
the next face's favourite is taken at once. A face seen but unfit for reading (:meth:`present`:
turned away, or only followed) counts as a face for the timeout and holds the mood as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from relaxd.core.labels import MOODS, Mood
from relaxd.vision.settings import MoodSettings


@dataclass(frozen=True)
class MoodReading:
    """The mood at one instant.

    ``confidence``: the smoothed probability of ``mood`` (0..1), fading while the face is missing,
    0 for NO_FACE and before the first face. ``probs``: the smoothed (negative, neutral, positive)
    probabilities, None when none are known. ``face``: a face was seen in this update.
    ``changed``: ``mood`` differs from the previous reading's. ``since``: when ``mood`` began.
    ``sampled``: this update read a face fit for the mood (a frontal one); a strong negative
    halts only once such frames have kept it strong for a while (the controller's rule).
    """

    mood: Mood
    confidence: float
    probs: tuple[float, float, float] | None
    face: bool
    changed: bool
    since: float
    sampled: bool = False


class MoodSmoother:
    """Turns per-frame mood probabilities (order ``labels.MOODS``) into a steady mood."""

    def __init__(self, settings: MoodSettings | None = None) -> None:
        self.settings = settings or MoodSettings()
        problems = [message for _, message in self.settings.check()]
        if problems:
            raise ValueError("; ".join(problems))
        self._p: np.ndarray | None = None   # smoothed probabilities, None = restart
        self._t_sample = 0.0                # time of the last face sample
        self._t_face: float | None = None   # time of the last face (or of the first update)
        self._mood = Mood.NEUTRAL
        self._since = 0.0
        self._confidence = 0.0

    def update(self, t: float, probs3: np.ndarray | None) -> MoodReading:
        """Take this frame's 3 mood probabilities (None: no face in this frame) at time ``t``."""
        s = self.settings
        if self._t_face is None:
            self._t_face = self._since = t
        before = self._mood
        if probs3 is None:
            gap = t - self._t_face
            if gap > s.no_face_timeout_s:
                self._p = None
                self._set(Mood.NO_FACE, t)
                confidence = self._confidence = 0.0
            else:
                confidence = self._confidence * (1 - max(gap, 0.0) / s.no_face_timeout_s)
            return self._reading(confidence, False, before)

        x = np.asarray(probs3, dtype=np.float64)
        if x.shape != (len(MOODS),) or not np.all(np.isfinite(x)) or np.any(x < 0) or x.sum() <= 0:
            raise ValueError(f"probs3 must be {len(MOODS)} non-negative numbers, got {probs3!r}")
        x = x / x.sum()
        if self._p is None:
            self._p = x
            self._set(MOODS[int(np.argmax(x))], t)
        else:
            dt = min(max(t - self._t_sample, 0.0), s.max_gap_s)
            self._p = self._p + (1 - math.exp(-dt / s.window_s)) * (x - self._p)
            best = int(np.argmax(self._p))
            cur = MOODS.index(self._mood)
            if (best != cur and self._p[best] >= s.enter_threshold
                    and self._p[best] - self._p[cur] >= s.switch_margin
                    and t - self._since >= s.min_dwell_s):
                self._set(MOODS[best], t)
        self._t_sample = self._t_face = t
        self._confidence = float(self._p[MOODS.index(self._mood)])
        return self._reading(self._confidence, True, before, sampled=True)

    def present(self, t: float) -> MoodReading:
        """A face is seen at time ``t`` but gives no mood sample (turned away, or only followed):
        the child is present, so the no-face timeout restarts, and the mood is held as it is
        (NEUTRAL with confidence 0 if it was NO_FACE, as before a first face)."""
        if self._t_face is None:
            self._since = t
        self._t_face = t
        before = self._mood
        if self._mood is Mood.NO_FACE:
            self._set(Mood.NEUTRAL, t)
        return self._reading(self._confidence, True, before)

    def _set(self, mood: Mood, t: float) -> None:
        if mood != self._mood:
            self._mood, self._since = mood, t

    def _reading(self, confidence: float, face: bool, before: Mood,
                 sampled: bool = False) -> MoodReading:
        p = self._p
        probs = None if p is None else (float(p[0]), float(p[1]), float(p[2]))  # order MOODS
        return MoodReading(self._mood, confidence, probs, face, self._mood != before, self._since,
                           sampled)
