"""Scenarios by therapists: phases of light, sound and vibration, plus the controller's rules.

A scenario is YAML built into the dataclasses below with :mod:`relaxd.core.yamlspec`, so every problem
in a file is reported at once as ``FILE:LINE:COL: message``. Each phase gives the stimulus at
full intensity; the controller scales light brightness, audio volume and vibration intensity by
its current intensity (0..1, kept within ``intensity.min..max``).

Also here: mood scripts for simulation (``load_mood_script``) and the ``relaxd scenario validate``
and ``relaxd scenario show`` commands.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Iterable, Literal, NamedTuple

from relaxd.core import yamlspec
from relaxd.core.errors import RelaxdError
from relaxd.core.labels import Mood
from relaxd.core.wav import read_wav
from relaxd.core.yamlspec import Problem, SpecError, spec

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "scenarios" / "scenario.schema.json"

_HEX = re.compile(r"^#([0-9a-fA-F]{6})$")


class Colour(NamedTuple):
    """An RGB colour, written ``"#3060ff"`` or ``[48, 96, 255]``."""

    r: int
    g: int
    b: int

    @classmethod
    def from_yaml(cls, value: Any) -> Colour:
        if isinstance(value, str):
            m = _HEX.match(value.strip())
            if not m:
                raise ValueError(f"colour {value!r} is not '#rrggbb' (e.g. '#3060ff')")
            h = m.group(1)
            return cls(int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))
        if (isinstance(value, list) and len(value) == 3
                and all(isinstance(c, int) and not isinstance(c, bool) for c in value)):
            if not all(0 <= c <= 255 for c in value):
                raise ValueError(f"colour {value} has a part outside 0..255")
            return cls(*value)
        raise ValueError(f"expected a colour '#rrggbb' or [r, g, b] (0..255), got {value!r}")

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return {"anyOf": [
            {"type": "string", "pattern": _HEX.pattern},
            {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255},
             "minItems": 3, "maxItems": 3}],
            "description": "'#rrggbb' or [r, g, b]"}

    def hex(self) -> str:
        return f"#{self.r:02x}{self.g:02x}{self.b:02x}"


class Generator(str, Enum):
    """Synthesised sounds (see :mod:`relaxd.outputs.audio`)."""

    TONE = "tone"
    PINK = "pink-noise"
    BROWN = "brown-noise"
    SOUNDSCAPE = "soundscape"


class Pattern(str, Enum):
    """How the vibration motor's level moves within one period."""

    CONTINUOUS = "continuous"
    PULSE = "pulse"
    WAVE = "wave"


@dataclass(kw_only=True)
class Light:
    """The LEDs in one phase."""

    colour: Colour = spec(help="'#rrggbb' or [r, g, b]")
    brightness: float = spec(0.5, min=0, max=1, help="0..1 of full brightness at intensity 1")
    pulse_period: float | None = spec(
        None, min=2, max=120, help="seconds of one slow breathing pulse (60..100 %); none = steady")


@dataclass(kw_only=True)
class Audio:
    """The sound in one phase: a generator or a WAV file (neither = silence)."""

    generator: Generator | None = spec(None, help="tone, pink-noise, brown-noise or soundscape")
    file: Path | None = spec(None, help="WAV file (PCM), relative to the scenario, played looped")
    volume: float = spec(0.3, min=0, max=1, help="0..1 of the output's volume cap at intensity 1")
    tone_hz: float = spec(110.0, min=40, max=880, help="pitch of tone and of the soundscape's pad")

    def check(self) -> Iterable[tuple[str | None, str]]:
        if self.generator is not None and self.file is not None:
            yield "file", "give either 'generator' or 'file', not both"
        if self.file is not None:
            try:
                read_wav(self.file)
            except RelaxdError as exc:
                yield "file", str(exc)


@dataclass(kw_only=True)
class Vibration:
    """The vibration motor in one phase."""

    pattern: Pattern = spec(Pattern.CONTINUOUS, help="continuous, pulse or wave")
    intensity: float = spec(0.3, min=0, max=1, help="0..1 of full motor power at intensity 1")
    period: float = spec(4.0, min=1, max=60, help="seconds of one pulse or wave")


@dataclass(kw_only=True)
class Tempo:
    """Breaths per minute that light, sound and vibration follow together, changing smoothly
    from start to end (over the scenario, or over a phase)."""

    start: float = spec(min=4, max=20, help="breaths per minute at the start")
    end: float | None = spec(None, min=4, max=20,
                             help="breaths per minute at the end; left out: as at the start")


