"""What the station says about the chair, in a caregiver's words: one banner per state (its
colour, what happened, the next step), each alert in plain words naming the child, a refused
Start without shell commands, a manual limit, a session's outcome.

Pure functions of the daemon's published state (and the child's name, which only the station
shows: logs and alerts sent out carry the id alone). ``kind`` picks the banner's colour in
``static/station.css``.
"""

from __future__ import annotations

import re
from typing import Any

#: The latch causes the station's Start clears (the daemon's arbiter decides; these words follow).
STATION_CAUSES = frozenset({"station-stop", "clinic-stop"})
PLAYING = ("running", "reduced", "halted", "paused", "fading")
#: A shell command in a message meant for a terminal: "(relaxd children set ada ...)".
_SHELL = re.compile(r"\s*\((?:sudo |relaxd )[^)]*\)")
CLINIC_STOP = "Stopped from the clinic desk — not an emergency stop."


def banner(state: dict[str, Any], name: str) -> dict[str, str]:
    """The banner for the chair's state: ``{"kind", "title", "next"}``; ``name`` is the child
    ("the child" when none is known)."""
    Name = _capital(name)
    if state.get("connected") is False or state.get("state") == "offline":
        return _b("offline", "The chair's daemon is not answering: the numbers are not live.",
                  "The red button on the chair still stops it. Check the chair.")
    if state.get("estop") or state.get("state") == "estopped":
        return _stopped(state, name)
    kind = str(state.get("state") or "")
    if state.get("manual") and kind in ("running", "reduced"):
        return _b("manual", "MANUAL — camera off: you set the intensity.",
                  f"Use − and + to suit {name}; End gently or STOP to finish.")
    words = {
        "running": ("running", "Running: " + str(state.get("scenario") or ""),
                    f"Watch {name}; Calmer or Hold if needed."),
        "reduced": ("running", "Running, calmer: " + str(state.get("scenario") or ""),
                    f"{Name} seemed unsettled, so it went calmer. Watch {name}."),
        "halted": ("halted", "HALTED — everything is off.",
                   f"Check on {name}: it starts again gently once {name} is calm, "
                   "or End gently to finish."),
        "paused": ("halted", f"PAUSED — {name} is not seen.",
                   f"Is {name} still in the chair? It goes on when {name} is back; "
                   "End gently to finish."),
        "fading": ("running", "Ending gently: the outputs fade out.", "Nothing to do."),
        "ended": ("ended", "Session ended.", f"Start a new session when {name} is ready."),
    }
    if state.get("just_ended") and kind == "idle":
        kind = "ended"
    if kind in words:
        return _b(*words[kind])
    if state.get("waiting") or kind == "idle":
        return _b("waiting", "Waiting for Start: everything is off.",
                  "Choose the child and what to play below, then Start.")
    return _b("waiting", str(kind), "")


def _stopped(state: dict[str, Any], name: str) -> dict[str, str]:
    causes = set(state.get("latch_causes") or [])
    if state.get("estop_pressed"):
        return _b("estop", "E-STOP PRESSED — everything is off.",
                  f"Check on {name}. Twist the e-stop free, hold the reset button at the chair, "
                  "then Start.")
    if causes == {"clinic-stop"}:
        return _b("clinic", CLINIC_STOP, f"Check on {name}, then Start again.")
    if causes and causes <= STATION_CAUSES:
        return _b("stopped", "STOPPED from the station — everything is off.",
                  f"Check on {name}, then Start again for a new session.")
    held = state.get("latch") or "an emergency stop"
    return _b("estop", f"STOPPED — {held}; everything is off.",
              f"Check on {name}, then hold the reset button at the chair; then Start.")


def _b(kind: str, title: str, next_step: str) -> dict[str, str]:
    return {"kind": kind, "title": title, "next": next_step}


def _capital(name: str) -> str:
    return name[:1].upper() + name[1:]


def alert_words(alert: dict[str, Any], name: str) -> str:
    """One alert in plain words naming the child, with the next step."""
    reason, detail = str(alert.get("reason") or ""), str(alert.get("detail") or "")
    Name = _capital(name)
    if reason == "halt" and detail.startswith("the chair is too hot"):
        reason = "hot"
    if reason == "halt":
        seen = detail.split("; face calm")[0] if "; face calm" in detail else ""
        what = (f"{Name} was {seen} while the face looked calm" if seen
                else f"{Name} seemed very upset")
        return (f"{what}; everything was stopped. Check on {name}: it starts again gently once "
                f"{name} is calm, or end the session.")
    if reason == "estop":
        return _estop_words(detail, name)
    words = {
        "clinic-stop": f"{CLINIC_STOP} Check on {name}, then Start again.",
        "pause": f"{Name}'s face was not seen: {name} may have left the chair; everything was "
                 f"paused. Check on {name}.",
        "camera": f"The camera stopped working; everything was paused. Check on {name} "
                  "and the camera.",
        "hot": "The chair got too hot; everything is off. Start again once it has cooled.",
        "stalled": f"The chair's program stalled; everything was stopped. Check on {name}, "
                   "then hold the reset button at the chair.",
        "fault": f"A fault stopped the chair ({_SHELL.sub('', detail)}). Check on {name}, then "
                 "hold the reset button at the chair.",
    }
    return words.get(reason, f"{reason}: {_SHELL.sub('', detail)}")


