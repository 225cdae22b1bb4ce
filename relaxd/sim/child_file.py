"""A virtual child's file (``--virtual-child FILE``), read like a scenario: every unknown key and
every value out of range is reported as FILE:LINE:COL (:mod:`relaxd.core.yamlspec`)::

    name: Ada
    resting: neutral                 # her mood with nothing she likes or dislikes on
    likes: {colour: blue, audio: soundscape}
    dislikes: {vibration: pulse}
    face_bias: {negative: 0.1}       # her calm face over-reads negative a little
    flat_affect: false               # true: her face reads neutral while she is upset
    birth_year: 2018                 # her profile's, when simulation makes it
    breathing: {calm: 21, upset: 34} # breaths a minute at rest and when upset
    restless: 0.8                    # her restlessness (0..1) when upset
    caregiver: {marks: 0.8}          # the chance per halt that the caregiver marks it
    seed: 3
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal

from relaxd.control.scenario import Generator, Pattern
from relaxd.core import yamlspec
from relaxd.core.yamlspec import spec

FAMILIES = ("red", "orange", "yellow", "green", "teal", "blue", "purple", "white")
#: What each aspect may name: colour families, sound generators (or a file), vibration patterns.
ASPECT_VALUES: dict[str, tuple[str, ...]] = {
    "colour": FAMILIES,
    "audio": (*(g.value for g in Generator), "file"),
    "vibration": tuple(p.value for p in Pattern),
}


class Names(tuple[str, ...]):
    """One name or a list of names."""

    @classmethod
    def from_yaml(cls, value: Any) -> Names:
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(v, str) and v for v in items):
            raise ValueError(f"expected a name or a list of names, got {value!r}")
        return cls(items)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}


@dataclass(kw_only=True)
class Aspects:
    """What the child likes (or dislikes), by aspect of what the chair plays."""

    colour: Names | None = spec(None, help="colour families: " + ", ".join(FAMILIES))
    audio: Names | None = spec(None, help="sounds: " + ", ".join(ASPECT_VALUES["audio"]))
    vibration: Names | None = spec(None, help="vibration patterns: "
                                              + ", ".join(ASPECT_VALUES["vibration"]))

    def check(self) -> Iterable[tuple[str | None, str]]:
        for aspect, allowed in ASPECT_VALUES.items():
            for name in getattr(self, aspect) or ():
                if name not in allowed:
                    yield aspect, f"{aspect} '{name}' is not one of {', '.join(allowed)}"

    def pairs(self) -> frozenset[tuple[str, str]]:
        return frozenset((a, n) for a in ASPECT_VALUES for n in getattr(self, a) or ())


@dataclass(kw_only=True)
class FaceBias:
    """How much more the child's face reads each mood than it is (0..1 each)."""

    negative: float = spec(0.0, min=0, max=1, help="added to p(negative) each frame")
    neutral: float = spec(0.0, min=0, max=1, help="added to p(neutral) each frame")
    positive: float = spec(0.0, min=0, max=1, help="added to p(positive) each frame")


@dataclass(kw_only=True)
class Breathing:
    """The child's breathing, breaths a minute."""

    calm: float = spec(14.0, min=4, max=60, help="at rest (default: the chair's for an "
                                                  "unknown age)")
    upset: float = spec(24.0, min=4, max=60, help="when upset")

    def check(self) -> Iterable[tuple[str | None, str]]:
        if self.upset <= self.calm:
            yield "upset", f"upset {self.upset:g} must be faster than calm {self.calm:g}"


@dataclass(kw_only=True)
class CaregiverSpec:
    """The caregiver at the station, as the study simulates them."""

    marks: float = spec(0.0, min=0, max=1, help="chance, drawn per halt from the file's seed, "
                                                "that the caregiver marks what they saw")


@dataclass(kw_only=True)
class ChildFile:
    """A virtual child, as its file gives it."""

    name: str = spec(help="the child's name (a profile is made for it in simulation)")
    resting: Literal["negative", "neutral", "positive"] = spec(
        "neutral", help="the mood with nothing liked or disliked playing")
    likes: Aspects = spec(default_factory=Aspects, help="what drifts the mood to positive")
    dislikes: Aspects = spec(default_factory=Aspects, help="what drifts the mood to negative")
    face_bias: FaceBias = spec(default_factory=FaceBias, help="how the face over-reads moods")
    flat_affect: bool = spec(False, help="the face reads neutral while the child is upset")
    birth_year: int | None = spec(None, min=1900, max=2100,
                                  help="the profile's birth year, when simulation makes one")
    breathing: Breathing = spec(default_factory=Breathing, help="breaths a minute")
    restless: float = spec(0.8, min=0.1, max=1, help="restlessness when upset, 0..1")
    caregiver: CaregiverSpec = spec(default_factory=CaregiverSpec,
                                    help="the caregiver at the station")
    seed: int = spec(0, min=0, help="the seed of the face's noise and the caregiver's marks")


def read_child_file(path: str | Path, text: str | None = None) -> ChildFile:
    """The child in ``path`` (or in ``text``, named ``path`` in problems); raise
    :class:`relaxd.core.yamlspec.SpecError` listing every problem as FILE:LINE:COL."""
    return yamlspec.build(ChildFile, yamlspec.compose(path, text), path)