@dataclass(kw_only=True)
class Phase:
    """One stretch of the scenario."""

    name: str = spec(help="shown in logs and plots")
    duration: float = spec(min=1, max=7200, help="seconds")
    light: Light = spec(help="the LEDs")
    audio: Audio = spec(default_factory=Audio, help="the sound; left out: silence")
    vibration: Vibration = spec(default_factory=lambda: Vibration(intensity=0.0),
                                help="the seat's vibration; left out: none")
    tempo: Tempo | None = spec(
        None, help="breathing tempo over this phase (instead of the scenario's); under a tempo "
                   "the light breathes and the vibration's pattern and the sound's swell follow "
                   "it, whatever pulse_period and period say")


@dataclass(kw_only=True)
class IntensityRange:
    """The range the controller moves the intensity within, and its step."""

    start: float = spec(0.5, min=0, max=1, help="intensity at the start and after a reset")
    min: float = spec(0.2, min=0, max=1, help="lowest intensity a reduction goes to")
    max: float = spec(0.8, min=0, max=1, help="highest intensity a raise goes to")
    step: float = spec(0.1, min=0.01, max=0.5, help="change of one raise or reduction")

    def check(self) -> Iterable[tuple[str | None, str]]:
        if self.min > self.max:
            yield "min", f"min {self.min} is above max {self.max}"
        elif not self.min <= self.start <= self.max:
            yield "start", f"start {self.start} is outside min..max ({self.min}..{self.max})"


@dataclass(kw_only=True)
class Ramp:
    """Largest change of each level per second (0..1 per s): no sudden jumps."""

    light: float = spec(0.05, min=0.005, max=0.5, help="light level per second")
    audio: float = spec(0.05, min=0.005, max=0.5, help="volume per second")
    vibration: float = spec(0.05, min=0.005, max=0.5, help="vibration level per second")


@dataclass(kw_only=True)
class BodyRules:
    """The body's second channel: breathing clearly above the child's calm rate, or a burst
    of movement, counts as distress alongside the face (reduce, then halt, on the face's
    timings)."""

    use: bool = spec(True, help="read breathing and movement as evidence of distress")
    fast_breathing: float = spec(
        1.4, min=1.1, max=3, help="breathing at least this many times the child's calm rate "
                                  "counts as distress")
    restless: float = spec(0.6, min=0.2, max=1, help="restlessness (0..1) counting as distress")
    for_s: float = spec(5.0, min=1, max=60,
                        help="the body's evidence must last this long before it counts, s")


@dataclass(kw_only=True)
class Rules:
    """When the controller raises, reduces, halts, pauses (all times in seconds)."""

    raise_after: float = spec(60.0, min=5, max=3600, help="positive this long: raise one step")
    reduce_after: float = spec(10.0, min=1, max=600, help="negative this long: reduce one step")
    halt_after: float = spec(30.0, min=1, max=600, help="negative this long: halt + alert")
    strong_negative: float = spec(
        0.8, min=0.5, max=1, help="negative with at least this confidence, held over "
                                  "strong_for: halt + alert")
    strong_for: float = spec(
        1.0, min=1, max=10, help="seconds of frontal frames a strong negative must stay strong "
                                 "before it halts (never a face's first frames alone)")
    body: BodyRules = spec(default_factory=BodyRules,
                           help="breathing and movement as a second channel")
    recover_after: float = spec(
        20.0, min=1, max=600, help="non-negative this long after a reduction or halt: restart")
    absent_hold: float = spec(2.0, min=0, max=60, help="no face this long: hold")
    absent_pause: float = spec(30.0, min=1, max=600, help="no face this long: pause + alert")
    ramp: Ramp = spec(default_factory=Ramp, help="largest change per second")
    halt_fade: float = spec(
        3.0, min=0.5, max=10, help="a halt or pause reaches 0 within this many seconds")
    fade_out: float = spec(20.0, min=1, max=600, help="fade to 0 at the end over this long")

    def check(self) -> Iterable[tuple[str | None, str]]:
        if self.halt_after <= self.reduce_after:
            yield "halt_after", (f"halt_after {self.halt_after} must be longer than "
                                 f"reduce_after {self.reduce_after}")
        if self.absent_pause <= self.absent_hold:
            yield "absent_pause", (f"absent_pause {self.absent_pause} must be longer than "
                                   f"absent_hold {self.absent_hold}")


