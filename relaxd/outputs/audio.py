"""Sound: synthesis of a phase's audio, smooth volume, and two outputs behind one interface.

Sources are functions of the absolute sample index, so rendering is deterministic and seamless:
``tone`` (a soft sine with its octave), ``pink-noise`` and ``brown-noise`` (spectrally shaped,
looping ~24 s buffers), ``soundscape`` (brown noise swelling like waves plus a slow pad of three
tones), or a WAV file played looped. Every source is brought to one integrated loudness per
ITU-R BS.1770-4, :data:`TARGET_LUFS` (measured by :mod:`relaxd.outputs.loudness`: frequency-weighted and
gated, so a high tone, a low rumble and a peaky file sound alike at the same volume, as no RMS
level did). A WAV file's peaks are limited below full scale and the file raised again for what
the limiter took, and the generators' rare peaks are bent under full scale (:func:`soft_limit`).
:class:`Synth` cross-fades between sources when the phase changes and moves the volume per
sample (no clicks); its output never exceeds the volume (at most ``volume_cap``) it is given, and
at volume ``v`` it plays at ``TARGET_LUFS + 20 log10(v)``; ``mute()`` silences within 5 ms.

Outputs: :class:`SoundDeviceOutput` (a PortAudio stream on the chair, real time) and
:class:`WavFileOutput` (renders to a WAV file up to the daemon's virtual time in ``advance(t)``).
"""

from __future__ import annotations

import functools
import threading
import wave
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

from relaxd.core.errors import RelaxdError
from relaxd.core.wav import read_wav
from relaxd.outputs.loudness import loop_loudness, source_loudness

if TYPE_CHECKING:
    from relaxd.control.scenario import Audio

_LOOP = 1 << 19  # samples in a noise loop (~24 s at 22.05 kHz)
_MUTE_S = 0.005

#: Every sound's integrated loudness (ITU-R BS.1770-4) at volume 1, i.e. at audio level 1 with
#: ``volume_cap`` 1. It is the quietest shipped sound's loudness under the former RMS rule (brown
#: noise, -18.6 LUFS) less 1.4 dB, so no shipped scenario plays louder at the same ``volume_cap``
#: than before; a file whose peaks stand up to 19.8 dB above its loudness plays unlimited. At one
#: loudness a tone near 1 kHz reads the most dB(A): the 880 Hz tone is within 0.2 dB of it.
TARGET_LUFS = -20.0
#: A quiet file is raised this many times at most, so a near-silent file stays quiet.
MAX_GAIN = 10.0
#: A file whose peaks the limiter takes down is measured and raised again, this many times at
#: most, until it is within :data:`_CLOSE_LU` of :data:`TARGET_LUFS`.
_PASSES = 4
_CLOSE_LU = 0.05
#: Peaks of a file are brought under this (full scale 1) by a gain that moves over ~50 ms.
PEAK = 0.98
_LIMIT_S = 0.025


#: The noise loops' shaping filter, in samples (~0.74 s at 22.05 kHz): its response is the
#: noise's spectrum sampled every ``rate / _SHAPE_TAPS`` Hz (1.3 Hz), smoothed by a Hann window.
_SHAPE_TAPS = 1 << 14


