"""Light (three PWM LED channels), vibration (a PWM motor driver) and sound, driven from Steps.

The controller's Levels are slow envelopes; here they are shaped by the phase's patterns
(light pulse, vibration pulse/wave, or under a tempo the light's breath, the vibration pattern
and the sound's swell all on the Step's breath, peaking together at its phase 0.5; blended over
2 s when a pattern changes), the LEDs get a
gamma curve so ramps look even, and the volume is capped by ``volume_cap``. Last, each output
is slew-limited to the installation's ``max_ramp`` per second (patterns included: a pulse's
edges soften, a too steep wave flattens) and never exceeds its envelope, so a halt still goes
down as fast as the controller asks. What is driven is what ``levels()`` reports.

``off()`` is the emergency path: thread-safe, idempotent, lock-free, and it latches. Until
``enable()`` (called by the main loop after the controller's reset) ``apply()`` only keeps
everything at 0, so a main loop that was stalled with an old Step cannot switch anything back on.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Any, Iterable

from relaxd.control.controller import MAX_RAMP_DT, ZERO, Levels, Step, approach
from relaxd.control.scenario import Pattern, Scenario
from relaxd.core.errors import RelaxdError
from relaxd.outputs.audio import AudioOutput, NullOutput
from relaxd.outputs.settings import ActuatorSettings

_BLEND_S = 2.0

#: The outputs in the order ``Actuators`` holds their devices (for fault reports).
OUTPUT_NAMES = ("red light", "green light", "blue light", "vibration")

log = logging.getLogger(__name__)


def pattern_level(pattern: Pattern, period: float, tau: float) -> float:
    """Vibration multiplier 0..1 ``tau`` seconds into a pattern; every pattern starts at 1."""
    if pattern is Pattern.CONTINUOUS:
        return 1.0
    c = math.cos(2 * math.pi * tau / period)
    if pattern is Pattern.WAVE:
        return 0.5 + 0.5 * c
    return min(1.0, max(0.0, 0.5 + 2.0 * c))  # soft-edged on/off pulse, half the period on


def pulse_level(period: float | None, tau: float) -> float:
    """Light multiplier: a slow breath between 60 % and 100 % (1 when steady), starting at 1."""
    if not period:
        return 1.0
    return 0.8 + 0.2 * math.cos(2 * math.pi * tau / period)


#: Under a tempo the sound swells between this and 100 % of its volume, once a breath.
SWELL_LOW = 0.7


def swell_level(phase: float) -> float:
    """Volume multiplier under a tempo: 100 % at the breath's peak (phase 0.5), 70 % between."""
    return SWELL_LOW + (1 - SWELL_LOW) * (0.5 - 0.5 * math.cos(2 * math.pi * phase))


def _breathing(pattern: Pattern | None) -> Any:
    """Under a tempo, a multiplier of the breath's phase that peaks at 0.5: the light's breath
    (pattern None) or a vibration pattern, one period a breath."""
    if pattern is None:
        return lambda _tau, phase: pulse_level(1.0, phase - 0.5)
    return lambda _tau, phase: pattern_level(pattern, 1.0, phase - 0.5)


def steepest(pattern: Pattern, period: float) -> float:
    """The largest change per second of ``pattern_level`` (0..1 a period)."""
    return {Pattern.CONTINUOUS: 0.0, Pattern.WAVE: math.pi / period,
            Pattern.PULSE: 4 * math.pi / period}[pattern]


def _pattern_slopes(scenario: Scenario, i: int, settings: ActuatorSettings
                    ) -> Iterable[tuple[tuple[str | int, ...], str, float, float, float]]:
    """(YAML keys, output, period, steepest change per second at intensity 1, its cap) of each
    pattern of phase ``i``: its own periods, or under a tempo its fastest breath."""
    p, ramp, tempo = scenario.phases[i], settings.max_ramp, scenario.tempo_of(i)
    if tempo is None:
        yield (("phases", i, "light", "pulse_period"), "light", p.light.pulse_period or 0.0,
               0.4 * math.pi / (p.light.pulse_period or math.inf) * p.light.brightness,
               ramp.light)
        yield (("phases", i, "vibration", "period"), "vibration", p.vibration.period,
               steepest(p.vibration.pattern, p.vibration.period) * p.vibration.intensity,
               ramp.vibration)
        return
    keys = ("phases", i, "tempo") if p.tempo is not None else ("tempo",)
    period = 60.0 / max(tempo)
    yield keys, "light", period, 0.4 * math.pi / period * p.light.brightness, ramp.light
    yield (keys, "audio", period, (1 - SWELL_LOW) * math.pi / period * p.audio.volume,
           ramp.audio)
    yield (keys, "vibration", period,
           steepest(p.vibration.pattern, period) * p.vibration.intensity, ramp.vibration)


