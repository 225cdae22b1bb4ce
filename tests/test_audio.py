"""Sound synthesis, smooth volume, WAV rendering on virtual time, and the PortAudio error path;
one loudness (ITU-R BS.1770-4) for every sound, checked with pyloudnorm as the independent
reference (test extras only: relaxd measures with its own numpy module, relaxd.outputs.loudness)."""

from __future__ import annotations

import sys
import wave
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest

from relaxd.control.scenario import Audio, Generator, load_scenario
from relaxd.core.errors import RelaxdError
from relaxd.core.wav import read_wav
from relaxd.outputs.audio import (
    _LOOP,
    MAX_GAIN,
    PEAK,
    TARGET_LUFS,
    SoundDeviceOutput,
    Synth,
    WavFileOutput,
    _generator_gain,
    _noise_loop,
    limit_peaks,
    make_source,
)

RATE = 22050
SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


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
        assert np.abs(x).max() < 1  # no clipping


def test_sources_are_seamless_across_blocks_and_loops():
    for gen in Generator:
        src = make_source(Audio(generator=gen), RATE)
        start = _LOOP - 1000  # across the noise loop's end
        whole = src(start, 3000)
        parts = np.concatenate([src(start, 1000), src(start + 1000, 2000)])
        assert np.array_equal(whole, parts), gen


def slope_db_per_octave(x: np.ndarray, rate: int = RATE) -> float:
    """The fitted slope of the power spectrum between 50 Hz and 5 kHz, in dB per octave."""
    p = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / rate)
    octaves = np.arange(np.log2(50), np.log2(5000), 0.25)
    power = [p[(f >= 2 ** o) & (f < 2 ** (o + 0.25))].mean() for o in octaves]
    return float(np.polyfit(octaves, 10 * np.log10(power), 1)[0])


@pytest.mark.parametrize("kind, slope", [("pink", -3.01), ("brown", -6.02)])
def test_noise_loops_have_their_slope_nothing_under_20_hz_and_no_seam(kind, slope):
    x = _noise_loop(kind, RATE)
    assert slope_db_per_octave(x) == pytest.approx(slope, abs=0.3)
    p = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / RATE)
    assert p[f < 18].sum() < 1e-4 * p.sum()
    steps = np.abs(np.diff(x))
    assert abs(x[0] - x[-1]) < np.quantile(steps, 0.99)  # the seam is an ordinary step
    assert np.abs(x).max() <= PEAK


def test_the_noise_and_its_loudness_cost_little_memory():
    """The loops were shaped by 2^19-point float64 FFTs and measured whole: 31 MB at the peak."""
    import tracemalloc

    _noise_loop.cache_clear()
    _generator_gain.cache_clear()
    tracemalloc.start()
    try:
        for generator in Generator:
            make_source(Audio(generator=generator), RATE)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8e6  # two float32 loops are 4.2 MB


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


def lufs(x: np.ndarray, rate: int = RATE) -> float:
    """The independent reference: pyloudnorm's ITU-R BS.1770-4 integrated loudness."""
    return pyloudnorm.Meter(rate).integrated_loudness(np.asarray(x, dtype=np.float64))


#: What every sound plays at through the Synth at volume 0.6 (audio level 1 at volume_cap 0.6).
VOLUME = 0.6
EXPECTED_LUFS = TARGET_LUFS + 20 * np.log10(VOLUME)


def played(sound: Audio, paced: bool = False, seconds: int = 24) -> np.ndarray:
    """What the Synth plays of ``sound`` at :data:`VOLUME`, after its ramp up (all limiters on)."""
    synth = Synth(RATE)
    synth.set_sound(sound, paced)
    synth.set_volume(VOLUME)
    synth.render(RATE)
    return synth.render(RATE * seconds)


def sound_name(a: Audio, paced: bool) -> str:
    """``tone 131 Hz``, ``soundscape 98 Hz paced``, ``pink-noise``: what sets how it sounds."""
    if a.generator in (Generator.PINK, Generator.BROWN):
        return a.generator.value
    return f"{a.generator.value} {a.tone_hz:g} Hz{' paced' * paced}"