@dataclass(kw_only=True)
class Scenario:
    """A relaxation session: phases played in order, and the controller's rules."""

    name: str = spec(help="shown to the caregiver")
    description: str = spec("", help="what it is for, who it suits")
    phases: list[Phase] = spec(help="played in order")
    intensity: IntensityRange = spec(default_factory=IntensityRange, help="controller range")
    rules: Rules = spec(default_factory=Rules, help="controller rules")
    crossfade: float = spec(5.0, min=1, max=60, help="seconds to blend colours between phases")
    tempo: Tempo | None = spec(
        None, help="breathing tempo over the whole scenario, for phases without their own")

    def check(self) -> Iterable[tuple[str | None, str]]:
        if not self.phases:
            yield "phases", "a scenario needs at least one phase"

    @property
    def duration(self) -> float:
        """Seconds of the phases, without the fade-out."""
        return sum(p.duration for p in self.phases)

    def tempo_of(self, index: int) -> tuple[float, float] | None:
        """Breaths per minute at the start and the end of phase ``index`` (its own tempo, else
        the scenario's at those times), or None where no tempo applies."""
        p = self.phases[index]
        tempo = p.tempo or self.tempo
        if tempo is None:
            return None
        end = tempo.start if tempo.end is None else tempo.end
        if p.tempo is not None:
            return tempo.start, end
        t0 = sum(q.duration for q in self.phases[:index])
        start, span = tempo.start, self.duration

        def bpm_at(t: float) -> float:  # the scenario's tempo, linear over the whole scenario
            return start + (end - start) * t / span

        return bpm_at(t0), bpm_at(t0 + p.duration)

    def phase_at(self, elapsed: float) -> int:
        """Index of the phase playing ``elapsed`` seconds in (the last one after the end)."""
        end = 0.0
        for i, p in enumerate(self.phases):
            end += p.duration
            if elapsed < end:
                return i
        return len(self.phases) - 1


class ScenarioError(SpecError):
    """Every problem of one scenario or mood-script file."""


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario; raise ScenarioError (or RelaxdError) listing every problem."""
    try:
        return yamlspec.load(Scenario, path)
    except SpecError as exc:
        raise ScenarioError(exc.path, exc.problems) from None


def scenario_schema() -> dict[str, Any]:
    """The JSON Schema of scenario files (scenarios/scenario.schema.json)."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "relaxd scenario", **yamlspec.json_schema(Scenario)}


def write_schema(path: str | Path = SCHEMA_PATH) -> None:
    """Regenerate the JSON Schema file from the dataclasses."""
    Path(path).write_text(json.dumps(scenario_schema(), indent=2) + "\n", encoding="utf-8")


# --- mood scripts -------------------------------------------------------------------------


#: The buttons a mood script's caregiver works: the latching e-stop and the chair's reset.
Button = Literal["estop", "reset"]


@dataclass(kw_only=True)
class ScriptEntry:
    """One line of a mood script: from ``at`` seconds the mood is ``mood``, and the body's
    tracks (``breathing``, ``movement``, ``pulse``) what they give; or a caregiver's hand on
    a button, as on the chair: ``press: estop`` pushes the latching e-stop down until
    ``release: estop`` twists it free; ``press: reset`` holds the reset button until
    ``release: reset``."""

    at: float = spec(min=0, help="seconds since session start")
    mood: Mood | None = spec(None, help="negative, neutral, positive or no_face")
    confidence: float = spec(0.7, min=0, max=1, help="the mood's confidence")
    press: Button | None = spec(
        None, help="estop: push the e-stop down (it stays down); reset: push the reset button")
    release: Button | None = spec(
        None, help="estop: twist the e-stop free; reset: let go of the reset button")
    breathing: float | None = spec(None, min=4, max=60,
                                   help="from now the child breathes this many times a minute")
    movement: float | None = spec(None, min=0, max=1, help="from now the child's restlessness")
    pulse: float | None = spec(None, min=30, max=220,
                               help="from now the child's pulse, beats a minute (else unknown)")

    @property
    def body(self) -> bool:
        """The entry sets a body track (breathing, movement or pulse)."""
        return any(x is not None for x in (self.breathing, self.movement, self.pulse))

    def check(self) -> Iterable[tuple[str | None, str]]:
        hands = sum(x is not None for x in (self.press, self.release))
        if hands + (self.mood is not None or self.body) != 1:
            yield None, ("give exactly one of 'mood', 'press' or 'release' (a mood may come "
                         "with 'breathing', 'movement' and 'pulse', or they alone)")


