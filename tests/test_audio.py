"""Sound synthesis, smooth volume, WAV rendering on virtual time, and the PortAudio error path."""

from __future__ import annotations

import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from relaxd.audio import (
    LOUDNESS_RMS,
    MAX_GAIN,
    PEAK,
    SoundDeviceOutput,
    Synth,
    WavFileOutput,
    limit_peaks,
    make_source,
)
from relaxd.errors import RelaxdError
from relaxd.scenario import Audio, Generator
from relaxd.wav import read_wav

RATE = 22050


def write_wav(path: Path, x: np.ndarray, rate: int, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def peak_hz(x: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


def band_ratio(x: np.ndarray) -> float:
    """Power below 200 Hz over power 1-5 kHz."""
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / RATE)
    return p[(f > 20) & (f < 200)].sum() / p[(f > 1000) & (f < 5000)].sum()


def test_tone_has_its_pitch():
    x = make_source(Audio(generator=Generator.TONE, tone_hz=220), RATE)(0, RATE)
    assert peak_hz(x) == pytest.approx(220, abs=2)
    assert np.abs(x).max() <= 1


def test_brown_noise_is_darker_than_pink():
    pink = make_source(Audio(generator=Generator.PINK), RATE)(0, RATE * 2)
    brown = make_source(Audio(generator=Generator.BROWN), RATE)(0, RATE * 2)
    assert band_ratio(brown) > 10 * band_ratio(pink)
    for x in (pink, brown):
        assert 0.15 < np.sqrt(np.mean(x ** 2)) < 0.25 and np.abs(x).max() < 1  # no clipping


def test_sources_are_seamless_across_blocks_and_loops():
    for gen in Generator:
        src = make_source(Audio(generator=gen), RATE)
        start = (1 << 19) - 1000  # across the noise loop's end
        whole = src(start, 3000)
        parts = np.concatenate([src(start, 1000), src(start + 1000, 2000)])
        assert np.array_equal(whole, parts), gen


def test_silence_for_no_sound():
    assert not make_source(None, RATE)(0, 100).any()
    assert not make_source(Audio(), RATE)(0, 100).any()


def test_volume_moves_per_sample_without_jumps_and_mute_is_fast():
    synth = Synth(RATE, slew=2.0)
    synth.set_sound(Audio(generator=Generator.TONE, tone_hz=100))
    synth.set_volume(1.0)
    x = synth.render(RATE)
    # envelope rises no faster than 2.0 per second: the first 10 ms stay tiny
    assert np.abs(x[: RATE // 100]).max() <= 0.02 * 0.55 + 1e-6
    assert synth.volume() == pytest.approx(1.0)
    synth.mute()
    assert synth.volume() == 0.0
    y = synth.render(RATE // 10)
    assert np.abs(y[int(0.005 * RATE) + 1:]).max() == 0  # silent after 5 ms
    synth.set_volume(0.5)  # un-mute: ramps up again from 0, no jump back
    z = synth.render(100)
    assert np.abs(z).max() < 0.01


def test_mute_then_unmute_before_the_next_block_still_cuts():
    synth = Synth(RATE)
    synth.set_sound(Audio(generator=Generator.TONE))
    synth.set_volume(1.0)
    synth.render(RATE)
    synth.mute()
    synth.set_volume(1.0)
    x = synth.render(RATE // 10)
    assert np.abs(x[int(0.005 * RATE) + 1: int(0.006 * RATE)]).max() < 0.01


def test_sound_changes_cross_fade():
    synth = Synth(RATE, crossfade=2.0)
    synth.set_sound(Audio(generator=Generator.TONE, tone_hz=110))
    synth.set_volume(1.0)
    synth.render(RATE * 2)
    synth.set_sound(Audio(generator=Generator.TONE, tone_hz=330))
    synth.set_sound(Audio(generator=Generator.TONE, tone_hz=330))  # same again: no restart
    x = synth.render(RATE * 3)
    assert np.abs(np.diff(x)).max() < 0.2  # no click
    assert peak_hz(x[: RATE // 2]) == pytest.approx(110, abs=3)
    assert peak_hz(x[-RATE // 2:]) == pytest.approx(330, abs=3)


def test_wav_file_source_is_resampled_and_looped(tmp_path):
    t = np.arange(4410) / 44100
    path = write_wav(tmp_path / "a.wav", np.stack([np.sin(2 * np.pi * 441 * t)] * 2, axis=1)
                     .ravel() * 0.5, 44100, channels=2)
    rate, x = read_wav(path, RATE)
    assert rate == RATE and len(x) == 2205 and np.abs(x).max() == pytest.approx(0.5, abs=0.01)
    y = make_source(Audio(file=path), RATE)(0, RATE)
    assert peak_hz(y) == pytest.approx(441, abs=3)


@pytest.mark.parametrize("content, message", [
    (None, "audio file not found"),
    (b"RIFF0000WAVEjunk", "not a readable PCM WAV"),
    (b"", "not a readable PCM WAV"),
])
def test_read_wav_errors(tmp_path, content, message):
    path = tmp_path / "x.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(RelaxdError, match=message):
        read_wav(path)


def test_wav_output_follows_virtual_time(tmp_path):
    out = WavFileOutput(tmp_path / "s.wav", RATE)
    out.play(Audio(generator=Generator.PINK), 0.5)
    out.advance(1.0)
    out.advance(1.0)  # nothing new
    out.advance(2.5)
    out.mute()
    assert out.volume() == 0
    out.advance(3.0)
    out.close()
    out.close()
    with wave.open(str(tmp_path / "s.wav")) as w:
        assert w.getnframes() == 3 * RATE and w.getframerate() == RATE
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert np.abs(x[int(2.0 * RATE):int(2.5 * RATE)]).max() > 1000
    assert not x[int(2.51 * RATE):].any()


def test_wav_output_unwritable(tmp_path):
    with pytest.raises(RelaxdError, match="cannot write audio"):
        WavFileOutput(tmp_path / "no" / "such" / "dir.wav")


def test_missing_sounddevice_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(RelaxdError, match="sounddevice is not installed"):
        SoundDeviceOutput()


def test_missing_portaudio_is_a_clear_error(monkeypatch, tmp_path):
    # sounddevice raises OSError at import when the PortAudio library is missing
    (tmp_path / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    with pytest.raises(RelaxdError, match="apt-get install libportaudio2"):
        SoundDeviceOutput()


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def test_every_sound_is_brought_to_one_loudness(tmp_path):
    t = np.arange(RATE * 3) / RATE
    loud = write_wav(tmp_path / "loud.wav", np.sign(np.sin(2 * np.pi * 200 * t)), RATE)
    quiet = write_wav(tmp_path / "quiet.wav", 0.05 * np.sin(2 * np.pi * 300 * t), RATE)
    sounds = [Audio(generator=g) for g in Generator] + [Audio(file=loud), Audio(file=quiet)]
    for sound in sounds:
        x = make_source(sound, RATE)(0, RATE * 24)
        assert rms(x) == pytest.approx(LOUDNESS_RMS, rel=0.05), sound
        assert np.abs(x).max() <= 1.1, sound


def test_a_near_silent_file_is_raised_only_so_far(tmp_path):
    hiss = np.random.default_rng(1).standard_normal(RATE) * 0.001
    x = make_source(Audio(file=write_wav(tmp_path / "hiss.wav", hiss, RATE)), RATE)(0, RATE)
    assert rms(x) == pytest.approx(rms(hiss) * MAX_GAIN, rel=0.1) and rms(x) < LOUDNESS_RMS / 5


def test_a_loud_file_is_no_louder_than_the_built_in_sounds_at_the_same_volume(tmp_path):
    t = np.arange(RATE * 4) / RATE
    square = write_wav(tmp_path / "loud.wav", np.sign(np.sin(2 * np.pi * 150 * t)), RATE)
    played = {}
    for name, sound in (("file", Audio(file=square)), ("pink", Audio(generator=Generator.PINK))):
        synth = Synth(RATE)
        synth.set_sound(sound)
        synth.set_volume(0.6)  # audio level 1 at volume_cap 0.6
        synth.render(RATE)  # the volume's ramp up
        played[name] = synth.render(RATE * 3)
    assert rms(played["file"]) <= rms(played["pink"]) * 1.05
    assert np.abs(played["file"]).max() <= 0.6 + 1e-6  # never above the volume, i.e. the cap


def test_peak_limiter_keeps_peaks_under_full_scale_with_a_smooth_gain():
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(RATE * 2) * 0.2).astype(np.float32)
    x[[100, RATE, 2 * RATE - 5]] = [3.0, -2.5, 4.0]  # clicks, one at the loop's seam
    y = limit_peaks(x, 250)
    assert np.abs(y).max() <= PEAK + 1e-6
    gain = y / np.where(x == 0, 1, x)
    assert np.abs(np.diff(gain)).max() < 0.01  # no sudden gain steps
    assert np.array_equal(y[RATE // 2: RATE // 2 + 1000], x[RATE // 2: RATE // 2 + 1000])


def test_a_cross_fade_of_two_loud_sounds_stays_within_the_volume(tmp_path):
    t = np.arange(RATE) / RATE
    a = write_wav(tmp_path / "a.wav", np.sign(np.sin(2 * np.pi * 100 * t)), RATE)
    synth = Synth(RATE)
    synth.set_sound(Audio(file=a))
    synth.set_volume(0.5)
    synth.render(RATE)
    synth.set_sound(Audio(generator=Generator.SOUNDSCAPE))
    assert np.abs(synth.render(RATE * 3)).max() <= 0.5 + 1e-6


def test_under_a_tempo_the_soundscape_has_no_swell_of_its_own():
    def loudness_per_second(paced: bool) -> np.ndarray:
        x = make_source(Audio(generator=Generator.SOUNDSCAPE), RATE, paced)(0, RATE * 20)
        return np.sqrt(np.mean(x.reshape(20, RATE).astype(np.float64) ** 2, axis=1))

    own, paced = loudness_per_second(False), loudness_per_second(True)
    assert own.max() / own.min() > 2  # its 10 s waves
    assert paced.max() / paced.min() < 1.5  # the tempo swells the volume instead
    assert rms(paced) == pytest.approx(LOUDNESS_RMS, rel=0.05)


def test_built_in_sounds_peak_under_full_scale_at_one_loudness():
    """The soundscape's surf peaked at about 1.07 and was clipped by the output's ceiling: the
    generators' rare peaks are now bent smoothly under PEAK, their loudness unchanged."""
    from relaxd.audio import _LOOP

    for generator in Generator:
        x = make_source(Audio(generator=generator), RATE)(0, _LOOP).astype(np.float64)
        assert np.abs(x).max() <= PEAK, generator
        assert np.sqrt(np.mean(x * x)) == pytest.approx(LOUDNESS_RMS, rel=0.02), generator
