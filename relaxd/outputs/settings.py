"""The actuators' settings (the configuration's ``actuators`` section): light modules only, so
reading the configuration loads no audio or GPIO stack."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from relaxd.core.yamlspec import spec
from relaxd.outputs.pins import ActuatorPins

if TYPE_CHECKING:
    from relaxd.control.controller import Caps


@dataclass(kw_only=True)
class MaxLevel:
    """The highest level of each output on this chair, whatever a scenario asks (0..1)."""

    light: float = spec(0.8, min=0, max=1, help="light level (before gamma)")
    audio: float = spec(0.8, min=0, max=1, help="audio level (1 = volume_cap)")
    vibration: float = spec(0.8, min=0, max=1, help="vibration motor duty")


@dataclass(kw_only=True)
class MaxRamp:
    """The largest change per second of each output as driven, patterns included."""

    light: float = spec(0.2, min=0.005, max=2, help="light level per second")
    audio: float = spec(0.1, min=0.005, max=2, help="audio level per second")
    vibration: float = spec(1.5, min=0.005, max=2, help="motor duty per second")


@dataclass(kw_only=True)
class ActuatorSettings(ActuatorPins):
    """GPIO pins (BCM numbers) and output settings of the chair's actuators.

    The pins and ``active_high`` are :class:`relaxd.outputs.pins.ActuatorPins`' (safe-off reads them
    alone)."""

    light_frequency: float = spec(
        400.0, min=100, max=10000, help="LED PWM frequency in Hz (>= 100: no visible flicker)")
    vibration_frequency: float = spec(
        200.0, min=50, max=10000, help="motor PWM frequency in Hz (lgpio's software PWM: 10 kHz at most)")
    light_gamma: float = spec(2.2, min=1, max=3, help="duty = level ** gamma, for even ramps")
    volume_cap: float = spec(
        0.6, min=0, max=1, help="output volume at audio level 1 (protects children's hearing)")
    audio_device: str | None = spec(None, help="PortAudio device name; none = the default")
    sample_rate: int = spec(22050, min=8000, max=48000, help="audio sample rate in Hz")
    max_level: MaxLevel = spec(default_factory=MaxLevel,
                               help="highest level of each output, whatever the scenario asks")
    max_ramp: MaxRamp = spec(default_factory=MaxRamp,
                             help="largest change per second of each output, patterns included")

    def caps(self) -> Caps:
        """The installation caps, for the controller."""
        from relaxd.control.controller import Caps, Levels

        m, r = self.max_level, self.max_ramp
        return Caps(Levels(m.light, m.audio, m.vibration), Levels(r.light, r.audio, r.vibration))

    def pins(self) -> dict[str, int | None]:
        return {"red": self.red_pin, "green": self.green_pin, "blue": self.blue_pin,
                "vibration": self.vibration_pin}