def load_mood_script(path: str | Path) -> list[ScriptEntry]:
    """Read a mood script (a YAML list of entries in time order); raise ScenarioError."""
    node = yamlspec.compose(path)
    try:
        entries = yamlspec.build(list[ScriptEntry], node, path)
    except SpecError as exc:
        raise ScenarioError(exc.path, exc.problems) from None
    assert node is not None  # an empty file is no list of entries: build() refused it
    problems: list[Problem] = []
    last = 0.0
    down: dict[str, tuple[int, int]] = {}  # button -> where it was pressed, while held
    for entry, item in zip(entries, node.value):
        where = (item.start_mark.line + 1, item.start_mark.column + 1)
        if entry.at < last:
            problems.append(Problem(*where, f"at {entry.at} is before the previous entry ({last})"))
        last = max(last, entry.at)
        if entry.press is not None:
            if entry.press in down:
                problems.append(Problem(*where, f"press: {entry.press} while it is still down"))
            down[entry.press] = where
        elif entry.release is not None and down.pop(entry.release, None) is None:
            problems.append(Problem(*where, f"release: {entry.release} without a press before it"))
    if "reset" in down:
        problems.append(Problem(*down["reset"], "press: reset without a later release: reset "
                                "(the reset button acts when it is let go)"))
    if problems:
        raise ScenarioError(path, sorted(problems, key=lambda p: (p.line, p.col)))
    return entries


def mmss(seconds: float) -> str:
    """``mmss(75) == "1:15"``."""
    s = int(round(seconds))
    return f"{s // 60}:{s % 60:02d}"


def timeline(scenario: Scenario) -> list[str]:
    """Human-readable lines: each phase's time span and stimulus, then the rules."""
    r, i = scenario.rules, scenario.intensity
    lines = [f"{scenario.name}: {len(scenario.phases)} phases, {mmss(scenario.duration)}"
             f" + {mmss(r.fade_out)} fade-out"]
    t = 0.0
    for index, p in enumerate(scenario.phases):
        light = f"light {p.light.colour.hex()} {p.light.brightness:.0%}"
        if p.light.pulse_period:
            light += f" pulse {p.light.pulse_period:g}s"
        a = p.audio
        sound = (a.file.name if a.file else a.generator.value if a.generator else "silence")
        if a.generator in (Generator.TONE, Generator.SOUNDSCAPE):
            sound += f" {a.tone_hz:g}Hz"
        v = p.vibration
        tempo = scenario.tempo_of(index)
        period = f"{v.period:g}s" if tempo is None else "breath"
        if tempo is not None:
            light = f"light {p.light.colour.hex()} {p.light.brightness:.0%} breathing"
        lines.append(f"  {mmss(t):>6}-{mmss(t + p.duration):<6} {p.name:<14} {light} | "
                     f"{sound} {a.volume:.0%} | vibration {v.pattern.value} "
                     f"{v.intensity:.0%}/{period}"
                     + ("" if tempo is None else f" | tempo {tempo[0]:.3g}->{tempo[1]:.3g}/min"))
        t += p.duration
    if scenario.tempo is not None:
        end = scenario.tempo.start if scenario.tempo.end is None else scenario.tempo.end
        lines.append(f"  tempo {scenario.tempo.start:g} -> {end:g} breaths a minute over the "
                     "scenario: light, sound and vibration breathe together")
    lines.append(f"  intensity start {i.start:g} within {i.min:g}..{i.max:g}, step {i.step:g}")
    lines.append(
        f"  raise after {r.raise_after:g}s positive; reduce after {r.reduce_after:g}s negative, "
        f"halt after {r.halt_after:g}s or confidence >= {r.strong_negative:g}; restart after "
        f"{r.recover_after:g}s calm; no face: hold {r.absent_hold:g}s, pause {r.absent_pause:g}s")
    lines.append(f"  ramp per second: light {r.ramp.light:g}, audio {r.ramp.audio:g}, "
                 f"vibration {r.ramp.vibration:g}; halt fade {r.halt_fade:g}s")
    return lines
