"""The adaptive loop: mood in, intensity and ramp-limited actuator levels out.

A pure state machine; time ``t`` (seconds since session start) is passed in. The rules::

    positive for raise_after         -> raise one step (never above max)
    neutral                          -> hold (one decision when the mood turns neutral)
    negative for reduce_after        -> reduce one step (never below min), again each reduce_after
    negative for halt_after, or negative with confidence >= strong_negative over strong_for s
    of frontal frames (also while fading)
                                     -> halt: targets 0 within halt_fade s, alert the caregiver
    body distress (rules.body: breathing fast_breathing x the calm rate, or restlessness) for
    for_s while the face reads calm -> counts as negative (reduce, then halt, as above; the
                                        decisions say what was seen)
    calm (neutral/positive) for recover_after after a reduction or halt
                                     -> restart the cycle from neutral at min(start, intensity):
                                        the start intensity, never above where the child
                                        reacted; after a halt levels ramp up from 0
    idle until a face is seen        -> start the scenario (its clock starts then)
    no face for absent_hold          -> hold; for absent_pause -> pause (targets 0) + alert
    calm face back while paused      -> resume at min(start, intensity), ramping up
    end of the phases                -> fade to 0 over fade_out, then end
    estop(t)                         -> everything 0 at once, latched until reset(t), which
                                        restarts at the start intensity, never the old one
    input_lost(t)                    -> everything 0 at once and pause (camera or model failed)

Levels follow their targets at no more than the scenario's ramp rate per second (a halt or
pause may go down faster: to 0 within ``halt_fade`` seconds), and by no more than one second's
worth per tick however late it comes; the light colour blends between phases over ``crossfade``
seconds. The installation's :class:`Caps` bound every target and ramp whatever the scenario
asks (the end's fade-out lasts long enough to keep within them), so the recorded levels are the
capped ones. Under a scenario's tempo each Step carries its ``breath`` (:mod:`relaxd.control.breath`).
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass
from enum import Enum
from typing import Callable, Literal, Protocol

from relaxd.control.body import ADULT_CALM, BodyReading, distress_seen
from relaxd.control.breath import Breath, BreathClock
from relaxd.control.scenario import Audio, Pattern, Scenario
from relaxd.core.labels import Mood

Action = Literal["start", "raise", "hold", "reduce", "halt", "restart", "pause", "resume", "fade",
                 "end", "reset"]

#: What starts the scenario while idle: a face seen on an empty seat, or only a caregiver's Start.
StartOn = Literal["face", "station"]


class State(str, Enum):
    IDLE = "idle"
    RUNNING = "running"
    REDUCED = "reduced"
    HALTED = "halted"
    PAUSED = "paused"
    FADING = "fading"
    ENDED = "ended"
    ESTOPPED = "estopped"


class Reading(Protocol):
    """What the controller needs of a mood reading (relaxd.vision.mood.MoodReading has these)."""

    @property
    def mood(self) -> Mood: ...

    @property
    def confidence(self) -> float: ...


@dataclass(frozen=True)
class MoodSample:
    """A plain reading, for scripts and tests: each one stands for a face read (``sampled``)."""

    mood: Mood
    confidence: float = 0.7
    sampled: bool = True


@dataclass(frozen=True)
class Levels:
    """Actuator levels, each 0..1."""

    light: float = 0.0
    audio: float = 0.0
    vibration: float = 0.0

    def scaled(self, k: float) -> Levels:
        return Levels(self.light * k, self.audio * k, self.vibration * k)

    def each(self, fn: Callable[..., float], *others: Levels) -> Levels:
        """``fn`` output by output: ``Levels(fn(self.light, o.light, ...), ...)``."""
        rows = [(v.light, v.audio, v.vibration) for v in (self, *others)]
        return Levels(*(fn(*column) for column in zip(*rows)))


ZERO = Levels()


@dataclass(frozen=True)
class Caps:
    """The installation's limits on each output, whatever the scenario asks: the highest level
    and the largest change per second. The defaults limit nothing."""

    level: Levels = Levels(1.0, 1.0, 1.0)
    ramp: Levels = Levels(math.inf, math.inf, math.inf)

    def fade_time(self, levels: Levels, at_least: float) -> float:
        """Seconds for a linear fade from ``levels`` to 0 that keeps within the ramp caps."""
        return max(at_least, *astuple(levels.each(lambda level, rate: level / rate, self.ramp)))


@dataclass(frozen=True)
class Stimulus:
    """What the current phase plays; the Levels say how strongly."""

    colour: tuple[int, int, int]
    pulse_period: float | None
    sound: Audio
    vibration: Pattern
    vibration_period: float


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    alert: str | None = None


@dataclass(frozen=True)
class Step:
    """The controller's output for one tick."""

    t: float
    state: State
    phase: int
    phase_name: str
    intensity: float
    stimulus: Stimulus
    target: Levels
    levels: Levels
    decisions: tuple[Decision, ...] = ()
    breath: Breath | None = None  # under a tempo: the rhythm light, sound and vibration follow


