"""relaxd's own ITU-R BS.1770-4 loudness (numpy alone, for the chair) against the standard's
48 kHz filter table and against pyloudnorm, the independent reference (test extras only)."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest

from relaxd.outputs.loudness import integrated_loudness, k_weighting, loop_loudness

RATES = [8000, 22050, 44100, 48000]


def reference(x: np.ndarray, rate: int) -> float:
    return pyloudnorm.Meter(rate).integrated_loudness(np.asarray(x, dtype=np.float64))


def coloured_noise(n: int, rate: int, slope: float, seed: int) -> np.ndarray:
    """Noise whose power falls as ``f ** -slope`` (0 white, 1 pink, 2 brown), RMS 0.1."""
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n, 1 / rate), 20.0)
    x = np.fft.irfft(spectrum * f ** (-slope / 2), n)
    return 0.1 * x / x.std()


def signals(rate: int) -> dict[str, np.ndarray]:
    """Ten seconds each: noises, low to high tones, a gated burst, and an offset."""
    n = rate * 10
    t = np.arange(n) / rate
    pink = coloured_noise(n, rate, 1, seed=rate)
    return {"white": coloured_noise(n, rate, 0, seed=1), "pink": pink,
            "brown": coloured_noise(n, rate, 2, seed=2),
            "40 Hz": 0.5 * np.sin(2 * np.pi * 40 * t), "880 Hz": 0.3 * np.sin(2 * np.pi * 880 * t),
            "3 kHz": 0.3 * np.sin(2 * np.pi * 3000 * t),
            "bursts": pink * (t % 3 < 1) + 0.002 * pink,
            "offset": 0.3 + 0.1 * np.sin(2 * np.pi * 200 * t)}


def test_k_weighting_at_48_khz_is_the_standards_table():
    shelf, high_pass = k_weighting(48000)
    assert shelf.b == pytest.approx((1.53512485958697, -2.69169618940638, 1.19839281085285),
                                    abs=1e-12)
    assert shelf.a == pytest.approx((1.0, -1.69065929318241, 0.73248077421585), abs=1e-12)
    assert high_pass.b == pytest.approx((1.0, -2.0, 1.0), abs=1e-12)
    assert high_pass.a == pytest.approx((1.0, -1.99004745483398, 0.99007225036621), abs=1e-12)


def response_db(rate: int, hz: float) -> float:
    z = np.exp(-2j * np.pi * hz / rate)
    h = np.prod([np.polyval(s.b[::-1], z) / np.polyval(s.a[::-1], z) for s in k_weighting(rate)])
    return float(20 * np.log10(abs(h)))


@pytest.mark.parametrize("rate, within_db", [(8000, 0.3), (22050, 0.05), (44100, 0.01)])
def test_k_weighting_is_the_same_curve_at_every_rate(rate, within_db):
    """Derived per rate from one analog filter, it follows the 48 kHz table as closely as the
    bilinear transform allows near the Nyquist frequency (unscaled, the high-pass's numerator
    read 0.2 dB high everywhere at 8 kHz)."""
    for hz in (40, 100, 500, 1000, 1500, 2500, 3500):
        assert response_db(rate, hz) == pytest.approx(response_db(48000, hz), abs=within_db), hz


@pytest.mark.parametrize("rate", RATES)
def test_integrated_loudness_agrees_with_pyloudnorm(rate):
    for name, x in signals(rate).items():
        assert integrated_loudness(x, rate) == pytest.approx(reference(x, rate), abs=0.1), name


@pytest.mark.parametrize("rate", [22050, 48000])
def test_a_loop_reads_as_it_sounds_played_on(rate):
    """A long loop reads as pyloudnorm reads it played once; a 150 ms loop, shorter than one
    gating block, as pyloudnorm reads it repeated for 10 s."""
    t = np.arange(int(0.15 * rate)) / rate
    beep = 0.5 * np.sin(2 * np.pi * 2000 * t) * np.hanning(len(t))
    pink = signals(rate)["pink"]
    assert loop_loudness(pink, rate) == pytest.approx(reference(pink, rate), abs=0.1)
    repeated = np.tile(beep, round(10 / 0.15))
    assert loop_loudness(beep, rate) == pytest.approx(reference(repeated, rate), abs=0.1)


def test_a_signal_shorter_than_one_block_has_no_integrated_loudness():
    with pytest.raises(ValueError, match="shorter than one 400 ms block"):
        integrated_loudness(np.ones(int(0.39 * 22050)), 22050)


def test_gates():
    """Silence reads -inf (absolute gate); a quiet stretch 20 LU down barely lowers the loud
    one's reading (relative gate; ungated it would read 3 LU lower)."""
    rate = 22050
    loud = signals(rate)["pink"]
    assert loop_loudness(np.zeros(rate), rate) == -np.inf
    with_quiet = np.concatenate([loud, 0.1 * loud])
    assert integrated_loudness(with_quiet, rate) == pytest.approx(
        integrated_loudness(loud, rate), abs=0.1)
