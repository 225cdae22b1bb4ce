"""The clinic's MQTT protocol: topics, what a chair publishes, which commands it takes from afar.

Every chair publishes under ``relaxd/<chair>/`` (the chair id is its MQTT user name)::

    status          retained, QoS 1: birth and last will {"online", "daemon", "room", "at"}
    state           retained: {"seq", "at", "state", "scenario", "phase", "levels", "estop",
                    "latch", "latch_causes", "child" (the id only), ...}; discrete changes at
                    once, continuous values at most once a second, a heartbeat
    alerts          retained: the unacknowledged alerts {"alerts": [...]}
    alert           each new alert {"chair", "room", "child", "id", "reason", "detail", "at"}
    event/session   each finished session's summary, stored once by its "id"
    cmd/<name>      from the overview, never retained, MQTT v5 message expiry 10 s:
                    {"id": unique, "by": who, ...}
    reply           {"id": the command's id, "ok": true|false, "error": why}

An overview announces itself on ``relaxd/overview/<name>/status`` (retained, with a last will);
every bridge republishes its retained topics when one comes online.

Commands from afar only ever lower stimulation (:data:`REMOTE_COMMANDS`): ``stop`` (a software
stop latched as ``clinic-stop``, never an emergency stop), ``calmer``, ``end-gently``, ``hold``
(on only: releasing a hold lets the mood raise the intensity again). Anything else is refused
with a reply; retained or expired commands are refused, repeats (by id) dropped, and each chair
takes at most a few a second.

Pure logic over time given as arguments; nothing but the standard library and the settings.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from relaxd.clinic.settings import CHAIR_ID, OVERVIEW, PREFIX

OVERVIEW_STATUS_FILTER = f"{PREFIX}/{OVERVIEW}/+/status"

STATUS, STATE, ALERTS, ALERT, SESSION, REPLY = (
    "status", "state", "alerts", "alert", "event/session", "reply")
CMD = "cmd"

#: A command from afar -> the control socket's command and its arguments.
REMOTE_COMMANDS: dict[str, tuple[str, dict[str, Any]]] = {
    "stop": ("clinic_stop", {}),
    "calmer": ("calmer", {}),
    "end-gently": ("end_gently", {}),
    "hold": ("hold", {"on": True}),
}
#: The MQTT v5 message expiry every command carries, and the longest a command is honoured.
COMMAND_EXPIRY_S = 10
#: State: a heartbeat this often when nothing changes; continuous values at most this often.
HEARTBEAT_S = 5.0
CONTINUOUS_MIN_S = 1.0
#: A chair whose state was last heard this many heartbeats ago is stale.
STALE_HEARTBEATS = 3
#: The fields of the daemon's state a chair publishes (never names: the child's id only).
STATE_FIELDS = ("state", "scenario", "phase", "phase_left", "intensity", "levels", "estop",
                "estop_pressed", "latch", "latch_causes", "stop_seq", "station_stop", "hold",
                "manual", "waiting", "child", "thermal")
#: The fields whose change is published at once; the others at most once a second.
DISCRETE_FIELDS = ("state", "scenario", "phase", "estop", "estop_pressed", "latch_causes",
                   "stop_seq", "hold", "manual", "waiting", "child")


def topic(chair: str, leaf: str) -> str:
    return f"{PREFIX}/{chair}/{leaf}"


def overview_status(name: str) -> str:
    return f"{PREFIX}/{OVERVIEW}/{name}/status"


def split_topic(name: str) -> tuple[str, str] | None:
    """``relaxd/<chair>/<leaf>`` -> (chair, leaf); None for anything else (overviews, and
    names no chair may have, such as the overview's and viewers' accounts)."""
    parts = name.split("/", 2)
    if len(parts) != 3 or parts[0] != PREFIX or parts[1] == OVERVIEW \
            or not CHAIR_ID.fullmatch(parts[1]):
        return None
    return parts[1], parts[2]


def dumps(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), default=str).encode()


def loads(payload: bytes | bytearray | str | None) -> dict[str, Any] | None:
    """A JSON object from a payload; None for anything else."""
    try:
        message = json.loads(payload or b"")
    except (ValueError, UnicodeDecodeError, TypeError):
        return None
    return message if isinstance(message, dict) else None


# --- commands from afar --------------------------------------------------------------------------

@dataclass(frozen=True)
class Vetted:
    """A command from afar, checked: its id, who sent it, and why it is refused (None: carry it
    out). ``id`` None: no reply can name it."""

    id: str | None
    by: str
    refusal: str | None = None


def vet_command(name: str, payload: bytes, *, retained: bool, expiry: float | None,
                now: float) -> Vetted:
    """Check one command from afar (``name`` from ``cmd/<name>``) before anything else."""
    message = loads(payload)
    if message is None:
        return Vetted(None, "", "a command is a JSON object")
    command_id, by = message.get("id"), message.get("by")
    if not isinstance(command_id, str) or not 1 <= len(command_id) <= 64:
        return Vetted(None, "", "a command needs an id (1 to 64 characters)")
    if not isinstance(by, str) or not 1 <= len(by) <= 64:
        return Vetted(command_id, "", "a command names who sent it (by)")
    return Vetted(command_id, by, _refusal(name, message, retained, expiry, now))


def _refusal(name: str, message: dict[str, Any], retained: bool, expiry: float | None,
             now: float) -> str | None:
    if retained:
        return "a retained command is never carried out"
    if name not in REMOTE_COMMANDS:
        return (f"{name!r} is not taken from afar: only {', '.join(REMOTE_COMMANDS)} (they only "
                "lower stimulation); start, reset and every change are made at the chair")
    if name == "hold" and message.get("on", True) is not True:
        return "releasing a hold lets the intensity rise: only at the chair"
    if expiry is None or not 0 < expiry <= COMMAND_EXPIRY_S:
        return f"a command carries a message expiry of at most {COMMAND_EXPIRY_S} s"
    sent = message.get("at")
    if isinstance(sent, (int, float)) and not isinstance(sent, bool) \
            and not -COMMAND_EXPIRY_S <= now - sent <= COMMAND_EXPIRY_S:
        return f"expired: sent {now - sent:.0f} s ago (a command lives {COMMAND_EXPIRY_S} s)"
    return None


class SeenIds:
    """The ids of the latest commands, to drop repeats (a bounded memory)."""

    def __init__(self, keep: int = 1024) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._keep = keep

    def repeat(self, command_id: str) -> bool:
        """True if ``command_id`` was seen before; remembers it otherwise."""
        if command_id in self._ids:
            return True
        self._ids[command_id] = None
        while len(self._ids) > self._keep:
            self._ids.popitem(last=False)
        return False


class RateLimit:
    """A token bucket: ``burst`` commands at once, then one every ``every`` seconds."""

    def __init__(self, burst: int = 5, every: float = 2.0) -> None:
        self.burst, self.every = burst, every
        self._tokens, self._at = float(burst), None  # type: float, float | None

    def allow(self, now: float) -> bool:
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) / self.every)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


# --- what a chair publishes ----------------------------------------------------------------------

def chair_state(snapshot: dict[str, Any], seq: int, room: str) -> dict[str, Any]:
    """The ``state`` message from the daemon's snapshot: its published fields, a sequence
    number, the chair's clock (``at``) and room."""
    return {"seq": seq, "at": snapshot.get("at"), "room": room,
            **{k: snapshot.get(k) for k in STATE_FIELDS}}


