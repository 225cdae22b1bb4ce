"""``relaxd children show ID``: a child's profile in words, for the caregiver and therapist."""

from __future__ import annotations

from datetime import date
from typing import Any

from relaxd.children.recommend import SCORED_EVENTS, SessionScore, score_session
from relaxd.children.store import Child, ChildStore
from relaxd.control.body import CALM_BOUNDS, age_from_birth_year, calm_breathing, default_calm_breathing

_CALM, _UPSET = ("neutral", "positive"), ("negative",)


def agreement(events: list[dict[str, Any]]) -> tuple[int, int]:
    """(agreed, observed): the caregiver's ``observation`` events (``calm``, ``upset``,
    ``misread``) against relaxd's mood at that moment."""
    mood, agreed, seen = None, 0, 0
    for e in events:
        if e["type"] == "mood":
            mood = e.get("mood")
        elif e["type"] == "observation" and e.get("what") in ("calm", "upset", "misread"):
            seen += 1
            want = {"calm": _CALM, "upset": _UPSET}.get(e["what"], ())
            agreed += mood in want
    return agreed, seen


def _limits(child: Child) -> str:
    lim = child.limits
    parts = [f"{k} <= {v:g}" for k, v in (("light", lim.light), ("audio", lim.audio),
                                          ("vibration", lim.vibration)) if v is not None]
    parts += ["no pulsing light"] if lim.no_pulse else []
    parts += [f"session <= {lim.session_min:g} min"] if lim.session_min else []
    parts += [f"<= {lim.daily_min:g} min a day"] if lim.daily_min else []
    parts += [f"pinned: {lim.pinned}"] if lim.pinned else []
    parts += [f"forbidden: {', '.join(lim.forbidden)}"] if lim.forbidden else []
    parts += [f"allowed again: {', '.join(lim.allowed_again)}"] if lim.allowed_again else []
    return "; ".join(parts) or "the installation's"


def breathing_line(child: Child, year: int | None = None) -> str:
    """The calm breathing rate the chair compares the child's breathing with, and whence."""
    age = age_from_birth_year(child.birth_year, year or date.today().year)
    default = default_calm_breathing(age)
    whence = (f"the age default for born {child.birth_year}" if age is not None
              else "the adult default: birth year not recorded")
    learned = child.learned.get("calm_breathing")
    if learned is None:
        return f"  calm breathing: {default:.0f} / min ({whence}; not learned yet)"
    low, high = (f * default for f in CALM_BOUNDS)
    return (f"  calm breathing: {calm_breathing(learned, age):.1f} / min (learned from calm "
            f"sessions, kept within {low:.0f}..{high:.0f} around {whence}, {default:.0f})")


def _following(ss: list[SessionScore]) -> str:
    known = [s.following for s in ss if s.following is not None]
    return f", followed the tempo {sum(known) / len(known):.0%}" if known else ""


def scenario_lines(scores: list[SessionScore]) -> list[str]:
    by: dict[str, list[SessionScore]] = {}
    for s in scores:
        by.setdefault(s.scenario, []).append(s)
    return [f"  {name:<20} calm in {sum(s.calmed for s in ss)} of {len(ss)}, "
            f"mean calm {sum(s.calm for s in ss) / len(ss):.0%}, halts "
            f"{sum(s.halts for s in ss)}, reductions {sum(s.reductions for s in ss)}, "
            f"e-stops {sum(s.estops for s in ss)}{_following(ss)}"
            for name, ss in sorted(by.items())]


def describe(store: ChildStore, child: Child) -> str:
    sessions = store.sessions(child.id, SCORED_EVENTS)
    scores = [score_session(s["events"], s["scenario"]) for s in sessions]
    agreed = [agreement(s["events"]) for s in sessions]
    ok, seen = sum(a for a, _ in agreed), sum(n for _, n in agreed)
    lines = [f"child {child.id}: {child.name}" + (" (real name)" if child.real_name
                                                  else " (pseudonym)"),
             f"  born {child.birth_year}" if child.birth_year else "  birth year not recorded",
             f"  consent: {child.consent_line()}",
             f"  retention: sessions older than {child.retention_days} days are deleted",
             f"  limits: {_limits(child)}",
             f"  baseline correction: p(negative) - {child.learned.get('baseline', 0.0):.2f} "
             f"(at most 0.30; strong negatives never corrected)",
             breathing_line(child),
             "  agreement with the caregiver: "
             + (f"{ok} of {seen} observations ({ok / seen:.0%})" if seen else "no observations"),
             f"  sessions: {len(sessions)}"
             + (f", last {sessions[-1]['started']}: {sessions[-1]['scenario']} "
                f"({sessions[-1]['why']})" if sessions else "")]
    if child.notes:
        lines.insert(2, f"  notes: {child.notes}")
    if scores:
        lines += ["  scenarios:"] + scenario_lines(scores)
    return "\n".join(lines)
