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
  the top mood is swapped with a random other one.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from relaxd.core.errors import RelaxdError
from relaxd.core.labels import MOODS, Mood
from relaxd.core.options import RunOptions

PLAYING = 0.05
SWAP_SHARE = 0.15
TO_POSITIVE_S, TO_NEGATIVE_S, TO_REST_S = 60.0, 30.0, 60.0
FAMILIES = ("red", "orange", "yellow", "green", "teal", "blue", "purple", "white")
ASPECTS = ("colour", "audio", "vibration")
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

    @classmethod
    def of(cls, levels: Any, stimulus: Any) -> Playing:
        """From driven Levels and the Step's Stimulus (None: nothing plays)."""
        if stimulus is None:
            return cls()
        sound = stimulus.sound
        audio = sound.generator.value if getattr(sound, "generator", None) else (
            "file" if getattr(sound, "file", None) else None)
        return cls(colour_family(tuple(stimulus.colour)) if levels.light > PLAYING else None,
                   audio if levels.audio > PLAYING else None,
                   stimulus.vibration.value if levels.vibration > PLAYING else None)


def _as_set(spec: dict[str, Any] | None) -> frozenset[tuple[str, str]]:
    out = set()
    for aspect, values in (spec or {}).items():
        if aspect not in ASPECTS:
            raise RelaxdError(f"virtual child: unknown aspect '{aspect}' (one of "
                              f"{', '.join(ASPECTS)})")
        for v in values if isinstance(values, list) else [values]:
            out.add((aspect, str(v)))
    return frozenset(out)


@dataclass(frozen=True)
class ChildModel:
    """One virtual child (the YAML file's fields)."""

    name: str
    resting: str = "neutral"
    face_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)
    likes: frozenset[tuple[str, str]] = frozenset()
    dislikes: frozenset[tuple[str, str]] = frozenset()
    seed: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "") -> ChildModel:
        try:
            bias = data.get("face_bias") or {}
            unknown = set(bias) - {m.value for m in MOODS}
            if data.get("resting", "neutral") not in _X or unknown:
                raise ValueError("resting and face_bias name negative, neutral or positive")
            negative, neutral, positive = (float(bias.get(m.value, 0.0)) for m in MOODS)
            face_bias = (negative, neutral, positive)
            if not all(0 <= b <= 1 for b in face_bias):
                raise ValueError("face_bias values are 0..1")
            return cls(str(data["name"]), data.get("resting", "neutral"), face_bias,
                       _as_set(data.get("likes")), _as_set(data.get("dislikes")),
                       int(data.get("seed", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise RelaxdError(f"virtual child: {exc}", where or None) from None

    def target(self, playing: Playing) -> float:
        now = {(a, getattr(playing, a)) for a in ASPECTS if getattr(playing, a)}
        if now & self.dislikes:
            return -1.0
        if now & self.likes:
            return 1.0
        return _X[self.resting]

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
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RelaxdError(f"cannot read the virtual child: {exc}", path) from None
    if not isinstance(data, dict):
        raise RelaxdError("a virtual child is a YAML mapping (name, resting, likes, ...)", path)
    return ChildModel.from_dict(data, str(path))


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
        return self.model.frame_probs(MOODS.index(self.mood), rng)


class VirtualChildInput:
    """The loop's input with a virtual child in the chair instead of a camera: each read, the
    child feels what ``watch()`` says is driven and shows a face; the smoother smooths it."""

    scripted = False
    exhausted = False

    def __init__(self, model: ChildModel, watch: Callable[[], Playing], smoother: Any,
                 correct: Callable[[float, np.ndarray], np.ndarray] | None = None) -> None:
        self.child = VirtualChild(model)
        self.rng = np.random.default_rng(model.seed)
        self.watch, self.smoother, self.correct = watch, smoother, correct

    def read(self, t: float) -> Any:
        from relaxd.vision.inputs import Sensed

        self.child.feel(t, self.watch())
        probs3 = self.child.face(self.rng)
        if self.correct is not None:
            probs3 = self.correct(t, probs3)
        return Sensed(self.smoother.update(t, probs3), emotion=f"virtual {self.child.mood.value}",
                      emotion_confidence=float(probs3.max()))

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
                             lambda: Playing.of(actuators.levels(), actuators.stimulus),
                             MoodSmoother(config.mood), correct=child.baseline.correct)
