"""Loudness per ITU-R BS.1770-4 (LUFS), in numpy alone: K-weighting and gated integration.

BS.1770-4 measures loudness as the mean square of the K-weighted signal: a high shelf of about
+4 dB above 1.5 kHz (the head's effect) and then a high-pass near 38 Hz (the RLB curve). The mean
squares of 400 ms blocks, overlapping by 75 %, are gated twice: blocks below -70 LUFS are left
out, then blocks more than 10 LU below the mean of the others. Loudness is ``-0.691 + 10 log10``
of the mean square of the blocks kept. One channel (mono) has the weight 1.

The standard tabulates the two biquads at 48 kHz only. :func:`k_weighting` derives them for any
rate by the prewarped bilinear transform of the analog shelf and high-pass whose 48 kHz image is
that table (the parameters libebur128 uses), so at 48 kHz it gives the standard's coefficients.
The filter runs as an FFT convolution with the cascade's impulse response, which has died away
(below 1e-20 of its start) within :data:`SETTLE_S`, a part at a time: no scipy at run time,
whose signal module costs the daemon about 60 MiB of memory and a second to import, and no
filtered copy of the whole signal.

:func:`integrated_loudness` reads a signal played once from silence, as pyloudnorm does (a
signal shorter than one block has no loudness: ``ValueError``). :func:`loop_loudness` reads a
buffer as it sounds playing on in a loop (the filter in its steady state); a loop shorter than a
few blocks is measured repeated, so a 100 ms sound has a loudness too. :func:`source_loudness`
reads a generated sound (a function of the sample index) the same way, a part at a time.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import numpy as np

#: The gating block and its hop (75 % overlap), in seconds.
BLOCK_S = 0.4
HOP_S = 0.1
#: Blocks quieter than this are silence, whatever else is measured.
ABSOLUTE_GATE_LUFS = -70.0
#: Blocks this far below the mean loudness of the blocks above the absolute gate are left out.
RELATIVE_GATE_LU = -10.0
#: The K-weighting's impulse response has died away after this long.
SETTLE_S = 0.25
#: A loop is measured repeated to at least this long, so its blocks fall at several phases.
LOOP_MEASURE_S = 3.0
_OFFSET = -0.691  # BS.1770's constant: a 997 Hz sine at full scale reads -3.01 LUFS


class Biquad(NamedTuple):
    """One second-order filter section, ``b`` over ``a`` (``a[0]`` is 1)."""

    b: tuple[float, float, float]
    a: tuple[float, float, float]

    def response(self, n_fft: int) -> np.ndarray:
        """The complex frequency response at the bins of an ``n_fft``-point real FFT."""
        z = np.exp(-2j * np.pi * np.arange(n_fft // 2 + 1) / n_fft)  # z^-1 at each bin
        return np.polyval(self.b[::-1], z) / np.polyval(self.a[::-1], z)


def _shelf(rate: int) -> Biquad:
    """BS.1770's first stage: the head's high-frequency boost (about +4 dB above 1.5 kHz)."""
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / rate)
    vh = 10 ** (gain_db / 20)
    vb = vh ** 0.4996667741545416
    a0 = 1 + k / q + k * k
    return Biquad(((vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0,
                   (vh - vb * k / q + k * k) / a0),
                  (1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0))


def _high_pass(rate: int) -> Biquad:
    """BS.1770's second stage: the RLB high-pass near 38 Hz. The table's numerator 1, -2, 1
    passes high frequencies at +0.043 dB at 48 kHz; it is scaled to pass them so at every rate
    (left unscaled, as libebur128 does, it would read +0.26 dB more at 8 kHz)."""
    f0, q = 38.13547087602444, 0.5003270373238773

    def a0(at: int) -> float:
        k = math.tan(math.pi * f0 / at)
        return 1 + k / q + k * k

    k, g = math.tan(math.pi * f0 / rate), a0(48000) / a0(rate)
    return Biquad((g, -2 * g, g), (1.0, 2 * (k * k - 1) / a0(rate), (1 - k / q + k * k) / a0(rate)))


def k_weighting(rate: int) -> tuple[Biquad, Biquad]:
    """The K-weighting filter at ``rate`` Hz: the shelf, then the high-pass."""
    return _shelf(rate), _high_pass(rate)


@functools.lru_cache(maxsize=8)
def _impulse_response(rate: int) -> np.ndarray:
    """The K-weighting's impulse response up to :data:`SETTLE_S`, from its response sampled
    over a second or more (so the time-aliased tail is far below float precision)."""
    n_fft = 1 << math.ceil(math.log2(rate))
    shelf, high_pass = k_weighting(rate)
    h = np.fft.irfft(shelf.response(n_fft) * high_pass.response(n_fft), n_fft)
    return h[: int(SETTLE_S * rate)]


def _hop_edges(n: int, rate: int) -> np.ndarray:
    """The sample index of every 100 ms hop's start in ``n`` samples, and the last one's end."""
    return np.arange(10 * n // rate + 1) * rate // 10


Reader = Callable[[int, int], np.ndarray]  # (first sample, count) -> up to count samples


def _energy_at(read: Reader, n: int, h: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The energy of a signal of ``n`` samples (given by ``read``) convolved with ``h`` (where
    ``h`` lies wholly over it) from its first sample up to each of the rising ``edges``. FFT
    overlap-save, a part at a time, so neither the signal nor its filtered copy is held whole."""
    n_fft = 4 << math.ceil(math.log2(len(h)))
    spectrum = np.fft.rfft(h, n_fft)
    hop, n_out = n_fft - len(h) + 1, n - len(h) + 1
    at, total = np.zeros(len(edges)), 0.0
    for start in range(0, n_out, hop):
        part = np.fft.irfft(np.fft.rfft(read(start, min(n_fft, n - start)), n_fft) * spectrum,
                            n_fft)
        running = total + np.cumsum(np.square(part[len(h) - 1:len(h) - 1 + min(hop, n_out - start)]))
        inside = (edges > start) & (edges <= start + len(running))
        at[inside] = running[edges[inside] - start - 1]
        total = running[-1]
    return at