def _estop_words(detail: str, name: str) -> str:
    by = re.search(r"station stop by ([^)]*)\)", detail)
    if by:
        return (f"STOP was pressed at the station ({by.group(1)}); everything is off. "
                f"Check on {name}, then Start again.")
    if detail.startswith("still latched"):
        return (f"The chair was stopped before it restarted; everything stays off. Check on "
                f"{name}, then hold the reset button at the chair.")
    return (f"The emergency stop on the chair was pressed; everything is off. Check on {name}, "
            "twist it free, then hold the reset button at the chair.")


def refusal_words(error: str, child_id: str | None, name: str) -> str:
    """A refused Start (or command) for the station: no shell commands, the child by name."""
    text = _SHELL.sub("", error).strip()
    if child_id:
        text = re.sub(rf"\bchild '?{re.escape(child_id)}'?:?", _capital(name) + ":", text)
    if "no guardian consent" in text:
        return f"{_capital(name)} has no guardian consent recorded: a therapist records it first."
    if "consent covers manual mode only" in text:
        return (f"{_capital(name)}'s consent covers manual mode only: tick "
                "“manual: no camera”, or ask a therapist.")
    if "came after this Start" in text:
        return f"A STOP came after you pressed Start: not started. Check on {name} first."
    return text[:1].upper() + text[1:]


def limit_words(steps: int, before: Any, after: Any, name: str) -> str:
    """A manual step's outcome from the intensity before and after it: "At Ada's maximum"
    when it did not move, else the new intensity."""
    if not isinstance(after, (int, float)):
        return "Done."
    if isinstance(before, (int, float)) and abs(after - before) < 1e-6:
        whose = f"{name}'s" if name != "the child" else "the"
        bound = "maximum" if steps > 0 else "minimum"
        return f"At {whose} {bound} ({after:.2f}): it goes no further."
    return f"Intensity {after:.2f}."


def session_outcome(info: dict[str, Any], running: bool) -> str:
    """How a recorded session ended, for History."""
    if running:
        return "still running"
    parts = []
    if info.get("estops"):
        parts.append("stopped" if info["estops"] == 1 else f"stopped {info['estops']}×")
    if info.get("alerts"):
        parts.append(f"{info['alerts']} alert" + ("s" if info["alerts"] != 1 else ""))
    if not info.get("ended"):
        parts.append("not closed (the chair stopped or restarted)")
    return ", ".join(parts) or "ended"


def present(view: dict[str, Any], names: dict[str, str],
            alert_children: dict[int, str | None] | None = None) -> dict[str, Any]:
    """The daemon's state for a browser: with the child's name, the banner, and each alert in
    words naming its child. ``alert_children`` remembers each alert's child from the state it
    first appeared in (filled here); an alert raised before that session began names none."""
    child = view.get("child")
    name = names.get(child) if isinstance(child, str) else None
    label = name or "the child"
    began = _session_began(view)
    whose = alert_children if alert_children is not None else {}
    alerts = []
    for alert in view.get("alerts") or []:
        if alert.get("id") not in whose:
            ours = began is not None and float(alert.get("at") or 0) >= began
            whose[alert.get("id")] = child if ours and isinstance(child, str) else None
        of = whose[alert.get("id")]
        alerts.append({**alert, "child": of,
                       "words": alert_words(alert, names.get(of, "the child") if of else
                                            "the child")})
    for gone in set(whose) - {a.get("id") for a in view.get("alerts") or []}:
        del whose[gone]  # the chair no longer lists it
    return {**view, "child_name": name, "banner": banner(view, label), "alerts": alerts,
            "body": body_words(view, name or "Child")}


def body_words(view: dict[str, Any], name: str) -> dict[str, str] | None:
    """The breathing indicator's words: the child's breathing rate beside the chair's tempo
    ("Ada 9 / min · chair 7 / min"), the pulse (a trend with its quality, never an alarm) and
    movement; "unknown" where the camera cannot tell. None when there is neither a tempo nor
    body readings (the daemon publishes ``vitals`` only where it reads the body)."""
    breath, measured = view.get("breath"), "vitals" in view
    if not breath and not measured:
        return None
    chair = f"chair {_rate(breath.get('bpm'))} / min" if breath else "chair off"
    if not measured:
        return {"breathing": chair, "pulse": "", "movement": ""}
    vitals = view.get("vitals") or {}
    quality = vitals.get("quality") or {}
    child = _rate(vitals.get("breathing"), whole=True)
    if child == "unknown" and view.get("chest_in_view") is False:
        child = "unknown (chest out of the camera's view)"
    pulse = _rate(vitals.get("pulse"), whole=True)
    if pulse != "unknown":
        pulse += f" / min (quality {_percent(quality.get('pulse'))})"
    return {"breathing": f"{name} {child}{'' if child.startswith('unknown') else ' / min'} · {chair}",
            "pulse": pulse, "movement": _movement(vitals.get("movement"))}


def _rate(value: Any, whole: bool = False) -> str:
    """A rate a minute as read at a glance (the chair's tempo keeps its half breaths)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        return "unknown"
    return f"{value:.0f}" if whole or abs(value - round(value)) < 0.05 else f"{value:.1f}"


def _percent(value: Any) -> str:
    return f"{100 * value:.0f} %" if isinstance(value, (int, float)) else "unknown"


def _movement(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "unknown"
    word = "still" if value < 0.3 else "some movement" if value < 0.6 else "restless"
    return f"{word} ({value:.1f})"


def _session_began(view: dict[str, Any]) -> float | None:
    """When the current session began (wall clock; 2 s early for rounding), if known."""
    try:
        return float(view["at"]) - float(view["t"]) - 2.0
    except (KeyError, TypeError, ValueError):
        return None
