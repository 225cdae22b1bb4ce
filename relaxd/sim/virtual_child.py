"""A virtual child whose face answers what the chair plays (``--virtual-child FILE``).

The model (pure, deterministic per file and seed):

- a stimulus plays while its output level is above :data:`PLAYING` (0.05). The light's colour
  family is its hue (HSV, degrees): red below 15 or from 345, orange 15-45, yellow 45-70, green
  70-160, teal 160-200, blue 200-250, purple 250-345; white when saturation is below 0.2.
  The audio is its generator's name (or ``file``), the vibration its pattern;
- the true mood is a position ``x`` on -1 (negative) .. 0 (neutral) .. +1 (positive): while a
  liked stimulus plays and no disliked one does, it drifts to +1 in 60 s; while a disliked one
  plays, to -1 in 30 s; otherwise back to ``resting`` at 1 per 60 s. The mood is the nearest of
  the three;
- each frame yields 3-mood probabilities (the smoother's input): 0.7 on the true mood and 0.15
  on each other, plus ``face_bias`` on the named moods, renormalised; in a seeded 15 % of frames
  the top mood is swapped with a random other one. With ``flat_affect`` the face reads neutral
  while the child is upset;
- the body (:mod:`relaxd.sim.child_body`) breathes faster when upset, slower and towards the
  chair's tempo when liking what plays, and is restless when upset; its vitals are reported as
  the camera's are;
- with ``caregiver: {marks: p}`` a caregiver at the station marks each halt with chance ``p``
  (drawn from the file's seed): "upset" when the child was upset, "misread" when not.

The file is read like a scenario (:mod:`relaxd.sim.child_file`): FILE:LINE:COL for every
unknown key and value out of range.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import yaml

from relaxd.core.labels import MOODS, Mood
from relaxd.core.options import RunOptions
from relaxd.sim.child_body import VirtualBody
from relaxd.sim.child_file import ASPECT_VALUES, ChildFile, read_child_file

PLAYING = 0.05
SWAP_SHARE = 0.15
TO_POSITIVE_S, TO_NEGATIVE_S, TO_REST_S = 60.0, 30.0, 60.0
ASPECTS = tuple(ASPECT_VALUES)  # colour, audio, vibration
_X = {"negative": -1.0, "neutral": 0.0, "positive": 1.0}


def colour_family(rgb: tuple[int, int, int]) -> str:
    """The hue family of an (r, g, b) 0..255 colour, as in the module's table."""
    h, s, _ = colorsys.rgb_to_hsv(*(c / 255.0 for c in rgb))
    if s < 0.2:
        return "white"
    deg = h * 360
    for top, name in ((15, "red"), (45, "orange"), (70, "yellow"), (160, "green"),
                      (200, "teal"), (250, "blue"), (345, "purple")):
        if deg < top:
            return name
    return "red"


@dataclass(frozen=True)
class Playing:
    """What the chair plays at one instant, as the child perceives it."""

    colour: str | None = None
    audio: str | None = None
    vibration: str | None = None
    tempo: float | None = None  # breaths a minute the outputs breathe on (None: no tempo)

    @classmethod
    def of(cls, levels: Any, stimulus: Any, breath: Any = None) -> Playing:
        """From driven Levels, the Step's Stimulus (None: nothing plays) and its Breath."""
        if stimulus is None:
            return cls()
        tempo = breath.bpm if breath is not None and any(
            v > PLAYING for v in (levels.light, levels.audio, levels.vibration)) else None
        sound = stimulus.sound
        audio = sound.generator.value if getattr(sound, "generator", None) else (
            "file" if getattr(sound, "file", None) else None)
        return cls(colour_family(tuple(stimulus.colour)) if levels.light > PLAYING else None,
                   audio if levels.audio > PLAYING else None,
                   stimulus.vibration.value if levels.vibration > PLAYING else None, tempo)


@dataclass(frozen=True)
class ChildModel:
    """One virtual child (the file's fields, :class:`relaxd.sim.child_file.ChildFile`)."""

    name: str
    resting: str = "neutral"
    face_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)
    likes: frozenset[tuple[str, str]] = frozenset()
    dislikes: frozenset[tuple[str, str]] = frozenset()
    seed: int = 0
    flat_affect: bool = False
    breathing: tuple[float, float] = (14.0, 24.0)  # calm, upset: breaths a minute
    restless: float = 0.8
    marks: float = 0.0  # the caregiver's chance per halt of marking it
    birth_year: int | None = None  # the profile's, when simulation makes one

    @classmethod
    def of_file(cls, f: ChildFile) -> ChildModel:
        b = f.face_bias
        return cls(f.name, f.resting, (b.negative, b.neutral, b.positive), f.likes.pairs(),
                   f.dislikes.pairs(), f.seed, f.flat_affect,
                   (f.breathing.calm, f.breathing.upset), f.restless, f.caregiver.marks,
                   f.birth_year)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "") -> ChildModel:
        """A child from the file's fields as a dict, checked as a file is
        (:class:`relaxd.core.yamlspec.SpecError` naming ``where``)."""
        return cls.of_file(read_child_file(where or "<virtual child>",
                                           yaml.safe_dump(data, sort_keys=False)))

    def target(self, playing: Playing) -> float:
        now = {(a, getattr(playing, a)) for a in ASPECTS if getattr(playing, a)}
        if now & self.dislikes:
            return -1.0
        if now & self.likes:
            return 1.0
        return _X[self.resting]

    def face_mood(self, mood: Mood) -> int:
        """The mood the face shows (its index in MOODS): neutral while upset with flat affect."""
        return MOODS.index(Mood.NEUTRAL if self.flat_affect and mood is Mood.NEGATIVE else mood)

    def frame_probs(self, mood_index: int, rng: np.random.Generator) -> np.ndarray:
        p = np.full(3, 0.15)
        p[mood_index] = 0.7
        p = p + np.asarray(self.face_bias)
        p /= p.sum()
        if rng.random() < SWAP_SHARE:
            top = int(np.argmax(p))
            other = (top + 1 + int(rng.integers(0, 2))) % 3
            p[[top, other]] = p[[other, top]]
        return p