def _block_mean_squares(read: Reader, n: int, rate: int) -> np.ndarray:
    """The K-weighted mean square of every whole 400 ms block of ``n`` samples, one every 100 ms
    from the first; ``read`` gives the signal from :data:`SETTLE_S` (less a sample) before it."""
    h = _impulse_response(rate)
    edges = _hop_edges(n, rate)
    energy = _energy_at(read, n + len(h) - 1, h, edges)
    per_block = round(BLOCK_S / HOP_S)
    return (energy[per_block:] - energy[:-per_block]) / (edges[per_block:] - edges[:-per_block])


def block_mean_squares(x: np.ndarray, rate: int, looped: bool = False) -> np.ndarray:
    """The mean square of K-weighted ``x`` in every whole 400 ms block, one every 100 ms from the
    first sample: the filter starts from silence, or (``looped``) in the steady state of ``x``
    playing on in a loop."""
    settle = len(_impulse_response(rate)) - 1
    x = np.asarray(x, dtype=np.float32)
    before = x[np.arange(-settle, 0) % len(x)] if looped else np.zeros(settle, np.float32)

    def read(start: int, count: int) -> np.ndarray:
        if start >= settle:
            return x[start - settle:start - settle + count]
        return np.concatenate([before[start:start + count], x[:max(0, start + count - settle)]])

    return _block_mean_squares(read, len(x), rate)


def _lufs(mean_square: np.ndarray | float) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return _OFFSET + 10 * np.log10(mean_square)


def gated_loudness(mean_squares: np.ndarray) -> float:
    """The integrated loudness (LUFS) of blocks with these K-weighted mean squares, gated
    absolutely and then relatively; ``-inf`` when every block is below the absolute gate."""
    kept = mean_squares[_lufs(mean_squares) > ABSOLUTE_GATE_LUFS]
    if kept.size == 0:
        return -math.inf
    kept = kept[_lufs(kept) > _lufs(kept.mean()) + RELATIVE_GATE_LU]
    return float(_lufs(kept.mean()))


def integrated_loudness(x: np.ndarray, rate: int) -> float:
    """The loudness (LUFS) of mono ``x`` played once from silence; a signal shorter than one
    400 ms block has none (``ValueError``)."""
    if len(x) < BLOCK_S * rate:
        raise ValueError(f"{len(x)} samples are shorter than one {BLOCK_S * 1000:.0f} ms block")
    return gated_loudness(block_mean_squares(x, rate))


def loop_loudness(x: np.ndarray, rate: int) -> float:
    """The loudness (LUFS) of mono ``x`` playing on in a loop: measured over one pass, or over
    as many as fill :data:`LOOP_MEASURE_S`, with the filter already in its steady state."""
    if len(x) == 0:
        raise ValueError("an empty loop has no loudness")
    passes = math.ceil(LOOP_MEASURE_S * rate / len(x))
    loop = x if passes == 1 else np.tile(x, passes)
    return gated_loudness(block_mean_squares(loop, rate, looped=True))


def source_loudness(source: Reader, n: int, rate: int) -> float:
    """The loudness (LUFS) of the first ``n`` samples of ``source`` (a function of the absolute
    sample index, defined before 0 too) as it plays on, the filter in its steady state: read a
    part at a time, so a long stretch of a generated sound costs little memory."""
    settle = len(_impulse_response(rate)) - 1
    return gated_loudness(_block_mean_squares(
        lambda start, count: np.asarray(source(start - settle, count), np.float32), n, rate))
