"""Reading PCM WAV files: the one reader for the audio output and for scenario validation.

It imports nothing of relaxd but the error type, so scenario validation can read sound files
without the audio output (and the audio output can know scenarios) without an import cycle.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import numpy as np

from relaxd.core.errors import RelaxdError

#: The samples of a PCM WAV file, by their width in bytes (8-bit samples are unsigned).
_SAMPLE_TYPES: dict[int, type[np.integer[Any]]] = {1: np.uint8, 2: np.int16, 4: np.int32}


def read_wav(path: str | Path, rate: int | None = None) -> tuple[int, np.ndarray]:
    """Read a PCM WAV file as mono float32 in [-1, 1]; resample linearly to ``rate`` if given."""
    try:
        with wave.open(str(path), "rb") as w:
            width, channels, src_rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except FileNotFoundError:
        raise RelaxdError("audio file not found", path) from None
    except (wave.Error, EOFError, OSError) as exc:
        raise RelaxdError(f"not a readable PCM WAV file ({exc})", path) from None
    if width not in (1, 2, 4):
        raise RelaxdError(f"unsupported WAV sample width {8 * width} bits (use 8, 16 or 32)", path)
    if not raw:
        raise RelaxdError("WAV file has no samples", path)
    dtype = _SAMPLE_TYPES[width]
    x = np.frombuffer(raw, dtype=dtype).astype(np.float64)
    x = (x - 128) / 128 if width == 1 else x / float(np.iinfo(dtype).max)
    x = x.reshape(-1, channels).mean(axis=1)
    if rate is not None and rate != src_rate:
        n = max(1, int(round(len(x) * rate / src_rate)))
        x = np.interp(np.arange(n) * src_rate / rate, np.arange(len(x)), x)
        src_rate = rate
    return src_rate, x.astype(np.float32)