def load_child(path: str | Path) -> ChildModel:
    """The virtual child of the file at ``path``; every problem as FILE:LINE:COL."""
    return ChildModel.of_file(read_child_file(path))


class Caregiver:
    """The caregiver at the station: on each halt, with chance ``marks`` (drawn from ``rng``),
    marks what they saw: "upset" when the child was upset, "misread" when not."""

    def __init__(self, marks: float, rng: np.random.Generator) -> None:
        self.marks, self.rng = marks, rng

    def on_halt(self, upset: bool) -> str | None:
        if self.marks <= 0 or self.rng.random() >= self.marks:
            return None
        return "upset" if upset else "misread"


@dataclass
class VirtualChild:
    """The child's state over one session: ``feel(t, playing)`` then ``face(rng)``."""

    model: ChildModel
    x: float = field(init=False)
    _t: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.x = _X[self.model.resting]

    @property
    def mood(self) -> Mood:
        return Mood.NEGATIVE if self.x < -0.5 else Mood.POSITIVE if self.x > 0.5 else Mood.NEUTRAL

    def feel(self, t: float, playing: Playing) -> Mood:
        dt = 0.0 if self._t is None else max(0.0, t - self._t)
        self._t = t
        target = self.model.target(playing)
        speed = {-1.0: 1 / TO_NEGATIVE_S, 1.0: 1 / TO_POSITIVE_S}.get(target, 1 / TO_REST_S)
        step = speed * dt
        self.x = target if abs(target - self.x) <= step else self.x + np.sign(target - self.x) * step
        return self.mood

    def face(self, rng: np.random.Generator) -> np.ndarray:
        return self.model.frame_probs(self.model.face_mood(self.mood), rng)

    def body(self) -> VirtualBody:
        """This child's body, its noise seeded from the file's seed."""
        calm, upset = self.model.breathing
        return VirtualBody(calm, upset, self.model.restless,
                           np.random.default_rng([self.model.seed, 2]))


class VirtualChildInput:
    """The loop's input with a virtual child in the chair instead of a camera: each read, the
    child feels what ``watch()`` says is driven and shows a face and a body; the smoother
    smooths the face. With a caregiver in the file, :meth:`caregiver_sees` says what they mark
    at each halt."""

    scripted = False
    exhausted = False

    def __init__(self, model: ChildModel, watch: Callable[[], Playing], smoother: Any,
                 correct: Callable[[float, np.ndarray], np.ndarray] | None = None) -> None:
        self.child = VirtualChild(model)
        self.rng = np.random.default_rng(model.seed)
        self.watch, self.smoother, self.correct = watch, smoother, correct
        self.body = self.child.body()
        self.caregiver = Caregiver(model.marks, np.random.default_rng([model.seed, 1]))

    def read(self, t: float) -> Any:
        from relaxd.vision.inputs import Sensed

        playing = self.watch()
        self.child.feel(t, playing)
        probs3 = self.child.face(self.rng)
        if self.correct is not None:
            probs3 = self.correct(t, probs3)
        return Sensed(self.smoother.update(t, probs3), emotion=f"virtual {self.child.mood.value}",
                      emotion_confidence=float(probs3.max()),
                      vitals=self.body.update(t, self.child.x, playing.tempo), chest_seen=True)

    def caregiver_sees(self, t: float, actions: Sequence[str]) -> list[str]:
        """The observations the caregiver marks after the chair's ``actions`` at ``t``."""
        seen = [self.caregiver.on_halt(self.child.mood is Mood.NEGATIVE)
                for a in actions if a == "halt"]
        return [what for what in seen if what is not None]

    def close(self) -> None:
        pass


def load_virtual_child(options: RunOptions) -> ChildModel | None:
    """The ``--virtual-child`` file's child (simulation only), or None."""
    if options.virtual_child is None:
        return None
    return load_child(options.virtual_child)


def virtual_input(child: Any, actuators: Any, config: Any) -> Any:
    """The virtual child in the chair: it perceives what the actuators drive."""
    from relaxd.vision.mood import MoodSmoother

    return VirtualChildInput(child.virtual,
                             lambda: Playing.of(actuators.levels(), actuators.stimulus,
                                                actuators.breath),
                             MoodSmoother(config.mood), correct=child.baseline.correct)