#: A late tick (a stalled loop) ramps as if only this many seconds had passed: no jump after it.
MAX_RAMP_DT = 1.0

_CALM = (Mood.NEUTRAL, Mood.POSITIVE)
_MANUAL = MoodSample(Mood.NEUTRAL, 0.0)  # manual mode: no camera, no mood; nothing to react to
_PLAYING = (State.RUNNING, State.REDUCED)


def approach(level: float, target: float, max_change: float) -> float:
    """``level`` moved towards ``target`` by at most ``max_change``."""
    return target if abs(target - level) <= max_change else \
        level + (max_change if target > level else -max_change)


class Controller:
    """``step(t, reading)`` once a tick; ``estop(t)`` / ``reset(t)`` from the safety path.

    The controller idles, everything at 0, until a face is seen: the scenario starts when the
    child is seated. With ``after_previous`` (the next session on the chair) the seat must first
    be seen empty, so a child who stays after a session does not start another one.
    """

    def __init__(self, scenario: Scenario, after_previous: bool = False,
                 caps: Caps | None = None, start_on: StartOn = "face") -> None:
        self.scenario = scenario
        self.caps = caps or Caps()
        # The caregiver's hands (the station): see "the caregiver's controls" below.
        self._start_on: StartOn = start_on
        self.go = False  # set by begin(): the session starts at the next step, whatever start_on
        #: After a reset: idle until a deliberate start (begin()), never on a face.
        self.awaiting_start = False
        self._held = False
        self._manual = False
        self._breath = BreathClock(scenario)
        self.state = State.IDLE
        self._seen_empty = not after_previous
        self.intensity = scenario.intensity.start
        self._levels = ZERO
        self._t0 = 0.0
        self._last_t: float | None = None
        self._mood: Mood | None = None
        self._mood_since = 0.0
        self._anchor = 0.0  # start of the current raise / reduce interval
        self._calm_since: float | None = None
        self._absent_since: float | None = None
        self._held_absent = False
        self._fade: tuple[float, Levels] = (0.0, ZERO)  # when the fade began, and from what
        self._fade_len = scenario.rules.fade_out
        self._phase = 0
        self._colour_from: tuple[int, int, int] = scenario.phases[0].light.colour
        self._colour_t = 0.0
        #: The child's calm breathing rate, breaths a minute (their own, or an age default).
        self.calm_breathing = ADULT_CALM
        self._strong_since: float | None = None  # a strong negative held since (frontal frames)
        self._body_since: float | None = None  # the body's distress seen since
        self._body_seen = ""  # what the body showed, while it counts

    # --- outside events -------------------------------------------------------------------

    def estop(self, t: float) -> Step:
        """Emergency stop: every level 0 at once (no ramp), latched until :meth:`reset`."""
        self._advance_clock(t)
        self.state = State.ESTOPPED
        self._levels = ZERO
        return self._step(t, ZERO, ())

    def reset(self, t: float) -> Step:
        """Leave the e-stop idle, every level 0 (IEC 60204-1: a reset is not a restart). Only a
        deliberate start (:meth:`begin`) plays again, from the start intensity, ramped from 0."""
        if self.state is not State.ESTOPPED:
            raise ValueError("reset() is only valid after estop()")
        self._advance_clock(t)
        self.state, self.go, self.awaiting_start = State.IDLE, False, True
        self.intensity = self.scenario.intensity.start
        self._forget_mood(t)
        d = Decision("reset", "stop reset at the chair: idle, every output 0 until a "
                              "caregiver starts a session")
        return self._step(t, ZERO, (d,))

    def too_hot(self, t: float, why: str) -> Step:
        """The chair is too hot (relaxd.safety.thermal): every level 0 at once and idle, waiting for a
        caregiver's deliberate start (:meth:`begin`), never for a face and never by itself once
        it has cooled; it then plays from the start intensity, ramped from 0. An e-stop stays
        latched as it is (its reset then waits for a start as well)."""
        self._advance_clock(t)
        self._levels = ZERO
        if self.state is not State.ESTOPPED:
            self.state = State.IDLE
        self.go, self.awaiting_start = False, True
        self.intensity = self.scenario.intensity.start
        self._forget_mood(t)
        d = Decision("halt", f"{why}: every output off until a caregiver starts a session once "
                             "the chair has cooled", alert=f"the chair is too hot: {why}")
        return self._step(t, ZERO, (d,))

    def input_lost(self, t: float, why: str) -> Step:
        """The camera (or model) failed: every level 0 at once and pause, until a calm face is
        back (then the cycle resumes from 0, ramping up, as after any pause)."""
        self._advance_clock(t)
        self._levels = ZERO
        decisions: tuple[Decision, ...] = ()
        if self.state in _PLAYING:
            self.state = State.PAUSED
            decisions = (Decision("pause", f"{why}: stimuli paused"),)
        elif self.state is State.FADING:
            self._fade = (self._fade[0], ZERO)
        return self._step(t, ZERO, decisions)

    # --- the caregiver's controls (the station) -------------------------------------------
    # Each returns the decision it made (None: nothing to do); the next step() plays it, within
    # the same limits and ramps as the mood's decisions.

    def begin(self) -> None:
        """A caregiver's deliberate Start: the scenario starts at the next step."""
        self.go, self.awaiting_start = True, False

    @property
    def start_on(self) -> StartOn:
        """What starts the scenario while idle (``face``: a child seated; ``station``: only a
        caregiver's Start)."""
        return self._start_on

    def start_at_station(self) -> None:
        """From now on only a caregiver's Start (:meth:`begin`) starts the scenario, never a face
        seen: the chair has a station."""
        self._start_on = "station"

    @property
    def held(self) -> bool:
        """The caregiver's hold: no raises while held (reductions, halts and pauses still act)."""
        return self._held

    def hold(self, on: bool = True) -> None:
        """Hold the intensity where it is (``on``) or let the mood raise it again."""
        self._held = on

    @property
    def manual(self) -> bool:
        """Manual mode: no mood is read; the caregiver sets the intensity (:meth:`nudge`)."""
        return self._manual

    def set_manual(self, on: bool) -> None:
        """Manual mode on or off. While on, every step reads a neutral mood of no confidence
        (nothing to react to) and only :meth:`nudge` moves the intensity."""
        self._manual = on

    @property
    def waiting_for_start(self) -> bool:
        """Idle until a caregiver's Start (the station's chair, or after a reset)."""
        return self.state is State.IDLE and not self.go and (
            self.start_on == "station" or self.awaiting_start)

    @property
    def playing(self) -> bool:
        return self.state in _PLAYING or self.state in (State.HALTED, State.PAUSED, State.FADING)

    def calmer(self, t: float) -> Decision | None:
        """One intensity step down now (never below the minimum)."""
        if self.state not in _PLAYING:
            return None
        old, self._anchor = self.intensity, t
        self.intensity = max(self.scenario.intensity.min,
                             round(old - self.scenario.intensity.step, 6))
        return Decision("reduce", "calmer, asked by the caregiver: intensity "
                        + self._change(old, "minimum"))

    def nudge(self, t: float, steps: int) -> Decision | None:
        """Manual mode: the intensity ``steps`` steps up (+) or down (-), within the range."""
        if not self.manual or self.state not in _PLAYING or steps == 0:
            return None
        rng, old = self.scenario.intensity, self.intensity
        self.intensity = min(rng.max, max(rng.min, round(old + steps * rng.step, 6)))
        action: Action = "raise" if steps > 0 else "reduce"
        return Decision(action, "set by the caregiver (manual): intensity "
                        + self._change(old, "maximum" if steps > 0 else "minimum"))

    def end_gently(self, t: float) -> Decision | None:
        """The scenario's fade-out, now."""
        if self.state not in _PLAYING and self.state not in (State.HALTED, State.PAUSED):
            return None
        self.state, self._fade = State.FADING, (t, self._levels)
        self._fade_len = self.caps.fade_time(self._levels, self.scenario.rules.fade_out)
        return Decision("fade", f"ended gently by the caregiver: fading out over "
                                f"{self._fade_len:.3g} s")

    def phase_left(self, t: float) -> float | None:
        """Seconds left in the current phase (None before the start and after the end)."""
        if self.state in (State.IDLE, State.ENDED, State.FADING, State.ESTOPPED):
            return None
        elapsed, end = t - self._t0, 0.0
        for p in self.scenario.phases:
            end += p.duration
            if elapsed < end:
                return end - elapsed
        return 0.0

    # --- the loop ---------------------------------------------------------------------------

    def step(self, t: float, reading: Reading, body: BodyReading | None = None) -> Step:
        """Advance to time ``t`` with the latest mood reading (``.mood``, ``.confidence``) and
        the body's signals (None: not known)."""
        dt = self._advance_clock(t)
        decisions: list[Decision] = []
        if self.manual:
            reading, body = _MANUAL, None
        self._watch_body(t, body)
        if self.state is State.IDLE and not self._seated(t, reading, decisions):
            return self._step(t, ZERO, ())
        if self.state is State.ESTOPPED or self.state is State.ENDED:
            return self._step(t, ZERO, ())
        if self.state is not State.FADING and t - self._t0 >= self.scenario.duration:
            decisions.append(self._begin_fade(t))
        if self.state is State.FADING:
            return self._fading(t, reading, decisions)
        return self._playing(t, dt, reading, decisions)

    def _seated(self, t: float, reading: Reading, decisions: list[Decision]) -> bool:
        """Idle until started: by a caregiver's Start (:meth:`begin`), or, with
        ``start_on="face"`` and no reset waiting for a Start, by a face seen (after an empty
        seat, for a session after the first). Then the scenario starts, its clock from now.
        True once started."""
        if self.go:
            where = "at the station" if self.start_on == "station" else "by a caregiver"
            why = f"started {where}: '{self.scenario.name}'"
        elif self.start_on == "station" or self.awaiting_start:
            return False
        else:
            no_face = Mood(reading.mood) is Mood.NO_FACE
            if no_face or not self._seen_empty:
                self._seen_empty = self._seen_empty or no_face
                return False
            why = f"child seated: starting '{self.scenario.name}'"
        self.go = False
        self.state, self._t0, self._colour_t = State.RUNNING, t, t
        self._forget_mood(t)
        decisions.append(Decision("start", f"{why} at intensity {self.intensity:.2f}"))
        return True

    def _begin_fade(self, t: float) -> Decision:
        self.state, self._fade = State.FADING, (t, self._levels)
        self._fade_len = self.caps.fade_time(self._levels, self.scenario.rules.fade_out)
        return Decision("fade", f"scenario over: fading out over {self._fade_len:.3g} s")

    def _fading(self, t: float, reading: Reading, decisions: list[Decision]) -> Step:
        """Levels fade to 0 over the fade-out, then the session ends; a strong or sustained
        negative reaction still halts at once."""
        rules = self.scenario.rules
        self._track_mood(t, reading)
        why = self._negative_enough(t, reading)
        if why and self._fade_len > rules.halt_fade and self._levels != ZERO:
            self._fade, self._fade_len = (t, self._levels), rules.halt_fade
            decisions.append(self._halt_decision(why))
        t_fade, start = self._fade
        left = max(0.0, 1.0 - (t - t_fade) / self._fade_len)
        self._levels = start.scaled(left)
        if left == 0.0:
            self.state = State.ENDED
            decisions.append(Decision("end", "fade-out finished: session ended"))
        return self._step(t, ZERO, tuple(decisions))

    def _playing(self, t: float, dt: float, reading: Reading,
                 decisions: list[Decision]) -> Step:
        """Apply the mood rules, then ramp the levels towards the phase's targets (down to 0
        within ``halt_fade`` while halted or paused)."""
        rules = self.scenario.rules
        self._track_mood(t, reading)
        decisions.extend(self._rules(t, reading))
        phase = self.scenario.phases[self._phase_at(t)]
        target = ZERO
        if self.state in _PLAYING:
            target = Levels(phase.light.brightness, phase.audio.volume, phase.vibration.intensity
                            ).scaled(self.intensity).each(min, self.caps.level)
        ramp = Levels(rules.ramp.light, rules.ramp.audio, rules.ramp.vibration
                      ).each(min, self.caps.ramp)
        down = 1.0 / rules.halt_fade if self.state in (State.HALTED, State.PAUSED) else 0.0
        dt = min(dt, MAX_RAMP_DT)
        self._levels = self._levels.each(
            lambda level, to, rate: approach(level, to, max(rate, down) * dt), target, ramp)
        return self._step(t, target, tuple(decisions))

    # --- internals --------------------------------------------------------------------------

    def _advance_clock(self, t: float) -> float:
        if self._last_t is not None and t < self._last_t:
            raise ValueError(f"time went backwards: {t} < {self._last_t}")
        dt = 0.0 if self._last_t is None else t - self._last_t
        if self._last_t is None:
            self._t0 = self._colour_t = t
        self._last_t = t
        return dt

    def _forget_mood(self, t: float) -> None:
        self._mood, self._mood_since, self._anchor = None, t, t
        self._calm_since = self._absent_since = None
        self._held_absent = False
        self._strong_since = self._body_since = None
        self._body_seen = ""

    def _watch_body(self, t: float, body: BodyReading | None) -> None:
        """The body's distress, once it has lasted ``rules.body.for_s`` (``_body_seen``)."""
        rules = self.scenario.rules.body
        seen = distress_seen(body, self.calm_breathing, rules.fast_breathing,
                             rules.restless) if rules.use else ""
        if not seen:
            self._body_since, self._body_seen = None, ""
            return
        self._body_since = t if self._body_since is None else self._body_since
        self._body_seen = seen if t - self._body_since >= rules.for_s else ""

    def _watch_strong(self, t: float, mood: Mood, reading: Reading) -> None:
        """When a strong negative began to hold over frontal frames: a frame read and not
        strongly negative, or no face, ends it; frames not read (a turned face) neither end
        nor extend it."""
        strong = (mood is Mood.NEGATIVE and float(getattr(reading, "confidence", 0.0) or 0.0)
                  >= self.scenario.rules.strong_negative)
        if mood is Mood.NO_FACE or (getattr(reading, "sampled", True) and not strong):
            self._strong_since = None
        elif strong and getattr(reading, "sampled", True) and self._strong_since is None:
            self._strong_since = t

    def _track_mood(self, t: float, reading: Reading) -> None:
        mood = Mood(reading.mood)
        self._watch_strong(t, mood, reading)
        if mood in _CALM and self._body_seen:
            mood = Mood.NEGATIVE  # the body's evidence, while the face reads calm
        if mood is not self._mood:
            self._mood, self._mood_since, self._anchor = mood, t, t
        if mood in _CALM:
            self._calm_since = t if self._calm_since is None else self._calm_since
        else:
            self._calm_since = None
        if mood is Mood.NO_FACE:
            self._absent_since = t if self._absent_since is None else self._absent_since
        else:
            self._absent_since, self._held_absent = None, False

    def _rules(self, t: float, reading: Reading) -> list[Decision]:
        """The mood rules of the docstring's table, for the state the controller is in."""
        rules = self.scenario.rules
        calm_for = None if self._calm_since is None else t - self._calm_since
        recovered = calm_for is not None and calm_for >= rules.recover_after
        if self.state in _PLAYING or self.state is State.PAUSED:
            why = self._negative_enough(t, reading)
            if why:
                self.state = State.HALTED
                return [self._halt_decision(why)]
        if self.state in _PLAYING:
            if self.state is State.REDUCED and recovered:
                return [self._restart(t, f"calm for {calm_for:.0f} s after a reduction",
                                      "restart")]
            return self._playing_rules(t)
        if self.state is State.HALTED and recovered:
            return [self._restart(t, f"calm for {calm_for:.0f} s after a halt", "restart")]
        if self.state is State.PAUSED and self._mood in _CALM:
            return [self._restart(t, f"face back ({self._mood.value})", "resume")]
        return []

    def _playing_rules(self, t: float) -> list[Decision]:
        """Running or reduced: reduce on negative, hold then pause when the face is gone,
        raise on positive, note a neutral mood."""
        rules, limits = self.scenario.rules, self.scenario.intensity
        mood, lasted = self._mood, t - self._mood_since
        if mood is Mood.NEGATIVE and t - self._anchor >= rules.reduce_after:
            self._anchor, old = t, self.intensity
            self.intensity = max(limits.min, round(old - limits.step, 6))
            self.state = State.REDUCED
            return [Decision("reduce", f"{self._what_seen()} for {lasted:.0f} s: intensity "
                             + self._change(old, "minimum"))]
        if mood is Mood.NO_FACE:
            return self._absent_rules(t)
        if (mood is Mood.POSITIVE and self.state is State.RUNNING and not self.held
                and t - self._anchor >= rules.raise_after):
            self._anchor, old = t, self.intensity
            self.intensity = min(limits.max, round(old + limits.step, 6))
            return [Decision("raise", f"positive for {lasted:.0f} s: intensity "
                             + self._change(old, "maximum"))]
        if mood is Mood.NEUTRAL and lasted == 0:
            return [Decision("hold", f"mood neutral: holding at {self.intensity:.2f}")]
        return []

    def _absent_rules(self, t: float) -> list[Decision]:
        assert self._absent_since is not None  # _track_mood marked when the face went
        rules, absent = self.scenario.rules, t - self._absent_since
        if absent >= rules.absent_pause:
            self.state = State.PAUSED
            return [Decision("pause", f"no face for {absent:.0f} s: stimuli paused",
                             alert=f"no face for {absent:.0f} s: the child may have left")]
        if absent >= rules.absent_hold and not self._held_absent:
            self._held_absent = True
            return [Decision("hold", f"no face for {absent:.0f} s: holding at "
                                     f"{self.intensity:.2f}")]
        return []

    def _change(self, old: float, bound: str) -> str:
        if old == self.intensity:
            return f"already at {bound} {old:.2f}"
        return f"{old:.2f} -> {self.intensity:.2f}"

    def _negative_enough(self, t: float, reading: Reading) -> str:
        """Why the mood calls for a halt (strong or sustained negative), or ""."""
        if self._mood is not Mood.NEGATIVE:
            return ""
        rules = self.scenario.rules
        confidence = float(getattr(reading, "confidence", 0.0) or 0.0)
        if self._strong_since is not None and t - self._strong_since >= rules.strong_for:
            return (f"strong negative reaction (confidence {confidence:.2f} over "
                    f"{t - self._strong_since:.1f} s)")
        if t - self._mood_since >= rules.halt_after:
            return f"{self._what_seen(mood=True)} for {t - self._mood_since:.0f} s"
        return ""

    def _what_seen(self, mood: bool = False) -> str:
        """What made the mood negative: the face, or the body while the face read calm."""
        if self._body_seen:
            return f"{self._body_seen}; face calm"
        return "negative mood" if mood else "negative"

    @staticmethod
    def _halt_decision(why: str) -> Decision:
        return Decision("halt", f"{why}: stimuli halted", alert=f"{why}: stimuli halted")

    def _restart(self, t: float, why: str, action: Action) -> Decision:
        self.intensity = min(self.scenario.intensity.start, self.intensity)
        self.state, self._anchor = State.RUNNING, t
        return Decision(action, f"{why}: restarting at {self.intensity:.2f}, ramping up")

    def _phase_at(self, t: float) -> int:
        index = self.scenario.phase_at(t - self._t0)
        if index != self._phase:
            self._colour_from, self._colour_t, self._phase = self._colour(t), t, index
        return index

    def _colour(self, t: float) -> tuple[int, int, int]:
        to = self.scenario.phases[self._phase].light.colour
        span = self.scenario.crossfade
        k = 1.0 if span == 0 else min(1.0, (t - self._colour_t) / span)
        mixed = [round(a + (b - a) * k) for a, b in zip(self._colour_from, to)]
        return mixed[0], mixed[1], mixed[2]

    def _step(self, t: float, target: Levels, decisions: tuple[Decision, ...]) -> Step:
        index = self._phase_at(t) if self.state is not State.ENDED else self._phase
        p = self.scenario.phases[index]
        stimulus = Stimulus(self._colour(t), p.light.pulse_period, p.audio, p.vibration.pattern,
                            p.vibration.period)
        breath = self._breath.at(t - self._t0) if self.state is not State.IDLE else None
        return Step(t, self.state, index, p.name, self.intensity, stimulus, target, self._levels,
                    decisions, breath)
