"""The body's responses from one camera: breathing, pulse and restlessness, read each frame
with a face from the regions placed below and on it (:mod:`relaxd.vision.body.regions`).

The chair's driven outputs come in as plain numbers (:class:`ChairOutputs`, the values the
outputs were last driven at): the sense half never reads the outputs itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from relaxd.vision.body.breathing import BreathingMeter
from relaxd.vision.body.movement import MovementMeter
from relaxd.vision.body.profiles import Profiles
from relaxd.vision.body.pulse import PulseMeter
from relaxd.vision.body.regions import place
from relaxd.vision.body.spectrum import RateEstimate
from relaxd.vision.camera import Frame, mean_rgb
from relaxd.vision.faces import Box

#: Seconds between two spectral estimates of each rate (movement is read every frame). The
#: breathing's and the pulse's take turns, half this apart, so no frame computes both.
ESTIMATE_EVERY_S = 1.0
#: The face gone this long: the windows start afresh (a shorter gap is bridged).
FORGET_AFTER_S = 3.0


@dataclass(frozen=True)
class ChairOutputs:
    """The chair's outputs as driven: light level 0..1 and its colour (RGB 0..255), vibration
    level 0..1."""

    light: float = 0.0
    colour: tuple[int, int, int] = (0, 0, 0)
    vibration: float = 0.0

    def light_rgb(self) -> tuple[float, float, float]:
        """The light's red, green and blue, each 0..1 (level times colour)."""
        r, g, b = (self.light * c / 255.0 for c in self.colour)
        return r, g, b


@dataclass(frozen=True)
class Vitals:
    """Breaths and beats a minute (None: unknown), restlessness 0..1, each rate's quality 0..1;
    ``chest_seen``: the chest region is in the camera's view; ``why``: why breathing is
    unknown."""

    breathing: float | None
    pulse: float | None
    movement: float
    breathing_quality: float = 0.0
    pulse_quality: float = 0.0
    chest_seen: bool = True
    why: str = ""

    def event(self) -> dict[str, Any]:
        """The fields of a ``vitals`` event."""
        def rate(x: float | None) -> float | None:
            return None if x is None else round(x, 1)

        return {"breathing": rate(self.breathing), "pulse": rate(self.pulse),
                "movement": round(self.movement, 3),
                "quality": {"breathing": round(self.breathing_quality, 2),
                            "pulse": round(self.pulse_quality, 2)}}


#: Mean (red, green, blue) of a region of this frame, or None when it has no colour.
ColourOf = Callable[[Box], "tuple[float, float, float] | None"]


class BodySignals:
    """One child's body signals: :meth:`update` each frame with a face, :meth:`lost` without."""

    def __init__(self) -> None:
        self.breathing, self.pulse, self.movement = BreathingMeter(), PulseMeter(), MovementMeter()
        self._seen: float | None = None
        self._next_estimate, self._breathing_next = 0.0, True
        self._breath, self._pulse = RateEstimate(None, 0.0), RateEstimate(None, 0.0)

    def update(self, t: float, gray: np.ndarray, face: Box, colour_of: ColourOf,
               chair: ChairOutputs) -> Vitals:
        """Read the frame at ``t`` (``gray``; ``colour_of`` gives a region's mean colour)."""
        if self._seen is not None and t - self._seen > FORGET_AFTER_S:
            self._forget()
        self._seen = t
        height, width = gray.shape[:2]
        regions = place(face, width, height)
        frame = Profiles(gray)
        self.breathing.update(t, frame, face, regions.chest, regions.head, chair.light)
        movement = self.movement.update(t, frame, regions.chest or regions.head, regions.head)
        rgb = colour_of(regions.skin)
        if rgb is not None:
            self.pulse.update(t, rgb, chair.light_rgb())
        if t >= self._next_estimate:
            self._next_estimate = t + ESTIMATE_EVERY_S / 2
            if self._breathing_next:
                self._breath = self.breathing.estimate()
            else:
                self._pulse = self.pulse.estimate()
            self._breathing_next = not self._breathing_next
        b, p = self._breath, self._pulse
        return Vitals(b.rate, p.rate, movement, b.quality, p.quality, regions.chest is not None,
                      b.why)

    @property
    def ready(self) -> bool:
        """The breathing window is full: vitals can be reported."""
        return self.breathing.full

    def lost(self, t: float) -> None:
        """No face at ``t``: after :data:`FORGET_AFTER_S` every window is forgotten (a new
        child, or the same one back, starts afresh)."""
        if self._seen is not None and t - self._seen > FORGET_AFTER_S:
            self._forget()

    def _forget(self) -> None:
        self._seen = None
        self.breathing.reset()
        self.pulse.reset()
        self.movement.reset()
        self._next_estimate, self._breathing_next = 0.0, True
        self._breath, self._pulse = RateEstimate(None, 0.0), RateEstimate(None, 0.0)


def mean_colour(image: np.ndarray) -> ColourOf:
    """``colour_of`` for a BGR image: a region's mean (red, green, blue), as the camera's frames
    give it (:func:`relaxd.vision.camera.mean_rgb`)."""
    frame = Frame(image)
    return lambda box: mean_rgb(frame, box)
