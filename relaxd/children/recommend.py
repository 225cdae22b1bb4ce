"""Which scenario calms this child: each session scored, the next one chosen by Thompson sampling.

A session's **reward** (0..1) puts calm first: the share of face time read calm (neutral or
positive), raised to the 4th power (:data:`CALM_POWER`: a scenario that leaves the child upset a
fifth of the time earns less than a calm one with no positive time at all), scales a half, up to
0.45 more for positive time (among scenarios that calm a child alike, the one that also makes them
happy must stand out) and 0.05 for calming quickly; less for each reduction, much less for a halt
or an e-stop; the caregiver's observations (``observation`` events: ``calm``, ``upset``) add or
take 0.05 each. Breathing along with the chair's tempo is calm evidence too: the share of the
session's breathing reports at the tempo (:func:`relaxd.control.body.following`) adds up to
:data:`FOLLOWING_WORTH`, scaled by the calm share like positive time; it never makes a session
calm evidence for the face's baseline (``calm_evidence``). A session is **calm** when the child
read calm 70 % of it with no halt or e-stop. Each installed scenario keeps a Beta belief per child
whose prior is the pooled record of all children (worth :data:`PRIOR_WEIGHT` sessions), and each
of the child's own sessions counts as :data:`SESSION_WEIGHT` trials (a virtual child's sessions
with one scenario score alike, so a few of them make a clearly better record win most draws), a
quarter of that once the child's baseline correction has changed since it was played (their face
was read differently then, so a scenario tried before the chair knew the face is soon tried
again); the next session plays the scenario with the highest draw. Cautious: a scenario that
halted this child in each of their last two sessions with it is left out unless a therapist
allowed it again or the child's baseline correction changed since; a pinned scenario is always
chosen, forbidden ones never. Pure: the caller hands in the random generator."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from relaxd.control.body import following, own_calm_rate

CALM_SHARE = 0.7
PRIOR_WEIGHT = 2.0
#: One session counts as this many Bernoulli trials of its reward (sharp beliefs: exploit a
#: record that is clearly best after a few sessions).
SESSION_WEIGHT = 8.0
#: Calm comes first: a session's calm share raised to this power scales all else it earns.
CALM_POWER = 4
BASELINE_CHANGED = 0.05
#: A session played under a baseline correction that has changed since read this child's face
#: differently (a calm face read upset), so it counts this share of a session.
STALE_WEIGHT = 0.25
#: What following the chair's tempo all session adds, inside the calm-scaled part of the
#: reward (calm first still: it adds nothing to an upset session).
FOLLOWING_WORTH = 0.05


@dataclass(frozen=True)
class SessionScore:
    """What one session did for the child."""

    scenario: str
    calm: float = 0.0          # share of face time read neutral or positive
    positive: float = 0.0      # share read positive
    time_to_calm: float | None = None  # s until the first 20 s calm stretch
    reductions: int = 0
    halts: int = 0
    estops: int = 0
    observed_calm: int = 0
    observed_upset: int = 0
    baseline: float = 0.0      # the child's baseline correction when it was played
    observed_misread: int = 0  # the caregiver saw a calm child the chair read otherwise
    following: float | None = None  # share of breathing reports at the chair's tempo (body.following)
    calm_breathing: float | None = None  # the session's own calm breathing (body.own_calm_rate)

    @property
    def calm_evidence(self) -> bool:
        """The session may teach the child's baseline: no e-stop, and either the caregiver
        marked a reading "misread" (they saw this calm face read upset) or it had no halt and
        no "upset" from them."""
        return not self.estops and (self.observed_misread > 0
                                    or not (self.halts or self.observed_upset))

    @property
    def reward(self) -> float:
        quick = 0.0 if self.time_to_calm is None else max(0.0, 1 - self.time_to_calm / 300)
        r = (self.calm ** CALM_POWER * (0.5 + 0.45 * self.positive + 0.05 * quick
                                        + FOLLOWING_WORTH * (self.following or 0.0))
             - 0.05 * self.reductions - 0.3 * self.halts - 0.5 * self.estops
             + 0.05 * (self.observed_calm - self.observed_upset))
        return float(min(1.0, max(0.0, r)))

    @property
    def calmed(self) -> bool:
        """Calm for most of the session, never halted or stopped."""
        return self.calm >= CALM_SHARE and not (self.halts or self.estops)


#: The event types a session's score reads.
SCORED_EVENTS = ("session", "mood", "decision", "estop", "observation", "vitals")


def _breathing(events: Sequence[dict[str, Any]]) -> tuple[float | None, float | None]:
    """(following, own calm rate) from the ``vitals`` events (``breathing``, ``tempo``) and
    the face's mood at each (:mod:`relaxd.control.body`)."""
    mood, reports = None, []
    for e in events:
        if e["type"] == "mood":
            mood = e.get("mood")
        elif e["type"] == "vitals":
            reports.append((e.get("breathing"), e.get("tempo"), mood in ("neutral", "positive")))
    return following((b, t) for b, t, _ in reports), own_calm_rate(reports)


