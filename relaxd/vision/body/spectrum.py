"""The one spectral peak finder the body meters share: a signal sampled at irregular frame
times, resampled onto an even grid, and its strongest frequency within a band, with a quality.

Pure numpy; times are the frames' own (seconds), never a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Zero-padded FFT length: fine enough steps for a sub-bin peak on short windows.
FFT_LENGTH = 2048


@dataclass(frozen=True)
class RateEstimate:
    """A rate a minute (None: unknown), the estimate's quality 0..1 and, when unknown, why."""

    rate: float | None
    quality: float
    why: str = ""


@dataclass(frozen=True)
class Peak:
    """The strongest frequency in a band (Hz), its amplitude and the share of the band's power
    within ``width`` Hz of it (and of its second harmonic, where asked), 0..1."""

    hz: float
    amplitude: float
    quality: float


def even_grid(t: np.ndarray, values: np.ndarray, rate: float) -> np.ndarray:
    """``values`` (one row a frame time ``t``, or a 1-D series) linearly resampled at ``rate`` Hz
    from the first time to the last."""
    grid = np.arange(t[0], t[-1], 1.0 / rate)
    if values.ndim == 1:
        return np.interp(grid, t, values)
    return np.stack([np.interp(grid, t, column) for column in values.T], axis=1)


def detrend(x: np.ndarray) -> np.ndarray:
    """``x`` less its straight-line fit."""
    n = np.arange(len(x), dtype=np.float64)
    slope, offset = np.polyfit(n, x, 1)
    return np.asarray(x - (slope * n + offset))


def power_spectrum(x: np.ndarray, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies in Hz, power) of a Hann-windowed, zero-padded, detrended ``x``, scaled so
    that a sinusoid's peak amplitude reads as its amplitude in ``x``'s units."""
    window = np.hanning(len(x))
    n = max(FFT_LENGTH, len(x))
    spectrum = np.fft.rfft(detrend(x) * window, n) / (window.sum() / 2)
    return np.fft.rfftfreq(n, 1.0 / rate), np.abs(spectrum) ** 2


def peak_in(freqs: np.ndarray, power: np.ndarray, band: tuple[float, float], width: float,
            harmonic: bool = False) -> Peak | None:
    """The band's strongest frequency (refined between bins), None when the band is empty or
    flat. Quality: the power within ``width`` Hz of the peak (and of twice its frequency with
    ``harmonic``) over the band's power."""
    inside = (freqs >= band[0]) & (freqs <= band[1])
    total = float(power[inside].sum())
    if total <= 0 or not inside.any():
        return None
    index = int(np.flatnonzero(inside)[np.argmax(power[inside])])
    hz = freqs[index]
    if 0 < index < len(power) - 1:
        a, b, c = np.log(power[index - 1:index + 2] + 1e-30)
        denominator = a - 2 * b + c
        if denominator < 0:
            hz += 0.5 * (a - c) / denominator * (freqs[1] - freqs[0])
    near = np.abs(freqs - hz) <= width
    if harmonic:
        near |= np.abs(freqs - 2 * hz) <= width
    share = float(power[near & inside].sum()) / total
    return Peak(float(hz), float(np.sqrt(power[index])), min(1.0, share))


def amplitude_at(freqs: np.ndarray, power: np.ndarray, hz: float, width: float) -> float:
    """The largest amplitude within ``width`` Hz of ``hz``."""
    near = np.abs(freqs - hz) <= width
    return float(np.sqrt(power[near].max())) if near.any() else 0.0