def cap_warnings(scenario: Scenario, settings: ActuatorSettings
                 ) -> Iterable[tuple[tuple[str | int, ...], str]]:
    """Where ``scenario`` asks for more than the installation allows: (YAML keys, message)."""
    top, ramp = settings.max_level, settings.max_ramp
    most = scenario.intensity.max
    for i, p in enumerate(scenario.phases):
        asked = (("light", "brightness", p.light.brightness * most, top.light),
                 ("audio", "volume", p.audio.volume * most, top.audio),
                 ("vibration", "intensity", p.vibration.intensity * most, top.vibration))
        for output, key, level, cap in asked:
            if level > cap:
                yield ("phases", i, output, key), (
                    f"phase '{p.name}' asks for {output} {level:.2f} at intensity {most:g}; "
                    f"this chair caps it at {cap:g}")
        for keys, output, period, slope, cap in _pattern_slopes(scenario, i, settings):
            if slope * most > cap:
                yield keys, (
                    f"phase '{p.name}': its {output} pattern ({period:.3g} s) changes by up to "
                    f"{slope * most:.3g}/s; this chair softens it to {cap:g}/s")
    for output in ("light", "audio", "vibration"):
        asked_ramp, cap = getattr(scenario.rules.ramp, output), getattr(ramp, output)
        if asked_ramp > cap:
            yield ("rules", "ramp", output), (
                f"ramp {output} {asked_ramp:g}/s is above this chair's {cap:g}/s, which applies")


class _Blend:
    """A pattern function ``fn(seconds since it started, breath phase)``, blended from the
    previous one over 2 s."""

    def __init__(self) -> None:
        self._key: Any = _Blend  # matches no real key
        self._new: tuple[Any, float] | None = None
        self._old: tuple[Any, float] | None = None

    def __call__(self, t: float, key: Any, fn: Any, phase: float = 0.0) -> float:
        if key != self._key or self._new is None:  # the first call: its key never matches
            self._key, self._old, self._new = key, self._new, (fn, t)
        (new_fn, t_new), old = self._new, self._old
        w = min(1.0, (t - t_new) / _BLEND_S) if old else 1.0
        value = new_fn(t - t_new, phase)
        if old and w < 1.0:
            old_fn, t_old = old
            value = w * value + (1 - w) * old_fn(t - t_old, phase)
        return value


