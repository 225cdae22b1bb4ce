"""Row and column profiles of a frame's regions, and how far one lies below another.

A region's row profile is each row's mean, smoothed over a few rows (so that a sharp edge still
gives a sub-pixel shift) and normalised (zero mean, unit spread: a profile does not move when the
light brightens or dims); its column profile the same over columns. The breathing and movement
meters both read the head's: :class:`Profiles` makes each region's once a frame.
:class:`Reference` matches later profiles of a region against one (the lag of least mean squared
difference, refined by a parabola).
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from relaxd.vision.faces import Box

#: The kernel profiles are smoothed with (a binomial, about 1.2 rows wide).
SMOOTHING = np.array([1, 6, 15, 20, 15, 6, 1], dtype=np.float32) / 64
#: Largest movement between a profile and its reference that is searched for, rows.
MAX_SHIFT = 6


def normalised(sums: np.ndarray, count: int) -> np.ndarray:
    """The profile of rows that each sum ``count`` pixels to ``sums``: their means smoothed with
    :data:`SMOOTHING`, less their mean, over their spread."""
    rows = np.convolve(sums / count, SMOOTHING, mode="valid")
    mean, spread = (float(v[0, 0]) for v in cv2.meanStdDev(rows))
    return (rows - mean) / (spread if spread > 1e-6 else 1.0)


class Profiles:
    """One frame's region profiles, each made once however many meters ask for it (a region's
    row and column sums both come from one integral image of it)."""

    def __init__(self, gray: np.ndarray) -> None:
        self.gray = gray
        self._integrals: dict[Box, np.ndarray] = {}
        self._made: dict[tuple[Box, int], np.ndarray] = {}

    def rows(self, box: Box) -> np.ndarray:
        """``box``'s row profile: each row's mean, smoothed and normalised."""
        return self._profile(box, 1)

    def columns(self, box: Box) -> np.ndarray:
        """``box``'s column profile: each column's mean, smoothed and normalised."""
        return self._profile(box, 0)

    def _profile(self, box: Box, axis: int) -> np.ndarray:
        made = self._made.get((box, axis))
        if made is None:
            whole = self._integral(box)
            running = whole[:, -1] if axis == 1 else whole[-1]  # sums up to each row (column)
            made = normalised(running[1:] - running[:-1], whole.shape[axis] - 1)
            self._made[box, axis] = made
        return made

    def _integral(self, box: Box) -> np.ndarray:
        """The integral image of ``box`` (exact integer sums: no rounding before the means)."""
        whole = self._integrals.get(box)
        if whole is None:
            crop = self.gray[box.y:box.y + box.h, box.x:box.x + box.w]
            whole = self._integrals[box] = cv2.integral(crop)
        return whole


@lru_cache(maxsize=64)
def _overlaps(n: int, max_shift: int) -> tuple[np.ndarray, np.ndarray]:
    """For profiles of ``n`` rows: row j says where a profile moved up by ``j - max_shift`` rows
    still has a row (1) or not (0); and how many rows each such shift keeps."""
    held = np.zeros(n + 2 * max_shift)
    held[max_shift:max_shift + n] = 1.0
    inside = _windows(held, n, max_shift)
    inside.flags.writeable = False
    return inside, inside.sum(axis=1)


def _windows(padded: np.ndarray, n: int, max_shift: int) -> np.ndarray:
    """Row j: ``padded`` from j on, ``n`` long, for j in 0..2 * ``max_shift`` (a view)."""
    step = padded.strides[0]
    return np.ndarray((2 * max_shift + 1, n), padded.dtype, padded, 0, (step, step))


class Reference:
    """A region's profile that later profiles of the same region are matched against."""

    def __init__(self, profile: np.ndarray, max_shift: int = MAX_SHIFT) -> None:
        n = len(profile)
        self.profile, self.max_shift = profile, max_shift
        self._padded = np.zeros(n + 2 * max_shift)
        self._shifted = _windows(self._padded, n, max_shift)
        self._inside, self._counts = _overlaps(n, max_shift)

    def shift(self, profile: np.ndarray) -> float:
        """How many rows ``profile`` lies below the reference (sub-pixel): the lag of least mean
        squared difference within ``max_shift``, refined by a parabola."""
        m = self.max_shift
        self._padded[m:m + len(profile)] = profile
        squares = np.subtract(self.profile, self._shifted)
        np.square(squares, out=squares)
        cost = (np.einsum("ji,ji->j", squares, self._inside) / self._counts).tolist()
        i = cost.index(min(cost))
        lag = float(i - m)
        if 0 < i < len(cost) - 1:
            a, b, c = cost[i - 1:i + 2]
            if a - 2 * b + c > 0:
                lag += 0.5 * (a - c) / (a - 2 * b + c)
        return lag
