"""The child's baseline: their resting face judged against itself, with a bounded correction.

Some faces read sad or angry at rest. A :class:`Baseline` estimates how much more negative this
child's calm face reads than a typical neutral face (:data:`REFERENCE_NEGATIVE`) and subtracts
that from each frame's p(negative), sharing it between neutral and positive in their proportion
(so a happy face that reads a little sad still reads happy). The estimate is the 25th percentile
of 10-second means of p(negative) (an upset spell raises the upper means, not the low quantile),
from earlier sessions (``learned``) and, from a minute into a session, from this session too
(a first session needs no history). Safety, as for every correction
(:func:`relaxd.vision.calibration.bounded_negative`): at most :data:`MAX_NEGATIVE_SHIFT`, and a frame
that reads strongly negative keeps its p(negative) whole.

A face that reads sad all session may be a sad resting face or a child who is upset all session,
and the frames alone cannot tell them apart. So the correction grows slowly and only on
evidence of calm: within a session it rises at most :data:`STEP` above what earlier sessions
taught (it may always fall), and a session teaches a larger one, again by at most :data:`STEP`,
only when it was calm (no e-stop, no halt and no caregiver's "upset"). A child upset through a
whole session is therefore still read negative (the chair reduces and halts), and that session
teaches nothing. The caregiver beside the chair can tell the two apart: once they mark a reading
"misread" at the station (a calm child read upset; :meth:`Baseline.confirm_calm`), this
session's own estimate applies in full from its first 10 s window, and the session teaches it in
full (unless an e-stop), always within the bound.
"""

from __future__ import annotations

import numpy as np

from relaxd.vision.calibration import MAX_NEGATIVE_SHIFT, NEG, NEU, POS, bounded_negative

#: p(negative) of a typical calm, neutral face after calibration.
REFERENCE_NEGATIVE = 0.2
WINDOW_S = 10.0
QUANTILE = 25
#: Seconds into a session before its own frames count (a first session's estimate).
WARMUP_S = 60.0
#: The most the correction grows within a session, and from one calm session to the next.
STEP = 0.1


class Baseline:
    """``correct(t, probs3)`` each frame; ``learned`` is the correction before this session."""

    def __init__(self, learned: float = 0.0, max_shift: float = MAX_NEGATIVE_SHIFT) -> None:
        self.learned = float(min(max(learned, 0.0), max_shift))
        self.max_shift = max_shift
        self._windows: list[float] = []
        self._sum, self._n = 0.0, 0
        self._start: float | None = None  # the current window's start (None: nothing seen yet)
        self.confirmed = False  # the caregiver saw this calm face read upset, this session

    def observe(self, t: float, p_negative: float) -> None:
        if self._start is None:
            self._start = t
        if t - self._start >= WINDOW_S:
            self._windows.append(self._sum / max(self._n, 1))
            self._sum, self._n, self._start = 0.0, 0, t
        self._sum, self._n = self._sum + p_negative, self._n + 1

    def confirm_calm(self) -> None:
        """The caregiver marked a reading "misread" (a calm child read upset): from now on this
        session's own estimate applies in full (still bounded), from its first window."""
        self.confirmed = True

    @property
    def session_estimate(self) -> float | None:
        """This session's own correction, once it has a minute of windows (one window once the
        caregiver confirmed a misread)."""
        if len(self._windows) * WINDOW_S < (WINDOW_S if self.confirmed else WARMUP_S):
            return None
        low = float(np.percentile(self._windows, QUANTILE))
        return float(min(max(low - REFERENCE_NEGATIVE, 0.0), self.max_shift))

    @property
    def shift(self) -> float:
        """The correction now: the learned one, moved towards this session's (up by at most
        :data:`STEP`)."""
        own = self.session_estimate
        return self.learned if own is None else self._grown(own)

    def _grown(self, own: float) -> float:
        """``own``, up to one :data:`STEP` above the learned correction unless the caregiver
        confirmed a misread."""
        return own if self.confirmed else min(own, self.learned + STEP)

    def correct(self, t: float, probs3: np.ndarray) -> np.ndarray:
        raw = np.asarray(probs3, dtype=np.float64)
        raw = raw / raw.sum()
        self.observe(t, float(raw[NEG]))
        shift = self.shift
        if shift <= 0:
            return raw
        out = raw.copy()
        moved = min(shift, raw[NEG])
        out[NEG] -= moved
        rest = raw[NEU] + raw[POS]
        # Shared in proportion: a happy face that reads a little sad stays happy.
        share = raw[[NEU, POS]] / rest if rest > 0 else np.array([1.0, 0.0])
        out[[NEU, POS]] += moved * share
        return bounded_negative(raw, out, max_shift=self.max_shift)

    def updated(self, calm: bool) -> float:
        """The correction to remember after this session: towards its own estimate, up only
        after a ``calm`` one (``SessionScore.calm_evidence``), by at most :data:`STEP` unless
        the caregiver confirmed a misread in it."""
        own = self.session_estimate
        if own is None:
            return self.learned
        if own <= self.learned or not calm:
            return min(own, self.learned)
        return self._grown(own)
