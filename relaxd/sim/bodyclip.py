"""Deterministic camera clips of a seated person, made in memory from one real still: a chest
that rises and falls at a known rate, skin with a faint pulse tint, the chair's breathing light
and vibration on the picture, fidgeting, or nothing at all (a photograph).

For testing and measuring :mod:`relaxd.vision.body`. What the clips are not: no child, no real
chair light (a multiplicative light with a spatial fall-off stands for it), no real breathing
mechanics (the body below the chin is warped up and down, most at the shoulders), and a pulse
tint whose colour signature is the published average for skin (more green than blue than red).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from relaxd.vision.body.vitals import ChairOutputs
from relaxd.vision.faces import Box

#: The relative pulse amplitude of red, green and blue in skin (the normalised blood-volume
#: signature; de Haan and van Leest, Physiol. Meas. 35, 2014).
PULSE_RGB = (0.33, 0.77, 0.53)
#: The chair's light colour in the clips (a soft blue), RGB.
LIGHT_COLOUR = (80, 140, 255)
#: Sensor noise, grey levels (standard deviation), and how many noise frames are drawn from.
NOISE_SD, NOISE_BANK = 2.0, 48
#: The breathing rate wanders by 4 % either way over this many seconds.
BREATH_WANDER_S = 40.0
#: While fidgeting the head moves this share of the body's shift.
FIDGET_HEAD = 0.3


@dataclass(frozen=True)
class ClipSpec:
    """What a clip shows. Rates per minute; None: not there."""

    breathing: float | None = None
    breathing_px: float = 1.5       # shoulders' rise, pixels
    pulse: float | None = None
    pulse_depth: float = 0.003      # green's relative change with each beat
    tempo: float | None = None      # the chair's light and vibration follow this tempo
    vibration_px: float = 1.5       # the whole picture shaken by the seat, pixels
    fidget: tuple[tuple[float, float], ...] = ()  # (from, to) seconds of fidgeting
    seconds: float = 90.0
    fps: float = 15.0
    seed: int = 0
    size: tuple[int, int] = (640, 480)


@dataclass
class ClipFrame:
    """One frame: BGR image, its time, and the chair's outputs as driven at that time."""

    image: np.ndarray
    t: float
    chair: ChairOutputs = field(default_factory=ChairOutputs)