def _shaping_filter(kind: str, rate: int) -> np.ndarray:
    """The impulse response that turns white noise pink (1/f power) or brown (1/f^2), without
    what is under 20 Hz: the spectrum's zero-phase response, centred and windowed."""
    f = np.fft.rfftfreq(_SHAPE_TAPS, 1.0 / rate)
    shape = np.zeros_like(f)
    keep = f >= 20.0
    shape[keep] = f[keep] ** (-0.5 if kind == "pink" else -1.0)
    return np.roll(np.fft.irfft(shape, _SHAPE_TAPS), _SHAPE_TAPS // 2) * np.hanning(_SHAPE_TAPS)


def _filtered_round(noise: Callable[[int], np.ndarray], n: int, h: np.ndarray) -> np.ndarray:
    """``n`` samples of ``noise`` (drawn a part at a time) filtered by ``h`` as if they played
    round and round (a circular convolution), so the result loops without a seam: FFT
    overlap-add, each part's filtered tail wrapped onto the loop's start. Float32, and nothing
    of the loop's length held but the result."""
    n_fft = 2 * len(h)
    spectrum, hop = np.fft.rfft(h, n_fft), n_fft - len(h) + 1
    out = np.zeros(n, np.float32)
    for start in range(0, n, hop):
        part = np.fft.irfft(np.fft.rfft(noise(min(hop, n - start)), n_fft) * spectrum, n_fft)
        at = start
        while at < start + n_fft:  # the part up to the loop's end, then what wraps past it
            end = min(start + n_fft, (at // n + 1) * n)
            out[at % n:at % n + end - at] += part[at - start:end - start]
            at = end
    return out


@functools.lru_cache(maxsize=8)
def _noise_loop(kind: str, rate: int) -> np.ndarray:
    """A seamless loop of pink (1/f power) or brown (1/f^2) noise without < 20 Hz, float32, at
    RMS 0.2 or lower if its highest peak would stand above :data:`PEAK` (no clipping)."""
    rng = np.random.default_rng(12345 if kind == "pink" else 54321)
    x = _filtered_round(lambda count: rng.standard_normal(count, dtype=np.float32), _LOOP,
                        _shaping_filter(kind, rate))
    x *= np.float32(min(0.2 / np.sqrt(np.dot(x, x) / len(x)), PEAK / max(x.max(), -x.min())))
    return np.clip(x, -PEAK, PEAK, out=x)  # the scaled peak may round one float32 step above


def _sine(start: int, n: int, rate: int, hz: float) -> np.ndarray:
    return np.sin(2 * np.pi * hz * (np.arange(start, start + n) / rate))


def _looped(buf: np.ndarray, start: int, n: int) -> np.ndarray:
    return buf[np.arange(start, start + n) % len(buf)]


def _running_min(x: np.ndarray, width: int) -> np.ndarray:
    """``out[i] = min(x[i : i + width])`` (the last ``width - 1`` values over what is left)."""
    out, span = x.copy(), 1
    while span < width:
        shift = min(span, width - span)
        out[:-shift] = np.minimum(out[:-shift], out[shift:])
        span += shift
    return out


def limit_peaks(x: np.ndarray, radius: int) -> np.ndarray:
    """A looped buffer with every peak under :data:`PEAK`: the gain each sample needs, taken as
    the minimum over ``radius`` samples either side and then averaged over as many, so it moves
    smoothly and is never more than any sample near it allows."""
    need = np.minimum(1.0, PEAK / np.maximum(np.abs(x.astype(np.float64)), 1e-9))
    if need.min() >= 1.0:
        return x
    n, h = len(x), radius
    wrapped = np.pad(need, 2 * h, mode="wrap")  # the buffer loops: so does its gain
    lowest = _running_min(wrapped, 2 * h + 1)[:len(wrapped) - 2 * h]  # [i]: around sample i - h
    total = np.concatenate([[0.0], np.cumsum(lowest)])
    gain = (total[2 * h + 1:] - total[:-2 * h - 1]) / (2 * h + 1)  # [i]: around sample i
    return (x * gain[:n]).astype(np.float32)


def normalise(x: np.ndarray, rate: int) -> np.ndarray:
    """A looped buffer at :data:`TARGET_LUFS` (raised :data:`MAX_GAIN` times at most) with its
    peaks limited under :data:`PEAK`. The loudness is measured after the limiter: a peaky file
    that the limiter made quieter is raised again, and approaches the target from below."""
    radius, most_db = max(1, int(_LIMIT_S * rate)), 20 * np.log10(MAX_GAIN)
    gain_db, y = 0.0, limit_peaks(x, radius)
    for _ in range(_PASSES):
        step = min(most_db, gain_db + TARGET_LUFS - loop_loudness(y, rate)) - gain_db
        if abs(step) < _CLOSE_LU:
            break
        gain_db += step
        y = limit_peaks(x * np.float32(10 ** (gain_db / 20)), radius)
    return y


Source = Callable[[int, int], np.ndarray]  # (first sample index, count) -> samples


def make_source(sound: Audio | None, rate: int, paced: bool = False) -> Source:
    """The sample function of a phase's audio (silence for None or neither generator nor file),
    at :data:`TARGET_LUFS`. ``paced``: a tempo swells the volume, so the soundscape has no
    swell of its own."""
    if sound is not None and sound.file is not None:
        _, buf = read_wav(sound.file, rate)
        buf = normalise(buf, rate)
        return lambda start, n: _looped(buf, start, n)
    if sound is None or sound.generator is None:
        return lambda start, n: np.zeros(n, dtype=np.float32)
    raw = _generator(sound.generator.value, sound.tone_hz, rate, paced)
    gain = _generator_gain(sound.generator.value, sound.tone_hz, rate, paced)
    return lambda start, n: soft_limit(raw(start, n) * gain)


#: Where :func:`soft_limit` starts to bend a generator's rare peaks down towards :data:`PEAK`.
KNEE = 0.9


def soft_limit(x: np.ndarray) -> np.ndarray:
    """Samples above :data:`KNEE` bent smoothly (tanh) to stay under :data:`PEAK`: a generated
    sound's rare peaks (the soundscape's surf) never reach the output's hard ceiling."""
    x = np.asarray(x, dtype=np.float32)
    over = np.abs(x) > KNEE
    if not over.any():
        return x
    room = PEAK - KNEE
    bent = KNEE + room * np.tanh((np.abs(x[over]) - KNEE) / room)
    out = x.copy()
    out[over] = np.sign(x[over]) * bent
    return out


@functools.lru_cache(maxsize=16)
def _generator_gain(kind: str, hz: float, rate: int, paced: bool) -> float:
    """The gain that brings a generator to :data:`TARGET_LUFS`, measured over one noise loop
    (a part at a time)."""
    loudness = source_loudness(_generator(kind, hz, rate, paced), _LOOP, rate)
    return float(10 ** ((TARGET_LUFS - loudness) / 20))


def _generator(kind: str, hz: float, rate: int, paced: bool = False) -> Source:
    """A built-in sound at its own level."""
    if kind == "tone":
        return lambda start, n: (0.45 * _sine(start, n, rate, hz)
                                 + 0.1 * _sine(start, n, rate, 2 * hz)).astype(np.float32)
    if kind in ("pink-noise", "brown-noise"):
        buf = _noise_loop(kind.split("-")[0], rate)
        return lambda start, n: _looped(buf, start, n)
    brown = _noise_loop("brown", rate)

    def soundscape(start: int, n: int) -> np.ndarray:
        swell = 1.0 if paced else 0.55 + 0.45 * _sine(start, n, rate, 1 / 10.0)  # every 10 s
        pad = sum((0.5 + 0.5 * _sine(start, n, rate, 1 / period)) * _sine(start, n, rate, f)
                  for f, period in ((hz, 13.0), (hz * 1.5, 17.0), (hz * 2, 23.0)))
        return (0.7 * swell * _looped(brown, start, n) + 0.1 * pad).astype(np.float32)

    return soundscape


def _sound_key(sound: Audio | None, paced: bool) -> tuple[Any, ...]:
    if sound is None:
        return (None,)
    return (sound.generator, sound.file, sound.tone_hz, paced)


class Synth:
    """Mixes the current sound (cross-fading from the previous one) at a smoothly moving volume.

    ``slew`` is the largest volume change per second inside the synth (the controller's ramp is
    slower; this only smooths its ticks into per-sample ramps).
    """

    def __init__(self, sample_rate: int, slew: float = 2.0, crossfade: float = 2.0) -> None:
        self.rate = sample_rate
        self._slew = slew / sample_rate
        self._fade_step = 1.0 / (crossfade * sample_rate)
        self._pos = 0
        self._key: tuple[Any, ...] = (None,)
        self._layers: list[list[Any]] = []  # [source, gain]; the last one is fading in
        self._vol = 0.0
        self._target = 0.0
        self._muted = False
        self._cut = False
        self._lock = threading.Lock()

    def set_sound(self, sound: Audio | None, paced: bool = False) -> None:
        """Switch to ``sound`` (cross-faded); the same sound again changes nothing. ``paced``:
        a tempo swells the volume (see :func:`make_source`)."""
        key = _sound_key(sound, paced)
        if key == self._key:
            return
        source = make_source(sound, self.rate, paced)
        with self._lock:
            self._key = key
            self._layers.append([source, 0.0 if self._layers else 1.0])

    def set_volume(self, volume: float) -> None:
        """Target volume 0..1 (reached with a per-sample ramp); un-mutes."""
        self._target = min(1.0, max(0.0, float(volume)))
        self._muted = False

    def mute(self) -> None:
        """Silence within 5 ms; lock-free so it is safe and fast from any thread."""
        self._muted = True
        self._cut = True

    def volume(self) -> float:
        """The volume being played now (0 once muted)."""
        return 0.0 if self._muted else self._vol

    def render(self, n: int) -> np.ndarray:
        """The next ``n`` mono samples (float32, -1..1)."""
        with self._lock:
            if n <= 0:
                return np.zeros(0, dtype=np.float32)
            v0, fade = self._vol, np.zeros(0)
            if self._cut:  # a mute since the last block: down to 0 in 5 ms, whatever came after
                self._cut = False
                m = min(n, max(1, int(_MUTE_S * self.rate)))
                fade, v0 = v0 * (1.0 - np.arange(1, m + 1) / m), 0.0
            target = 0.0 if self._muted else self._target
            diff = target - v0
            k = np.arange(1, n - len(fade) + 1)
            vol = np.concatenate([fade, v0 + np.sign(diff) * np.minimum(abs(diff), self._slew * k)])
            k = np.arange(1, n + 1)
            self._vol = float(vol[-1])
            mix = np.zeros(n)
            for i, layer in enumerate(self._layers):
                source, gain = layer
                up = i == len(self._layers) - 1
                g = np.clip(gain + (1 if up else -1) * self._fade_step * k, 0.0, 1.0)
                layer[1] = float(g[-1])
                if g.any():
                    mix += source(self._pos, n) * np.sqrt(g)  # equal-power cross-fade
            self._layers = [ly for i, ly in enumerate(self._layers)
                            if ly[1] > 0 or i == len(self._layers) - 1]
            self._pos += n
            return (np.clip(mix, -1.0, 1.0) * vol).astype(np.float32)  # never above vol


class AudioOutput(Protocol):
    """Where the synthesised sound goes."""

    def play(self, sound: Audio | None, volume: float, paced: bool = False) -> None: ...
    def advance(self, t: float) -> None: ...
    def mute(self) -> None: ...
    def volume(self) -> float: ...
    def close(self) -> None: ...


class WavFileOutput:
    """Renders the session's sound to a 16-bit mono WAV file, following the virtual clock."""

    def __init__(self, path: str | Path, sample_rate: int = 22050) -> None:
        self.path = Path(path)
        self.synth = Synth(sample_rate)
        try:
            self._file = open(self.path, "wb")
        except OSError as exc:
            raise RelaxdError(f"cannot write audio: {exc.strerror}", self.path) from None
        self._wav = wave.open(self._file, "wb")
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(sample_rate)
        self._written = 0
        self._closed = False

    def play(self, sound: Audio | None, volume: float, paced: bool = False) -> None:
        self.synth.set_sound(sound, paced)
        self.synth.set_volume(volume)

    def advance(self, t: float) -> None:
        """Render everything up to session time ``t``."""
        n = int(round(t * self.synth.rate)) - self._written
        if n > 0 and not self._closed:
            samples = self.synth.render(n)
            self._wav.writeframes((samples * 32767).astype("<i2").tobytes())
            self._written += n

    def mute(self) -> None:
        self.synth.mute()

    def volume(self) -> float:
        return self.synth.volume()

    def close(self) -> None:
        if not self._closed:
            self.synth.mute()
            self._closed = True
            self._wav.close()
            self._file.close()


class SoundDeviceOutput:
    """Real-time output through PortAudio (sounddevice, imported here only)."""

    def __init__(self, device: str | int | None = None, sample_rate: int = 22050,
                 blocksize: int = 512) -> None:
        try:
            import sounddevice
        except ImportError:
            raise RelaxdError("sounddevice is not installed: pip install 'relaxd[pi]'") from None
        except OSError:
            raise RelaxdError("the PortAudio library is missing: "
                              "sudo apt-get install libportaudio2") from None
        self.synth = Synth(sample_rate)
        if isinstance(device, str) and device.isdigit():
            device = int(device)  # an index from `python -m sounddevice`

        def callback(outdata: np.ndarray, frames: int, _time: Any, _status: Any) -> None:
            outdata[:, 0] = self.synth.render(frames)

        try:
            self._stream = sounddevice.OutputStream(
                samplerate=sample_rate, channels=1, dtype="float32", device=device,
                blocksize=blocksize, latency="low", callback=callback)
            self._stream.start()
        except Exception as exc:  # noqa: BLE001 - PortAudioError, ValueError for bad devices
            raise RelaxdError(f"cannot open audio device {device!r}: {exc}") from None

    def play(self, sound: Audio | None, volume: float, paced: bool = False) -> None:
        self.synth.set_sound(sound, paced)
        self.synth.set_volume(volume)

    def advance(self, t: float) -> None:
        """Nothing to do: PortAudio pulls samples in real time."""

    def mute(self) -> None:
        self.synth.mute()

    def volume(self) -> float:
        return self.synth.volume()

    def close(self) -> None:
        self.synth.mute()
        if not self._stream.closed:
            self._stream.stop()
            self._stream.close()


class NullOutput:
    """No sound at all (a chair without speakers); keeps the volume it was asked for."""

    def __init__(self) -> None:
        self._volume = 0.0

    def play(self, sound: Audio | None, volume: float, paced: bool = False) -> None:
        self._volume = volume

    def advance(self, t: float) -> None:
        pass

    def mute(self) -> None:
        self._volume = 0.0

    def volume(self) -> float:
        return self._volume

    def close(self) -> None:
        self._volume = 0.0
