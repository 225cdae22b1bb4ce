"""The body's second channel for the loop: when breathing and movement count as distress.

Pure logic, standard library only. A child's calm breathing rate is their own once learned
(:mod:`relaxd.children.store`); before that, an age-appropriate default from published
paediatric ranges: the median respiratory rate by age of Fleming et al., "Normal ranges of
heart rate and respiratory rate in children from birth to 18 years of age: a systematic review
of observational studies", The Lancet 377 (2011). Adults (or no age known): 14 a minute, the
middle of the usual resting range of 12-16.
"""

from __future__ import annotations

from typing import Protocol

#: (age in years below which it applies, median breaths a minute), Fleming et al. 2011.
PAEDIATRIC_MEDIANS: tuple[tuple[float, float], ...] = (
    (0.25, 43), (0.5, 41), (1, 37), (2, 32), (3, 28), (4, 25), (6, 23), (8, 21), (12, 19),
    (15, 18), (18, 16))
#: Calm breaths a minute of an adult, or of a child whose age is not known.
ADULT_CALM = 14.0


def default_calm_breathing(age_years: float | None) -> float:
    """The calm breathing rate to compare with before a child's own is learned."""
    if age_years is None:
        return ADULT_CALM
    for below, median in PAEDIATRIC_MEDIANS:
        if age_years < below:
            return median
    return ADULT_CALM


class BodyReading(Protocol):
    """What the controller needs of the body signals (relaxd.vision.body.vitals.Vitals has
    these): breaths a minute (None: unknown) and restlessness 0..1."""

    @property
    def breathing(self) -> float | None: ...

    @property
    def movement(self) -> float: ...


def distress_seen(body: BodyReading | None, calm: float, fast: float, restless: float) -> str:
    """What in ``body`` counts as distress ("" for nothing): breathing at least ``fast`` times
    the ``calm`` rate, or a restlessness of at least ``restless``."""
    if body is None:
        return ""
    seen = []
    if body.breathing is not None and body.breathing >= fast * calm:
        seen.append(f"breathing fast ({body.breathing:.0f} / min, calm {calm:.0f})")
    if body.movement >= restless:
        seen.append(f"restless ({body.movement:.2f})")
    return " and ".join(seen)
