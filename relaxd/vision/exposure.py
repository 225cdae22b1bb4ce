"""When to lock the Pi camera's exposure and white balance, and at what: pure decisions from
time, the face's brightness and the camera's metadata; :class:`relaxd.vision.camera.PiCameraSource`
only passes them on (picamera2's ``set_controls``).

The body signals read tiny changes of the chest's position and of the skin's colour: an
automatic exposure or white balance that moves under them (the chair's light changes colour and
brightness at the tempo) would read as breathing or pulse. So once the automatic algorithms
have **settled** (exposure time, analogue gain and colour gains each within :data:`STEADY` of
their values :data:`SETTLE_S` earlier) while the face is **well exposed** (its mean luma within
:data:`WELL_EXPOSED`), both are locked (``AeEnable``/``AwbEnable`` False) at the settled values.

The locked exposure time is a whole number of the LEDs' PWM periods (400 Hz: 2.5 ms): a rolling
shutter then integrates every row over whole PWM cycles, so the PWM does not band the picture.
The analogue gain makes up the difference, within :data:`GAIN_RANGE`.

Locked, the face may stop being well exposed (the chair's light dims or changes colour, the
room's light changes): after :data:`RESETTLE_AFTER_S` of a badly exposed face, the algorithms
run again and the lock is taken afresh once they settle; so at each new session's start. No
face: nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

#: The face's mean luma (0..255) that counts as well exposed.
WELL_EXPOSED = (60.0, 200.0)
#: The automatic algorithms count as settled when steady this long...
SETTLE_S = 1.0
#: ... each value within this share of where it was.
STEADY = 0.05
#: A locked exposure is let go after the face has been badly exposed this long.
RESETTLE_AFTER_S = 1.0
#: The analogue gain the lock may set.
GAIN_RANGE = (1.0, 16.0)

#: picamera2's controls that hand exposure and white balance back to the algorithms.
AUTO = {"AeEnable": True, "AwbEnable": True}


def pwm_multiple(exposure_us: float, pwm_hz: float) -> int:
    """The exposure time (µs) nearest ``exposure_us`` that is a whole number (at least one) of
    PWM periods at ``pwm_hz``."""
    period = 1e6 / pwm_hz
    return int(round(max(1, round(exposure_us / period)) * period))


def lock_controls(metadata: Mapping[str, Any], pwm_hz: float) -> dict[str, Any]:
    """The controls that lock exposure and white balance at what ``metadata`` reports: the
    exposure time rounded to whole PWM periods, the gain making up the difference."""
    exposure = float(metadata["ExposureTime"])
    locked = pwm_multiple(exposure, pwm_hz)
    low, high = GAIN_RANGE
    gain = min(high, max(low, float(metadata["AnalogueGain"]) * exposure / locked))
    red, blue = metadata["ColourGains"]
    return {"AeEnable": False, "AwbEnable": False, "ExposureTime": locked,
            "AnalogueGain": round(gain, 3), "ColourGains": (float(red), float(blue))}


def _values(metadata: Mapping[str, Any]) -> tuple[float, ...] | None:
    try:
        red, blue = metadata["ColourGains"]
        return (float(metadata["ExposureTime"]), float(metadata["AnalogueGain"]),
                float(red), float(blue))
    except (KeyError, TypeError, ValueError):
        return None


def _steady(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(abs(x - y) <= STEADY * max(abs(y), 1e-9) for x, y in zip(a, b))


@dataclass
class ExposureLock:
    """``update(t, face_brightness, metadata)`` each frame: the controls to set now (None:
    none). ``locked``: exposure and white balance are held."""

    pwm_hz: float = 400.0
    locked: bool = False
    _history: list[tuple[float, tuple[float, ...]]] = field(default_factory=list)
    _bad_since: float | None = None
    _last_t: float | None = None

    def update(self, t: float, face: float | None,
               metadata: Mapping[str, Any]) -> dict[str, Any] | None:
        """``t``: session time; a new session (time going back) settles afresh."""
        new_session, self._last_t = self._last_t is not None and t < self._last_t, t
        if new_session:
            return self._release()
        if self.locked:
            return self._watch(t, face)
        values = _values(metadata)
        if values is None:
            return None
        self._history = [(s, v) for s, v in self._history if s >= t - 2 * SETTLE_S]
        self._history.append((t, values))
        if face is None or not well_exposed(face) or not self._settled(t, values):
            return None
        self.locked, self._bad_since = True, None
        return lock_controls(metadata, self.pwm_hz)

    def _settled(self, t: float, now: tuple[float, ...]) -> bool:
        """Every value over the last :data:`SETTLE_S` within :data:`STEADY` of now."""
        span = [v for s, v in self._history if s >= t - SETTLE_S]
        old_enough = self._history[0][0] <= t - SETTLE_S
        return old_enough and all(_steady(v, now) for v in span)

    def _watch(self, t: float, face: float | None) -> dict[str, Any] | None:
        if face is None or well_exposed(face):
            self._bad_since = None
            return None
        self._bad_since = t if self._bad_since is None else self._bad_since
        return None if t - self._bad_since < RESETTLE_AFTER_S else self._release()

    def _release(self) -> dict[str, Any] | None:
        """Back to the automatic algorithms, to settle afresh (None: they were on)."""
        was, self.locked, self._history, self._bad_since = self.locked, False, [], None
        return dict(AUTO) if was else None


def well_exposed(face: float) -> bool:
    low, high = WELL_EXPOSED
    return low <= face <= high
