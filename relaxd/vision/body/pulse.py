"""Pulse rate from the skin of the face by remote photoplethysmography: the POS method (Wang,
den Brinker, Stuijk and de Haan, "Algorithmic principles of remote PPG", IEEE TBME 64(7), 2017).

Blood volume changes the skin's colour very slightly with each beat. Each frame gives the skin
region's mean colour. Over the window, the three colour series are first corrected for the
chair's own light: each is divided by its mean and the part that follows the driven light's
red, green and blue (level times colour, the values the outputs were driven at) is fitted and
taken away. POS then projects the colour onto the plane orthogonal to the skin tone in short
windows (1.6 s) and adds them up; the pulse is the strongest frequency of the result within
42..180 beats a minute. Every estimate is gated on its quality: the share of the band's power
at the peak and its second harmonic; below :data:`MIN_QUALITY` it is unknown. A photograph has
no pulse, so its spectrum is flat and it reads unknown.

A pulse estimate is a trend shown with its quality: never an alarm on its own.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from relaxd.vision.body.spectrum import RateEstimate, even_grid, peak_in, power_spectrum

#: Seconds of colour one estimate looks at.
WINDOW_S = 12.0
#: The rates read, beats a minute.
BAND_PER_MIN = (42.0, 180.0)
#: Resampling rate of the colour series, Hz (the camera gives 10..15 frames a second).
GRID_HZ = 10.0
#: POS's short window, seconds (about one beat at the slowest rate read).
POS_WINDOW_S = 1.6
#: Share of the band's power at the peak and its harmonic needed for a pulse to be reported.
MIN_QUALITY = 0.4




def without_light(rgb: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Normalised colour series (each divided by its mean) less their least-squares fit on the
    driven light's red, green and blue and a constant."""
    normalised = rgb / np.maximum(rgb.mean(axis=0), 1e-6)
    design = np.column_stack([np.ones(len(light)), light - light.mean(axis=0)])
    fit, *_ = np.linalg.lstsq(design, normalised, rcond=None)
    return np.asarray(normalised - design[:, 1:] @ fit[1:])


def pos(rgb: np.ndarray, rate: float) -> np.ndarray:
    """The POS pulse signal of ``rgb`` (rows of red, green, blue) sampled at ``rate`` Hz: every
    short window at once, then added up in order of their start."""
    n = len(rgb)
    length = max(2, int(round(POS_WINDOW_S * rate)))
    out = np.zeros(n)
    if n < length:
        return out
    blocks = np.lib.stride_tricks.sliding_window_view(rgb, length, axis=0)  # (start, colour, k)
    c = blocks / np.maximum(blocks.mean(axis=2, keepdims=True), 1e-6)
    s1 = c[:, 1] - c[:, 2]
    s2 = c[:, 1] + c[:, 2] - 2 * c[:, 0]
    spread = s2.std(axis=1, keepdims=True)
    alpha = np.divide(s1.std(axis=1, keepdims=True), spread, out=np.zeros_like(spread),
                      where=spread > 1e-12)
    h = s1 + alpha * s2
    h -= h.mean(axis=1, keepdims=True)
    starts = len(h)
    for k in range(length - 1, -1, -1):  # out[i] gathers its windows, earliest start first
        out[k:k + starts] += h[:, k]
    return out


class PulseMeter:
    """Feed :meth:`update` every frame with a face; :meth:`estimate` at any time."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, ...]] = deque()

    def update(self, t: float, skin_rgb: tuple[float, float, float],
               light_rgb: tuple[float, float, float]) -> None:
        """The skin region's mean colour (red, green, blue) at ``t`` and the chair's light as
        driven then (each 0..1: level times colour)."""
        self._samples.append((t, *skin_rgb, *light_rgb))
        while self._samples and self._samples[0][0] < t - self.window_s:
            self._samples.popleft()

    def reset(self) -> None:
        self._samples.clear()

    @property
    def full(self) -> bool:
        s = self._samples
        return len(s) > 2 and s[-1][0] - s[0][0] >= self.window_s * 0.95

    def estimate(self) -> RateEstimate:
        if not self.full:
            return RateEstimate(None, 0.0)
        data = np.array(self._samples, dtype=np.float64)
        series = even_grid(data[:, 0], data[:, 1:], GRID_HZ)
        signal = pos(without_light(series[:, :3], series[:, 3:]), GRID_HZ)
        freqs, power = power_spectrum(signal, GRID_HZ)
        band = (BAND_PER_MIN[0] / 60, min(BAND_PER_MIN[1] / 60, GRID_HZ / 2))
        peak = peak_in(freqs, power, band, width=0.1, harmonic=True)
        if peak is None or peak.quality < MIN_QUALITY:
            return RateEstimate(None, 0.0 if peak is None else peak.quality)
        return RateEstimate(60 * peak.hz, peak.quality)
