"""The control socket's wire protocol, shared by the daemon and the caregiver station.

The station (:mod:`relaxd.station`) is a separate process; it talks to the daemon over a unix
socket (mode 0660, so the station's group may use it) with newline-delimited JSON, one object
a line. Every message is a plain JSON object, so a later bridge to a message broker can publish
the same ``state`` messages on a topic and carry the same commands::

    -> {"id": 1, "cmd": "subscribe"}                    state pushed on every change:
    <- {"type": "state", "state": {...}}                  (see ControlLink.snapshot)
    -> {"id": 2, "cmd": "state"}
    <- {"id": 2, "ok": true, "state": {...}}
    -> {"id": 3, "cmd": "stop", "by": "ana"}            the e-stop's software path, at once
    <- {"id": 3, "ok": true, "stop_seq": 7}               the number of the stop it made
    -> {"id": 5, "cmd": "stop", "by": "ana", "for_stop": 6}   a retry of a STOP pressed at 6:
    <- {"id": 5, "ok": true, "stop_seq": 7, "already": true}  a newer stop still holds the chair
    -> {"id": 4, "cmd": "start", "scenario": "calm-blue-waves", "by": "ana", "after_stop": 7}
    <- {"id": 4, "ok": false, "error": "the e-stop is pressed down: ..."}

Commands: ``stop``, ``start`` (``scenario``: a name or ``auto``, ``child``: an id, ``manual``;
answered with the ``scenario`` chosen, ``why`` and the ``child``), ``ack`` (``alert``), ``calmer``,
``hold`` (``on``), ``end_gently``, ``nudge`` (``steps``: manual mode), ``observe`` (``what``:
calm, upset, misread), ``audit`` (``action``, ``detail``: recorded for the station). Each may
carry ``by`` (who), recorded with it. Queries answered on the connection's thread: ``children``
(the profiles for the Start screen) and ``recommend`` (``child``: what ``auto`` would play).

Stops and starts: every stop has a number, ``stop_seq`` (a newer stop, a higher number). Each
queued command is bound to a stop number as it arrives: the ``after_stop`` it names (a whole
number, at most the newest stop's), else the newest stop's at that moment. The loop refuses a
Start (or a reset) once a newer stop exists, so a Start sent just before another station's STOP
never undoes that STOP.


Timing: the daemon answers every command within :data:`LONGEST_ANSWER_S` (or says it was not
carried out); a client waits longer than that before it gives up, and hangs up when it does (a
command whose client hung up is never carried out).

Imports nothing but the standard library: the station's process imports it.
"""

from __future__ import annotations

import json
from typing import Any

MAX_LINE = 64 * 1024
#: A command the loop has not claimed by then (from its arrival) is cancelled.
ANSWER_TIMEOUT_S = 3.0
#: How much longer a command the loop has claimed is waited for.
CLAIMED_GRACE_S = 2.0
#: The longest the server takes to answer a command (its preparation aside: a command prepared
#: for longer than ANSWER_TIMEOUT_S is not carried out). A client waits longer than this.
LONGEST_ANSWER_S = ANSWER_TIMEOUT_S + CLAIMED_GRACE_S
#: Every e-stop source of a stop from the station starts with this.
STATION_STOP = "station stop"
#: The caregiver's one-tap observations.
OBSERVATIONS = ("calm", "upset", "misread")


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, separators=(",", ":"), default=str) + "\n").encode()


def decode(line: bytes) -> dict[str, Any]:
    """One protocol line as a dict; ValueError with a one-line reason otherwise."""
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ValueError("a message must be a JSON object")
    return message


class CommandRefused(Exception):
    """A command the chair will not carry out now; the message says why (one line)."""
