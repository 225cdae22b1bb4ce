"""The body's second channel for the loop: when breathing and movement count as distress.

Pure logic, standard library only. A child's calm breathing rate is their own once learned
(:mod:`relaxd.children.store`); before that, an age-appropriate default from published
paediatric ranges: the median respiratory rate by age of Fleming et al., "Normal ranges of
heart rate and respiratory rate in children from birth to 18 years of age: a systematic review
of observational studies", The Lancet 377 (2011). Adults (or no age known): 14 a minute, the
middle of the usual resting range of 12-16.

A child's own calm rate is learned like the face's baseline (:mod:`relaxd.vision.baseline`):
bounded (within :data:`CALM_BOUNDS` of the age default) and only from calm evidence: a session
with no e-stop, no halt and no caregiver's "upset" teaches the median breathing of its reports
while the face read calm, moving the learned rate by at most :data:`CALM_STEP`. Breathing that
follows the chair's tempo (within :data:`FOLLOW_WITHIN`) is the paced rate, not the child's
own rest, so it teaches nothing; how closely a session followed the tempo is
:func:`following`.
"""

from __future__ import annotations

from typing import Iterable, Protocol

#: (age in years below which it applies, median breaths a minute), Fleming et al. 2011.
PAEDIATRIC_MEDIANS: tuple[tuple[float, float], ...] = (
    (0.25, 43), (0.5, 41), (1, 37), (2, 32), (3, 28), (4, 25), (6, 23), (8, 21), (12, 19),
    (15, 18), (18, 16))
#: Calm breaths a minute of an adult, or of a child whose age is not known.
ADULT_CALM = 14.0
#: A learned calm rate stays within these factors of the age default (roughly the 10th-90th
#: centiles of Fleming et al. around the median).
CALM_BOUNDS = (0.75, 1.3)
#: The most one calm session moves the learned calm rate, breaths a minute.
CALM_STEP = 2.0
#: Breathing within this many breaths a minute of the chair's tempo follows it (the breathing
#: measure's own tolerance on the test clips).
FOLLOW_WITHIN = 2.0
#: The fewest reports that say anything about a session's breathing.
MIN_REPORTS = 3


def age_from_birth_year(birth_year: int | None, year: int) -> float | None:
    """The expected age in ``year`` of a child born in ``birth_year`` (half a year less than
    the difference: the birthday is as likely before as after today); None when not known."""
    if birth_year is None:
        return None
    return max(0.0, year - birth_year - 0.5)


def calm_breathing(learned: float | None, age_years: float | None) -> float:
    """The calm rate the controller compares with: the child's learned one (within the
    bounds), else the age default."""
    default = default_calm_breathing(age_years)
    return default if learned is None else _bounded(learned, default)


def _bounded(rate: float, default: float) -> float:
    low, high = CALM_BOUNDS
    return min(max(rate, low * default), high * default)


def learn_calm_breathing(learned: float | None, age_years: float | None,
                         session_rate: float | None, calm: bool) -> float | None:
    """The calm rate to remember after a session whose own calm breathing was
    ``session_rate``: unchanged unless the session was ``calm`` evidence and has a rate; then
    towards it by at most :data:`CALM_STEP`, within the bounds."""
    if not calm or session_rate is None:
        return learned
    now = calm_breathing(learned, age_years)
    moved = now + max(-CALM_STEP, min(CALM_STEP, session_rate - now))
    return round(_bounded(moved, default_calm_breathing(age_years)), 1)


def follows(breathing: float, tempo: float | None) -> bool:
    """The breathing is at the chair's tempo (within :data:`FOLLOW_WITHIN`)."""
    return tempo is not None and abs(breathing - tempo) <= FOLLOW_WITHIN


def following(reports: Iterable[tuple[float | None, float | None]]) -> float | None:
    """How closely the child followed the chair's tempo: the share (0..1) of the reports
    (breathing, tempo), among those with both known, in which the breathing was within
    :data:`FOLLOW_WITHIN` of the tempo; None with fewer than :data:`MIN_REPORTS` such."""
    known = [(b, t) for b, t in reports if b is not None and t is not None]
    if len(known) < MIN_REPORTS:
        return None
    return sum(follows(b, t) for b, t in known) / len(known)


def own_calm_rate(reports: Iterable[tuple[float | None, float | None, bool]]) -> float | None:
    """The session's own calm breathing: the median of the reports (breathing, tempo, face
    calm) with the breathing known, the face calm and the breathing not at the tempo; None
    with fewer than :data:`MIN_REPORTS` such."""
    import statistics  # here: with fractions and decimal, ~0.4 MB the daemon rarely needs

    rates = [b for b, t, calm in reports if b is not None and calm and not follows(b, t)]
    return round(statistics.median(rates), 1) if len(rates) >= MIN_REPORTS else None


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
