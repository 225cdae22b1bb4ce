"""Breathing rate from the rise and fall of the chest and shoulders, told apart from the chair.

Each frame, the chest region's row profile (the mean of each row, normalised:
:mod:`relaxd.vision.body.profiles`) is matched against a reference profile of the same region to
find how far the chest moved up or down (sub-pixel); the head's profile gives the head's
movement the same way. The chest's own movement is the chest's less the head's: when the
chair's vibration shakes the child (or the camera), chest and head move together and the
difference cancels it. Normalised profiles do not move when the light brightens or dims. The
rate is the strongest frequency of that difference over the last :data:`WINDOW_S` seconds,
within 4..30 breaths a minute.

A child who breathes along breathes at the chair's tempo, so a rate is never rejected for
matching it. It is reported as unknown instead when the chair could have made it: the head
(moved by the chair) moves at that frequency with more than :data:`CHAIR_SHARE` of the chest's
own amplitude, or the chest's brightness follows the reading (|r| above :data:`LIGHT_R`) while
the driven light changes at that frequency. Also unknown: a weak peak (quality below
:data:`MIN_QUALITY`), a movement too small to be breathing, or a window not yet full.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from relaxd.vision.body.profiles import Profiles, Reference
from relaxd.vision.body.spectrum import (
    RateEstimate,
    amplitude_at,
    even_grid,
    peak_in,
    power_spectrum,
)
from relaxd.vision.faces import Box

#: Seconds of motion one estimate looks at: two breaths at the slowest rate read (4 a minute).
WINDOW_S = 30.0
#: The rates read, breaths a minute.
BAND_PER_MIN = (4.0, 30.0)
#: Resampling rate of the motion series, Hz.
GRID_HZ = 4.0
#: Share of the band's power the peak must hold to be reported.
MIN_QUALITY = 0.45
#: Smallest chest amplitude read as breathing, pixels.
MIN_AMPLITUDE = 0.1
#: The head moving at the breathing frequency with this share of the chest's amplitude: the
#: chair may be making the movement.
CHAIR_SHARE = 0.5
#: The chest's brightness correlated with its movement this strongly, while the driven light
#: changes at that frequency: the light may be making the movement.
LIGHT_R = 0.9
#: The face moving this share of its width away from where the regions were placed re-places them.
REPLACE_SHARE = 0.15




class BreathingMeter:
    """Feed :meth:`update` every frame with a face; :meth:`estimate` at any time."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, float, float, float, float]] = deque()
        self._anchor: tuple[Box, Box, Box] | None = None  # face, chest, head boxes
        self._refs: tuple[Reference, Reference] | None = None
        self._offset = 0.0  # the chest's own movement carried over a re-placing
        self._last = 0.0

    def update(self, t: float, frame: Profiles, face: Box, chest: Box | None, head: Box,
               light: float) -> float | None:
        """Take one frame at ``t``; the chest's own movement (pixels), None without a chest."""
        if chest is None:
            self.reset()
            return None
        if self._anchor is None or _moved(self._anchor[0], face):
            self._anchor = (face, chest, head)
            self._refs = (Reference(frame.rows(chest)), Reference(frame.rows(head)))
            self._offset = self._last
        _, chest, head = self._anchor
        assert self._refs is not None
        chest_dy = self._refs[0].shift(frame.rows(chest))
        head_dy = self._refs[1].shift(frame.rows(head))
        own = self._offset + chest_dy - head_dy
        luma = _mean_luma(frame.gray, chest)
        self._samples.append((t, own, head_dy, luma, light))
        while self._samples and self._samples[0][0] < t - self.window_s:
            self._samples.popleft()
        self._last = own
        return own

    def reset(self) -> None:
        """Forget the window (the child left, or the chest went out of view)."""
        self._samples.clear()
        self._anchor, self._refs, self._offset, self._last = None, None, 0.0, 0.0

    @property
    def full(self) -> bool:
        """The window holds :attr:`window_s` seconds of frames."""
        s = self._samples
        return len(s) > 2 and s[-1][0] - s[0][0] >= self.window_s * 0.95

    def estimate(self) -> RateEstimate:
        """The breathing rate over the window, or unknown with the reason."""
        if not self.full:
            return RateEstimate(None, 0.0, "window not full")
        data = np.array(self._samples, dtype=np.float64)
        series = even_grid(data[:, 0], data[:, 1:], GRID_HZ)
        freqs, own = power_spectrum(series[:, 0], GRID_HZ)
        band = (BAND_PER_MIN[0] / 60, BAND_PER_MIN[1] / 60)
        peak = peak_in(freqs, own, band, width=0.025)
        if peak is None:
            return RateEstimate(None, 0.0, "no movement")
        why = self._doubt(peak.hz, peak.amplitude, freqs, series)
        if peak.quality < MIN_QUALITY:
            why = why or "no clear rhythm"
        if peak.amplitude < MIN_AMPLITUDE:
            why = why or "movement too small"
        return RateEstimate(None if why else 60 * peak.hz, peak.quality, why)

    @staticmethod
    def _doubt(hz: float, amplitude: float, freqs: np.ndarray, series: np.ndarray) -> str:
        """Why the chair, not the child, could have made a rhythm at ``hz`` ("" if it could not)."""
        _, head = power_spectrum(series[:, 1], GRID_HZ)
        if amplitude_at(freqs, head, hz, 0.025) >= CHAIR_SHARE * amplitude:
            return "the head moves with it (the chair's vibration?)"
        _, light = power_spectrum(series[:, 3], GRID_HZ)
        light_share = amplitude_at(freqs, light, hz, 0.025) ** 2 / max(float(light.sum()), 1e-12)
        if light_share > 0.1:
            r = np.corrcoef(series[:, 0], series[:, 2])[0, 1]
            if np.isfinite(r) and abs(r) >= LIGHT_R:
                return "the chest's brightness follows it (the chair's light?)"
        return ""


def _mean_luma(gray: np.ndarray, box: Box) -> float:
    """The mean grey level of ``box``, from every fourth pixel of every fourth row."""
    sample = gray[box.y:box.y + box.h:4, box.x:box.x + box.w:4]
    return float(sample.sum(dtype=np.float64)) / sample.size


def _moved(anchor: Box, face: Box) -> bool:
    limit = REPLACE_SHARE * anchor.w
    return (abs(face.x - anchor.x) > limit or abs(face.y - anchor.y) > limit
            or abs(face.w - anchor.w) > limit)