def _mood_spans(events: Sequence[dict[str, Any]], end: float) -> list[tuple[str, float, float]]:
    moods = [(e["t"], e["mood"]) for e in events if e["type"] == "mood"]
    return [(m, t, (moods[i + 1][0] if i + 1 < len(moods) else end))
            for i, (t, m) in enumerate(moods)]


def score_session(events: Sequence[dict[str, Any]], scenario: str = "") -> SessionScore:
    """Score one session from its recorded events (``mood``, ``decision``, ``estop``,
    ``observation`` and the ``session`` start event's ``scenario`` and ``baseline``)."""
    end = max((e["t"] for e in events), default=0.0)
    start = next((e for e in events if e["type"] == "session" and e.get("state") == "start"), {})
    spans = [s for s in _mood_spans(events, end) if s[0] != "no_face"]
    face = sum(b - a for _, a, b in spans) or 1.0
    calm = sum(b - a for m, a, b in spans if m in ("neutral", "positive"))
    first_calm = next((a for m, a, b in spans if m in ("neutral", "positive") and b - a >= 20), None)
    actions = [e.get("action") for e in events if e["type"] == "decision"]
    observed = [e.get("what") for e in events if e["type"] == "observation"]
    follow, calm_rate = _breathing(events)
    return SessionScore(
        scenario or start.get("scenario", ""), calm / face,
        sum(b - a for m, a, b in spans if m == "positive") / face, first_calm,
        actions.count("reduce"), actions.count("halt"),
        sum(1 for e in events if e["type"] == "estop" and e.get("action") == "press"),
        observed.count("calm"), observed.count("upset"), float(start.get("baseline", 0.0)),
        observed.count("misread"), follow, calm_rate)


@dataclass(frozen=True)
class Choice:
    """The recommendation, and why, in words for the caregiver."""

    scenario: str
    why: str
    left_out: tuple[str, ...] = ()


@dataclass
class Belief:
    alpha: float
    beta: float
    played: int = 0
    calmed: int = 0
    history: list[SessionScore] = field(default_factory=list)


def pooled_prior(everyone: Iterable[SessionScore]) -> dict[str, tuple[float, float]]:
    """Per scenario, the Beta prior from all children's sessions (worth PRIOR_WEIGHT sessions)."""
    rewards: dict[str, list[float]] = {}
    for s in everyone:
        rewards.setdefault(s.scenario, []).append(s.reward)
    return {name: (1 + PRIOR_WEIGHT * float(np.mean(r)), 1 + PRIOR_WEIGHT * (1 - float(np.mean(r))))
            for name, r in rewards.items()}


def session_weight(score: SessionScore, baseline_now: float) -> float:
    """How many trials a session counts: fewer once the baseline has changed since."""
    stale = abs(baseline_now - score.baseline) >= BASELINE_CHANGED
    return SESSION_WEIGHT * (STALE_WEIGHT if stale else 1.0)


def beliefs(names: Sequence[str], mine: Sequence[SessionScore],
            prior: dict[str, tuple[float, float]], baseline_now: float = 0.0) -> dict[str, Belief]:
    out = {n: Belief(*prior.get(n, (1.0, 1.0))) for n in names}
    for s in mine:
        if s.scenario in out:
            b, weight = out[s.scenario], session_weight(s, baseline_now)
            b.alpha += weight * s.reward
            b.beta += weight * (1 - s.reward)
            b.played, b.calmed = b.played + 1, b.calmed + s.calmed
            b.history.append(s)
    return out


def banned(belief: Belief, baseline_now: float, allowed: bool) -> bool:
    """Halted the child in each of their last two sessions with it, nothing changed since."""
    last = belief.history[-2:]
    if allowed or len(last) < 2 or not all(s.halts for s in last):
        return False
    return abs(baseline_now - last[-1].baseline) < BASELINE_CHANGED


def recommend(names: Sequence[str], mine: Sequence[SessionScore],
              everyone: Iterable[SessionScore], rng: np.random.Generator, *,
              baseline_now: float = 0.0, pinned: str | None = None,
              forbidden: Sequence[str] = (), allowed_again: Sequence[str] = ()) -> Choice:
    """The next session's scenario among ``names`` (the installed ones, in a fixed order)."""
    if pinned is not None:
        return Choice(pinned, f"{pinned}: pinned by the therapist")
    b = beliefs(names, mine, pooled_prior(everyone), baseline_now)
    left_out = tuple(n for n in names if n in forbidden
                     or banned(b[n], baseline_now, n in allowed_again))
    open_ = [n for n in names if n not in left_out] or [n for n in names if n not in forbidden]
    if not open_:
        raise ValueError("every installed scenario is forbidden for this child")
    draws = {n: rng.beta(b[n].alpha, b[n].beta) for n in open_}
    best = max(open_, key=lambda n: draws[n])
    return Choice(best, explain(best, b[best]), left_out)


def explain(name: str, belief: Belief) -> str:
    if belief.played == 0:
        return f"{name}: not tried yet with this child (trying it)"
    return f"{name}: calm in {belief.calmed} of {belief.played} session(s)"
