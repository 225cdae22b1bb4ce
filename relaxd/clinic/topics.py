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
                    {"id": unique, "by": its account, "at": its clock, "desk": its account}
    reply           {"id": the command's id (null: none usable), "ok": true|false, "error": why}

An overview announces itself on ``relaxd/overview/<its broker account>/status`` (retained, with a
last will, and a heartbeat carrying its clock); every bridge republishes its retained topics
when one comes online (at most every few seconds), and learns each desk's clock from it.

Commands from afar only ever lower stimulation (:data:`REMOTE_COMMANDS`): ``stop`` (a software
stop latched as ``clinic-stop``, never an emergency stop), ``calmer``, ``end-gently``, ``hold``
(on only: releasing a hold lets the mood raise the intensity again). Anything else is refused
with a reply; retained or expired commands are refused, repeats (by id) dropped, and each chair
takes at most a few a second. A stop is never refused for its age or limited: late, it only
stops the chair.

Pure logic over time given as arguments; nothing but the standard library and the settings.
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from relaxd.clinic.settings import CHAIR_ID, COMMAND_EXPIRY_S, HEARTBEAT_S, OVERVIEW, PREFIX

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
#: State: continuous values at most this often (and a heartbeat, settings.HEARTBEAT_S).
CONTINUOUS_MIN_S = 1.0
#: A bridge republishes everything (for an overview that came online) at most this often.
REPUBLISH_MIN_S = 5.0
#: A chair whose state was last heard this many heartbeats ago is stale.
STALE_HEARTBEATS = 3
#: The fields of the daemon's state a chair publishes (never names: the child's id only).
STATE_FIELDS = ("state", "scenario", "phase", "phase_left", "intensity", "levels", "estop",
                "estop_pressed", "latch", "latch_causes", "stop_seq", "station_stop", "hold",
                "manual", "waiting", "child", "thermal", "vitals", "tempo", "chest_in_view")
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
    """Strict JSON (a browser's JSON.parse reads it): NaN and infinities become null."""
    return json.dumps(finite(message), separators=(",", ":"), default=str,
                      allow_nan=False).encode()


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def _finite_float(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


def loads(payload: bytes | bytearray | str | None) -> dict[str, Any] | None:
    """A JSON object from a payload; None for anything else (malformed, or nested deeper than
    Python can parse). NaN, Infinity and numbers too large for a float are read as null:
    they are not JSON, and no browser reads them."""
    try:
        message = json.loads(payload or b"", parse_constant=lambda name: None,
                             parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError, TypeError, RecursionError):
        return None
    return message if isinstance(message, dict) and _depth(message) <= MAX_DEPTH else None


#: The deepest nesting a message may have (the deepest the protocol uses is 4).
MAX_DEPTH = 16


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (without recursion)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if level <= MAX_DEPTH:
                todo.extend((v, level + 1) for v in (item.values() if isinstance(item, dict)
                                                     else item))
    return deepest


# --- commands from afar --------------------------------------------------------------------------

#: A command's id: what the overview sends (a uuid's hex), nothing that could fake text.
COMMAND_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
#: Who a stop is from when its ``by`` is no account's name (it is never shown as it came).
UNNAMED = "unnamed"
#: The latest ``at`` a command may carry (seconds since 1970; about the year 5000).
LATEST_AT = 1e11


def is_account_name(name: object) -> bool:
    """An account's name as the accounts' stores take it: 1 to 64 letters, digits, '.', '-'
    and '_' (no spaces, control or direction characters: it is shown and logged as it is)."""
    return isinstance(name, str) and 1 <= len(name) <= 64 \
        and name.replace("-", "").replace("_", "").replace(".", "").isalnum()


@dataclass(frozen=True)
class Vetted:
    """A command from afar, checked: its id, who sent it, and why it is refused (None: carry it
    out). ``id`` None: the message names no usable id (a reply says so with ``"id": null``)."""

    id: str | None
    by: str
    refusal: str | None = None


def vet_command(name: str, payload: bytes, *, retained: bool, expiry: float | None,
                now: float, clocks: DeskClocks | None = None,
                lifetime: float = COMMAND_EXPIRY_S) -> Vetted:
    """Check one command from afar (``name`` from ``cmd/<name>``) before anything else.
    ``now`` is the chair's clock; ``clocks`` how the sending desk's (the command's ``desk``)
    differs from it (a desk not heard yet: the clocks are taken to agree); ``lifetime`` how
    long a command lives (:data:`COMMAND_EXPIRY_S`)."""
    message = loads(payload)
    if message is None:
        return Vetted(None, "", "a command is a JSON object")
    command_id, by = message.get("id"), message.get("by")
    if not isinstance(command_id, str) or not COMMAND_ID.fullmatch(command_id):
        return Vetted(None, "", "a command needs an id (1 to 64 letters, digits, '.', ':', "
                                "'-' or '_')")
    if not isinstance(by, str) or not is_account_name(by):
        if name != "stop":
            return Vetted(command_id, "", "a command names who sent it (by: an account's name)")
        by = UNNAMED  # a stop is never refused for its wording: the safe direction
    offset = clocks.offset(message.get("desk")) if clocks is not None else None
    return Vetted(command_id, by, _refusal(name, message, retained, expiry,
                                           now - (offset or 0.0), lifetime))


def sent_at(message: dict[str, Any]) -> float | None:
    """A message's ``at`` as a time (None: absent); ValueError if it is not a sane one."""
    sent = message.get("at")
    if sent is None:
        return None
    if isinstance(sent, bool) or not isinstance(sent, (int, float)) \
            or not 0 <= sent <= LATEST_AT or not math.isfinite(sent):
        raise ValueError("'at' is not a time (seconds since 1970)")
    return float(sent)


def _refusal(name: str, message: dict[str, Any], retained: bool, expiry: float | None,
             desk_now: float, lifetime: float) -> str | None:
    """Why a command is refused (None: carry it out); ``desk_now`` is the chair's clock read
    as the sending desk's."""
    if retained:
        return "a retained command is never carried out"
    if name not in REMOTE_COMMANDS:
        return (f"{name!r} is not taken from afar: only {', '.join(REMOTE_COMMANDS)} (they only "
                "lower stimulation); start, reset and every change are made at the chair")
    if name == "hold" and message.get("on", True) is not True:
        return "releasing a hold lets the intensity rise: only at the chair"
    if expiry is None or not 0 < expiry <= COMMAND_EXPIRY_S:
        return f"a command carries a message expiry of at most {COMMAND_EXPIRY_S} s"
    try:
        sent = sent_at(message)
    except ValueError as exc:
        return str(exc)
    if name == "stop":
        return None  # the safe direction: a stop is carried out however late, whatever the clocks
    if sent is None:
        return "a command other than stop carries the time it was sent (at)"
    if not -lifetime <= desk_now - sent <= lifetime:
        return f"expired: sent {desk_now - sent:.0f} s ago (a command lives {lifetime:.0f} s)"
    return None


class DeskClocks:
    """What to add to each overview's clock to read it as this chair's, learnt from the
    ``at`` of its presence heartbeats: the smallest difference among the latest ``keep`` (a
    message held up on its way only ever makes the difference larger)."""

    def __init__(self, keep: int = 12, desks: int = 64) -> None:
        self.keep, self.desks = keep, desks
        self._seen: OrderedDict[str, list[float]] = OrderedDict()

    def heard(self, desk: str, message: dict[str, Any], now: float) -> None:
        """A presence message from ``desk`` arrived at ``now`` (this chair's clock)."""
        try:
            sent = sent_at(message)
        except ValueError:
            return
        if sent is None:
            return
        seen = self._seen.pop(desk, [])
        self._seen[desk] = [*seen[-(self.keep - 1):], now - sent]
        while len(self._seen) > self.desks:
            self._seen.popitem(last=False)

    def offset(self, desk: object) -> float | None:
        seen = self._seen.get(desk) if isinstance(desk, str) else None
        return min(seen) if seen else None


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
         now: float, heartbeat: float = HEARTBEAT_S) -> str:
    """The tile of one chair: ``status`` and ``state`` as last received, ``heard`` when the
    state last came (the overview's clock), ``heartbeat`` the chairs' heartbeat."""
    if status is None or not status.get("online"):
        return "lost"
    if not status.get("daemon"):
        return "daemon down"
    if state is None or heard is None or now - heard > STALE_HEARTBEATS * heartbeat:
        return "stale"
    if state.get("latch_causes") or state.get("estop"):
        return "stopped"
    if state.get("state") in ("halted", "paused"):
        return "halted"
    if state.get("state") in _RUNNING:
        return "running"
    return "waiting"