def shipped_sounds() -> dict[str, tuple[Audio, bool]]:
    """Every distinct sound of the shipped scenarios, with whether a tempo paces it."""
    found: dict[str, tuple[Audio, bool]] = {}
    for path in sorted(SCENARIOS.glob("*.yaml")):
        scenario = load_scenario(path)
        for i, phase in enumerate(scenario.phases):
            a, paced = phase.audio, scenario.tempo_of(i) is not None
            assert a.file is None, "a shipped WAV file: name it here"
            if a.generator is not None:
                found[sound_name(a, paced)] = (a, paced)
    return found


def every_generator() -> dict[str, tuple[Audio, bool]]:
    """Every generator, the pitched ones at the lowest and highest pitch a scenario may ask
    for, the soundscape paced or not."""
    settings = [(Audio(generator=g), False) for g in (Generator.PINK, Generator.BROWN)]
    settings += [(Audio(generator=Generator.TONE, tone_hz=hz), False) for hz in (40, 880)]
    settings += [(Audio(generator=Generator.SOUNDSCAPE, tone_hz=hz), paced)
                 for hz in (40, 880) for paced in (False, True)]
    return {sound_name(a, paced): (a, paced) for a, paced in settings}


def drum_loop(seconds: int = 4) -> np.ndarray:
    """A loud, peaky loop: noise hits dying away in 5 ms, twice a second, at full scale over a
    soft bed. It needs the limiter at the target: one pass of gain and limiter leaves it about
    2 LU short."""
    rng = np.random.default_rng(7)
    x = 0.03 * rng.standard_normal(RATE * seconds)
    t = np.arange(int(0.3 * RATE)) / RATE
    hit = rng.standard_normal(len(t)) * np.exp(-t / 0.005)
    for k in range(0, len(x) - len(t), RATE // 2):
        x[k:k + len(t)] += hit / np.abs(hit).max()
    return x / np.abs(x).max()


def loud_files(tmp_path: Path) -> dict[str, tuple[Audio, bool]]:
    """Test WAV files: loud at full scale, high, peaky, and one shorter than a gating block."""
    t = np.arange(RATE * 4) / RATE
    beep = np.arange(int(0.15 * RATE)) / RATE  # shorter than one 400 ms gating block
    files = {"loud square 150 Hz": np.sign(np.sin(2 * np.pi * 150 * t)),
             "loud sine 3 kHz": np.sin(2 * np.pi * 3000 * t),
             "loud peaky drums": drum_loop(),
             "150 ms beep 2 kHz": np.sin(2 * np.pi * 2000 * beep) * np.hanning(len(beep))}
    return {name: (Audio(file=write_wav(tmp_path / f"{i}.wav", x, RATE)), False)
            for i, (name, x) in enumerate(files.items())}


@pytest.fixture(scope="module")
def loudness_played(tmp_path_factory) -> dict[str, float]:
    """pyloudnorm's reading of every shipped sound, every generator and the test files, each
    as the Synth plays it at the same volume."""
    sounds = {**shipped_sounds(), **every_generator(),
              **loud_files(tmp_path_factory.mktemp("wav"))}
    return {name: lufs(played(sound, paced)) for name, (sound, paced) in sounds.items()}


def test_every_sound_plays_within_1_lu_of_the_others_at_the_same_volume(loudness_played):
    """Under the former RMS rule these spread over 9.1 LU: the 3 kHz file played 7.8 LU above
    brown noise and 9.1 LU above the 40 Hz tone."""
    spread = max(loudness_played.values()) - min(loudness_played.values())
    assert spread <= 1.0, loudness_played


def test_every_sound_plays_at_the_target_loudness(loudness_played):
    assert len(loudness_played) >= 16  # the shipped sounds, 8 generator settings, 4 files
    for name, value in loudness_played.items():
        assert value == pytest.approx(EXPECTED_LUFS, abs=0.3), name


def test_a_short_sound_plays_as_loud_as_the_others_looped(tmp_path):
    """A 150 ms beep (shorter than one gating block) is measured as it plays, looped."""
    s = np.arange(int(0.15 * RATE)) / RATE
    beep = write_wav(tmp_path / "beep.wav", np.sin(2 * np.pi * 2000 * s) * np.hanning(len(s)), RATE)
    assert lufs(played(Audio(file=beep), seconds=6)) == pytest.approx(EXPECTED_LUFS, abs=0.3)


def test_quiet_passages_of_a_file_do_not_raise_its_sound(tmp_path):
    """The relative gate leaves a file's silences out: a tone that sounds a quarter of the time
    plays as loud as the same tone sounding all the time (an RMS rule raised it 6 dB)."""
    t = np.arange(RATE * 8) / RATE
    tone = 0.3 * np.sin(2 * np.pi * 500 * t)
    steady = played(Audio(file=write_wav(tmp_path / "steady.wav", tone, RATE)), seconds=8)
    sparse = played(Audio(file=write_wav(tmp_path / "sparse.wav", tone * (t < 2), RATE)), seconds=8)
    assert np.abs(sparse).max() == pytest.approx(np.abs(steady).max(), rel=0.05)


def test_a_peaky_file_is_raised_again_for_what_the_limiter_took(tmp_path):
    x = make_source(Audio(file=write_wav(tmp_path / "drums.wav", drum_loop(), RATE)), RATE)(0, RATE * 8)
    assert np.abs(x).max() <= PEAK + 1e-6
    assert lufs(x) == pytest.approx(TARGET_LUFS, abs=0.3)


@pytest.mark.parametrize("rate", [8000, 48000])
def test_sounds_share_one_loudness_at_other_sample_rates(tmp_path, rate):
    t = np.arange(rate * 3) / rate
    sounds = [Audio(generator=Generator.BROWN), Audio(generator=Generator.TONE, tone_hz=880),
              Audio(file=write_wav(tmp_path / "hi.wav", np.sin(2 * np.pi * 2500 * t), rate))]
    for sound in sounds:
        x = make_source(sound, rate)(0, rate * 12)
        assert lufs(x, rate) == pytest.approx(TARGET_LUFS, abs=0.3), sound


def test_a_near_silent_file_is_raised_only_so_far(tmp_path):
    hiss = np.random.default_rng(1).standard_normal(RATE) * 0.001
    x = make_source(Audio(file=write_wav(tmp_path / "hiss.wav", hiss, RATE)), RATE)(0, RATE * 3)
    assert rms(x) == pytest.approx(rms(hiss) * MAX_GAIN, rel=0.1)
    assert lufs(x) < TARGET_LUFS - 10


def test_a_silent_file_stays_silent(tmp_path):
    x = make_source(Audio(file=write_wav(tmp_path / "silent.wav", np.zeros(RATE), RATE)), RATE)
    assert not x(0, RATE).any()


def test_a_loud_file_is_no_louder_than_the_built_in_sounds_at_the_same_volume(tmp_path):
    t = np.arange(RATE * 4) / RATE
    square = write_wav(tmp_path / "loud.wav", np.sign(np.sin(2 * np.pi * 150 * t)), RATE)
    file, pink = played(Audio(file=square), seconds=8), played(Audio(generator=Generator.PINK),
                                                                 seconds=8)
    assert lufs(file) <= lufs(pink) + 0.3
    assert np.abs(file).max() <= VOLUME + 1e-6  # never above the volume, i.e. the cap


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


def test_built_in_sounds_peak_under_full_scale():
    """The soundscape's surf peaked at about 1.07 and was clipped by the output's ceiling: the
    generators' rare peaks are bent smoothly under PEAK."""
    for generator in Generator:
        x = make_source(Audio(generator=generator), RATE)(0, _LOOP)
        assert np.abs(x).max() <= PEAK, generator


def test_the_audio_output_loads_no_scipy():
    """The daemon measures loudness with relaxd.outputs.loudness (numpy): scipy.signal, which pyloudnorm
    needs, costs about 60 MiB of memory and a second to import on the way to the Pi's 75 MB."""
    import subprocess

    code = "import relaxd.outputs.audio, sys; print('scipy' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