def discrete(snapshot: dict[str, Any]) -> tuple[Any, ...]:
    """What must go out at once when it changes."""
    return tuple(json.dumps(snapshot.get(k), sort_keys=True) for k in DISCRETE_FIELDS)


def unacknowledged(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in snapshot.get("alerts") or [] if not a.get("acknowledged")]


def alert_message(alert: dict[str, Any], chair: str, room: str,
                  child: str | None) -> dict[str, Any]:
    """One alert for the clinic: with the chair, its room and the child's id (never a name)."""
    return {"chair": chair, "room": room, "child": child, "id": alert.get("id"),
            "reason": alert.get("reason"), "detail": alert.get("detail"), "at": alert.get("at")}


# --- what the overview shows ---------------------------------------------------------------------

#: A tile's look: what the chair is doing, as the overview reads it.
TILES = ("running", "halted", "stopped", "waiting", "daemon down", "lost", "stale")
_RUNNING = ("running", "reduced", "fading")


def tile(status: dict[str, Any] | None, state: dict[str, Any] | None, heard: float | None,
         now: float) -> str:
    """The tile of one chair: ``status`` and ``state`` as last received, ``heard`` when the
    state last came (the overview's clock)."""
    if status is None or not status.get("online"):
        return "lost"
    if not status.get("daemon"):
        return "daemon down"
    if state is None or heard is None or now - heard > STALE_HEARTBEATS * HEARTBEAT_S:
        return "stale"
    if state.get("latch_causes") or state.get("estop"):
        return "stopped"
    if state.get("state") in ("halted", "paused"):
        return "halted"
    if state.get("state") in _RUNNING:
        return "running"
    return "waiting"