def padded_still(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """The still scaled to the frame's height and widened to its width (edges repeated)."""
    image = cv2.imread(str(path))
    if image is None:
        raise FileNotFoundError(path)
    width, height = size
    scale = height / image.shape[0]
    image = cv2.resize(image, (min(width, round(image.shape[1] * scale)), height),
                       interpolation=cv2.INTER_AREA)
    left = (width - image.shape[1]) // 2
    return cv2.copyMakeBorder(image, 0, 0, left, width - image.shape[1] - left,
                              cv2.BORDER_REPLICATE)


class Clip:
    """The frames of ``spec`` made from ``still`` (BGR) with the face at ``face``."""

    def __init__(self, still: np.ndarray, face: Box, spec: ClipSpec) -> None:
        self.still, self.face, self.spec = still.astype(np.float32), face, spec
        height, width = still.shape[:2]
        rng = np.random.default_rng(spec.seed)
        self._noise = rng.normal(0, NOISE_SD, (NOISE_BANK, height, width, 3)).astype(np.float32)
        self._order = rng.integers(0, NOISE_BANK, int(spec.seconds * spec.fps) + 1)
        self._jitter = rng.normal(0, 1, (int(spec.seconds * spec.fps) + 1, 2))
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        self._xs, self._ys = xs, ys
        chin, shoulders = face.y + face.h * 1.0, face.y + face.h * 1.4
        self._lift = np.clip((ys - chin) / (shoulders - chin), 0, 1).astype(np.float32)
        self._fall_off = (0.6 + 0.4 * ys / height * (1 - 0.5 * xs / width))[..., None]
        cx, cy = face.x + face.w / 2, face.y + face.h * 0.55
        skin = ((xs - cx) / (face.w * 0.38)) ** 2 + ((ys - cy) / (face.h * 0.48)) ** 2
        self._skin = np.clip(1.5 - skin, 0, 1)[..., None].astype(np.float32)

    def __iter__(self) -> Iterator[ClipFrame]:
        for i in range(int(self.spec.seconds * self.spec.fps)):
            yield self.frame(i)

    def frame(self, i: int) -> ClipFrame:
        s, t = self.spec, i / self.spec.fps
        image = self._breathe(self.still, t, self._fidget(i, t))
        if s.pulse is not None:
            image = image * (1 + self._skin * _pulse(t, s.pulse, s.pulse_depth))
        chair = ChairOutputs()
        if s.tempo is not None:
            chair = _chair_at(t, s.tempo)
            light = np.array(chair.light_rgb()[::-1], dtype=np.float32)  # BGR
            image = image * (0.55 + 0.5 * self._fall_off * light)
        dx, dy = self._shake(i, t, chair)
        if dx or dy:
            image = cv2.warpAffine(image, np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32),
                                   (image.shape[1], image.shape[0]), borderMode=cv2.BORDER_REPLICATE)
        image = image + self._noise[self._order[i]]
        return ClipFrame(np.clip(image, 0, 255).astype(np.uint8), t, chair)

    def _fidget(self, i: int, t: float) -> tuple[float, float]:
        """The body's own shift while fidgeting (the head moves :data:`FIDGET_HEAD` of it)."""
        if any(a <= t < b for a, b in self.spec.fidget):
            return 6 * self._jitter[i, 0], 6 * self._jitter[i, 1]
        return 0.0, 0.0

    def _breathe(self, image: np.ndarray, t: float, fidget: tuple[float, float]) -> np.ndarray:
        s = self.spec
        if s.breathing is None and fidget == (0.0, 0.0):
            return image
        lift = 0.0 if s.breathing is None else s.breathing_px * _breath_shape(self.breaths(t))
        body = self._lift * (1 - FIDGET_HEAD) + FIDGET_HEAD
        xs = (self._xs + fidget[0] * body).astype(np.float32, copy=False)  # remap takes float32
        ys = (self._ys + lift * self._lift + fidget[1] * body).astype(np.float32, copy=False)
        return cv2.remap(image, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def breaths(self, t: float) -> float:
        """Breaths taken by ``t`` (the true mean rate over a window is their difference)."""
        if self.spec.breathing is None:
            return 0.0
        rate = self.spec.breathing / 60  # breaths a second, wandering by 4 % over 40 s
        return rate * t + 0.04 * rate * BREATH_WANDER_S / (2 * math.pi) * math.sin(
            2 * math.pi * t / BREATH_WANDER_S)

    def _shake(self, i: int, t: float, chair: ChairOutputs) -> tuple[float, float]:
        s = self.spec
        dx = dy = 0.0  # the whole picture: a camera on the chair's frame shakes with it
        if s.tempo is not None:  # the seat's buzz (aliased) and its sag with the vibration
            dy = s.vibration_px * chair.vibration * (math.sin(2 * math.pi * 9.7 * t)
                                                    + (chair.vibration - 0.5))
        return dx, dy


def _breath_shape(phase: float) -> float:
    """0..1 over one breath: a quicker rise (inhale, 40 %) than fall."""
    p = phase % 1.0
    return 0.5 - 0.5 * math.cos(math.pi * p / 0.4) if p < 0.4 else \
        0.5 + 0.5 * math.cos(math.pi * (p - 0.4) / 0.6)


def _pulse(t: float, bpm: float, depth: float) -> np.ndarray:
    """The skin's relative colour change at ``t`` (BGR), a beat with its second harmonic."""
    w = 2 * math.pi * bpm / 60 * t
    wave = math.sin(w) + 0.35 * math.sin(2 * w + 1.0)
    r, g, b = (depth * k / PULSE_RGB[1] * wave for k in PULSE_RGB)
    return np.array([b, g, r], dtype=np.float32)


def _chair_at(t: float, tempo: float) -> ChairOutputs:
    """The chair's light (a cosine between 60 and 100 %) and wave vibration at ``tempo``."""
    phase = 0.5 - 0.5 * math.cos(2 * math.pi * tempo / 60 * t)
    return ChairOutputs(0.6 + 0.4 * phase, LIGHT_COLOUR, 0.3 + 0.5 * phase)