class Actuators:
    """The chair's outputs. Everything starts at 0 and returns to 0 on ``off()`` and ``close()``."""

    def __init__(self, settings: ActuatorSettings | None = None,
                 audio_output: AudioOutput | None = None, pin_factory: Any = None) -> None:
        from gpiozero import PWMLED, GPIOZeroError, PWMOutputDevice

        self.settings = s = settings or ActuatorSettings()
        self.audio: AudioOutput = audio_output or NullOutput()
        self._devices: list[Any] = []
        try:
            for pin in (s.red_pin, s.green_pin, s.blue_pin):
                self._devices.append(PWMLED(pin, active_high=s.active_high, initial_value=0,
                                            frequency=s.light_frequency, pin_factory=pin_factory))
            self._devices.append(PWMOutputDevice(
                s.vibration_pin, active_high=s.active_high, initial_value=0,
                frequency=s.vibration_frequency, pin_factory=pin_factory))
        except (GPIOZeroError, OSError) as exc:
            for d in self._devices:
                d.close()
            raise RelaxdError(f"cannot open the actuators' GPIO pins: {exc}") from None
        self._leds, self._motor = self._devices[:3], self._devices[3]
        self._lock = threading.Lock()
        self._inhibited = False
        self._closed = False
        self._light = 0.0
        self._driven_t: float | None = None
        self._pulse, self._vibration, self._swell = _Blend(), _Blend(), _Blend()

    @property
    def inhibited(self) -> bool:
        """True from ``off()`` until ``enable()``."""
        return self._inhibited

    def apply(self, t: float, step: Step) -> None:
        """Output ``step`` at session time ``t`` (does nothing but keep 0 while inhibited)."""
        with self._lock:
            if self._closed:
                return
            if not self._inhibited:
                self._drive(t, step)
            if self._inhibited:  # off() may have run while we wrote: make sure it wins
                self._zero()
            self.audio.advance(t)

    #: The last stimulus driven and the breath it followed (what a virtual child perceives,
    #: with ``levels()``).
    stimulus = None
    breath = None

    def _drive(self, t: float, step: Step) -> None:
        st, lv, s = step.stimulus, step.levels, self.settings
        self.stimulus, self.breath = st, step.breath
        out = self._slew(t, lv.each(lambda level, k: level * k, self._patterns(t, step)), lv)
        duty = out.light ** s.light_gamma
        for led, c in zip(self._leds, st.colour):
            led.value = duty * c / 255.0
        self._motor.value = out.vibration
        self._light = out.light
        self.audio.play(st.sound, out.audio * s.volume_cap, paced=step.breath is not None)

    #: A photosensitive child(ChildLimits.no_pulse): the light never pulses or breathes.
    steady_light = False

    def _patterns(self, t: float, step: Step) -> Levels:
        """Each output's pattern multiplier now (the light's held at 1 with ``steady_light``)."""
        shaped = self._shaped(t, step)
        return Levels(1.0, shaped.audio, shaped.vibration) if self.steady_light else shaped

    def _shaped(self, t: float, step: Step) -> Levels:
        """Each output's pattern multiplier now: the phase's own periods, or under a tempo the
        breath's, all three peaking together (blended over 2 s when they change)."""
        st, breath = step.stimulus, step.breath
        if breath is None:
            return Levels(
                self._pulse(t, st.pulse_period,
                            lambda tau, _: pulse_level(st.pulse_period, tau)),
                self._swell(t, None, lambda _tau, _phase: 1.0),
                self._vibration(t, (st.vibration, st.vibration_period),
                                lambda tau, _: pattern_level(st.vibration, st.vibration_period,
                                                             tau)))
        phase = breath.phase
        return Levels(self._pulse(t, "breath", _breathing(None), phase),
                      self._swell(t, "breath", lambda _tau, ph: swell_level(ph), phase),
                      self._vibration(t, ("breath", st.vibration), _breathing(st.vibration),
                                      phase))

    def _slew(self, t: float, wanted: Levels, envelope: Levels) -> Levels:
        """``wanted``, moved from what is driven now by at most ``max_ramp`` per second (one
        second's worth on the first apply and however late a tick), never above ``envelope``."""
        last, self._driven_t = self._driven_t, t
        dt = MAX_RAMP_DT if last is None else min(max(t - last, 0.0), MAX_RAMP_DT)
        return self.levels().each(
            lambda now, want, top, rate: max(0.0, min(1.0, top, approach(now, want, rate * dt))),
            wanted, envelope, self.settings.caps().ramp)

    def off(self) -> tuple[str, ...]:
        """Everything to 0 now and stay there until ``enable()``. Safe from any thread; never
        raises. Returns the outputs that could not be zeroed (each logged critical)."""
        self._inhibited = True
        if self._closed:
            return ()
        return self._zero()

    def enable(self) -> None:
        """Let ``apply()`` drive the outputs again (after the controller's reset); they ramp up
        from 0, the next apply counting as the first."""
        self._driven_t = None
        self._inhibited = False

    def levels(self) -> Levels:
        """What is output now: light (before gamma), volume (0..1 of the cap), vibration."""
        if self._closed:
            return ZERO
        cap = self.settings.volume_cap
        return Levels(self._light, self.audio.volume() / cap if cap else 0.0, self._motor.value)

    def close(self) -> None:
        """Off, silence the audio output and release the pins. Idempotent; never raises."""
        self.off()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for part in (self.audio, *self._devices):
                try:
                    part.close()
                except Exception:  # noqa: BLE001 - release the rest
                    log.exception("closing %r failed", part)

    def _zero(self) -> tuple[str, ...]:
        """Each output to 0 in its own ``try``, so one that fails never keeps another on."""
        from gpiozero import GPIODeviceClosed

        failed = []
        for name, device in zip(OUTPUT_NAMES, self._devices):
            try:
                device.value = 0
            except GPIODeviceClosed:  # close() got there first: a closed device is off
                pass
            except Exception as exc:  # noqa: BLE001 - zero the others whatever this one did
                failed.append(name)
                log.critical("could not switch the %s output off: %s: %s", name,
                             type(exc).__name__, exc)
        try:
            self.audio.mute()
        except Exception as exc:  # noqa: BLE001
            failed.append("sound")
            log.critical("could not mute the sound: %s: %s", type(exc).__name__, exc)
        self._light = 0.0
        return tuple(failed)
