"""The daemon's control socket: live state out, caregivers' commands in (the caregiver station).

The station (:mod:`relaxd.station`) is a separate process; it talks to the daemon over a unix
socket (mode 0660, so the station's group may use it) with newline-delimited JSON, one object
a line. Every message is a plain JSON object, so a later bridge to a message broker can publish
the same ``state`` messages on a topic and carry the same commands::

    -> {"id": 1, "cmd": "subscribe"}                    state pushed on every change:
    <- {"type": "state", "state": {...}}                  (see ControlLink.snapshot)
    -> {"id": 2, "cmd": "state"}
    <- {"id": 2, "ok": true, "state": {...}}
    -> {"id": 3, "cmd": "stop", "by": "ana"}            the e-stop's software path, at once
    <- {"id": 3, "ok": true}
    -> {"id": 4, "cmd": "start", "scenario": "calm-blue-waves", "by": "ana"}
    <- {"id": 4, "ok": false, "error": "the e-stop is pressed down: ..."}

Commands: ``stop``, ``start`` (``scenario``: a name or ``auto``, ``child``: an id, ``manual``;
answered with the ``scenario`` chosen, ``why`` and the ``child``), ``ack`` (``alert``), ``calmer``,
``hold`` (``on``), ``end_gently``, ``nudge`` (``steps``: manual mode), ``observe`` (``what``:
calm, upset, misread), ``audit`` (``action``, ``detail``: recorded for the station). Each may
carry ``by`` (who), recorded with it. Queries answered on the connection's thread: ``children``
(the profiles for the Start screen) and ``recommend`` (``child``: what ``auto`` would play).

Safety: the loop never waits on the socket. ``stop`` runs on the connection's own thread and
calls :meth:`EmergencyStop.trigger` directly (every output 0 at once, latched, recorded), so it
works while the loop is busy. Every other command is queued and carried out by the loop at its
next tick (``obey``); ``publish`` only stores the new state under a lock. A client that stops
reading is dropped after :data:`SEND_TIMEOUT_S`; at most :data:`MAX_CLIENTS` at once.

Imports nothing heavy: the station imports this module for the protocol.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

log = logging.getLogger(__name__)

MAX_CLIENTS = 8
MAX_LINE = 64 * 1024
SEND_TIMEOUT_S = 5.0
ANSWER_TIMEOUT_S = 3.0  # a queued command the loop has not carried out by then is answered late
MAX_COMMANDS_PER_TICK = 8
#: Every e-stop source of a stop from the station starts with this.
STATION_STOP = "station stop"
OBSERVATIONS = ("calm", "upset", "misread")
KEPT_ALERTS = 50


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


@dataclass
class Command:
    """A queued command and the loop's answer to it."""

    name: str
    args: dict[str, Any]
    after_stop: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    answer: dict[str, Any] = field(default_factory=dict)

    def claim(self) -> bool:
        return True

    def finish(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.done.set()


# --- the socket ------------------------------------------------------------------------------

class ControlServer:
    """The unix socket: one thread a connection; ``stop`` handled on it, the rest queued."""

    def __init__(self, path: str | Path, stop: Callable[[str], int], mode: int = 0o660, *,
                 direct: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] | None = None,
                 prepare: Callable[[Command], None] | None = None,
                 stop_seq: Callable[[], int] = lambda: 0) -> None:
        self.path = Path(path)
        self._stop_seq = stop_seq
        #: Queries answered on the connection's thread (they never touch the loop's parts).
        self._direct = direct or {}
        #: Called on the connection's thread before a command is queued (slow lookups there,
        #: not in the loop); raises CommandRefused to answer at once.
        self._prepare = prepare
        if len(os.fsencode(self.path)) > 107:
            from relaxd.errors import RelaxdError
            raise RelaxdError("control socket path longer than 107 bytes", self.path)
        self._stop_chair = stop
        self._commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._changed = threading.Condition()
        self._state: dict[str, Any] = {}
        self._version = 0
        self._closed = False
        self._clients = threading.BoundedSemaphore(MAX_CLIENTS)
        self.path.unlink(missing_ok=True)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(self.path))
        os.chmod(self.path, mode)
        self._sock.listen(MAX_CLIENTS)
        self._thread = threading.Thread(target=self._accept, name="control-accept", daemon=True)
        self._thread.start()

    def publish(self, state: dict[str, Any]) -> None:
        """The loop's side: store the new state (never blocks on a client)."""
        with self._changed:
            self._state, self._version = state, self._version + 1
            self._changed.notify_all()

    def take(self, limit: int = MAX_COMMANDS_PER_TICK) -> list[Command]:
        """The loop's side: the commands queued since the last tick."""
        out = []
        while len(out) < limit:
            try:
                out.append(self._commands.get_nowait())
            except queue.Empty:
                break
        return out

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        try:
            self._sock.close()
        finally:
            self.path.unlink(missing_ok=True)

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            if not self._clients.acquire(blocking=False):
                _send_quietly(conn, {"ok": False, "error": "too many clients"})
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), name="control-client",
                             daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(SEND_TIMEOUT_S)
            for line in _lines(conn):
                if not self._answer(conn, line):
                    return
        except OSError:
            pass
        except Exception:  # noqa: BLE001 - one bad client never takes the server down
            log.exception("control client failed")
        finally:
            conn.close()
            self._clients.release()

    def _answer(self, conn: socket.socket, line: bytes) -> bool:
        """Answer one line; False once the connection has become a subscription (ended)."""
        try:
            message = decode(line)
            name = str(message.get("cmd", ""))
        except ValueError as exc:
            conn.sendall(encode({"ok": False, "error": str(exc)}))
            return True
        reply: dict[str, Any] = {"id": message["id"]} if "id" in message else {}
        if name == "subscribe":
            self._push(conn)
            return False
        if name == "state":
            with self._changed:
                reply.update(ok=True, state=self._state)
        elif name == "stop":
            reply.update(ok=True, stop_seq=self._stop_chair(str(message.get("by") or "station")))
        elif name in self._direct:
            reply.update(self._direct[name](message))
        else:
            after_stop = message.get("after_stop", self._stop_seq())
            if not isinstance(after_stop, int) or after_stop < 0:
                reply.update(ok=False, error="after_stop must be a stop number (0 or more)")
            else:
                reply.update(self._queue(Command(name, message, after_stop=after_stop)))
        conn.sendall(encode(reply))
        return True

    def _queue(self, command: Command) -> dict[str, Any]:
        """Prepare the command here, then hand it to the loop and wait for its answer."""
        try:
            if self._prepare is not None:
                self._prepare(command)
        except CommandRefused as exc:
            return {"ok": False, "error": str(exc)}
        self._commands.put(command)
        if command.done.wait(ANSWER_TIMEOUT_S):
            return command.answer
        return {"ok": False, "error": "the chair did not answer in time"}

    def _push(self, conn: socket.socket) -> None:
        """Send the state on every change until the client goes (or stops reading)."""
        seen = -1
        while True:
            with self._changed:
                self._changed.wait_for(lambda seen=seen: self._closed or self._version != seen,
                                       timeout=1.0)
                if self._closed:
                    return
                state, changed, seen = self._state, self._version != seen, self._version
            if changed:
                conn.sendall(encode({"type": "state", "state": state}))


def _lines(conn: socket.socket) -> Iterable[bytes]:
    """The lines a client sends; a line longer than MAX_LINE ends the connection."""
    buffer = b""
    while True:
        try:
            chunk = conn.recv(4096)
        except socket.timeout:
            continue
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line
        if len(buffer) > MAX_LINE:
            _send_quietly(conn, {"ok": False, "error": "line too long"})
            return


def _send_quietly(conn: socket.socket, message: dict[str, Any]) -> None:
    try:
        conn.sendall(encode(message))
    except OSError:
        pass


# --- alerts ----------------------------------------------------------------------------------

class AlertBoard:
    """The caregiver's alerts until acknowledged.

    An :class:`relaxd.events.EventLog` sink: it sees every ``alert`` event as the alerter
    records it (on its thread; it only appends, under a lock).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._alerts: list[dict[str, Any]] = []
        self._next_id = 1

    def write(self, event: dict[str, Any]) -> None:
        if event["type"] == "alert":
            with self._lock:
                self._alerts.append({"id": self._next_id, "t": event["t"], "at": time.time(),
                                     "reason": event.get("reason", ""),
                                     "detail": event.get("detail", ""), "acknowledged": False})
                self._next_id += 1
                del self._alerts[:-KEPT_ALERTS]

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def ack(self, alert_id: int) -> bool:
        """Acknowledge one alert; True when none is left unacknowledged."""
        with self._lock:
            found = [a for a in self._alerts if a["id"] == alert_id]
            if not found:
                raise CommandRefused(f"no alert {alert_id}")
            found[0]["acknowledged"] = True
            return not any(not a["acknowledged"] for a in self._alerts)

    def listing(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(a) for a in self._alerts]


# --- inputs ----------------------------------------------------------------------------------

class StayUp:
    """An input that never ends the session: after the inner one ends, an empty seat.

    ``relaxd --simulate --ui``: the chair stays up, idle, after a script or video ends, so the
    next session can be started from the station.
    """

    exhausted = False

    def __init__(self, inner: Any) -> None:
        self.inner, self.scripted, self._ended = inner, inner.scripted, False

    def read(self, t: float) -> Any:
        from relaxd.controller import MoodSample
        from relaxd.inputs import Sensed
        from relaxd.labels import Mood

        if not self._ended:
            sensed = self.inner.read(t)
            if sensed is not None:
                return sensed
            self._ended = True
        return Sensed(MoodSample(Mood.NO_FACE, 0.0))

    def close(self) -> None:
        self.inner.close()


class ManualInput:
    """Manual mode: no camera, no mood. The camera's input is kept, unread, for the next
    session that uses it."""

    scripted = False
    exhausted = False

    def __init__(self, camera: Any) -> None:
        self.camera = camera

    def read(self, t: float) -> Any:
        from relaxd.controller import MoodSample
        from relaxd.inputs import Sensed
        from relaxd.labels import Mood

        return Sensed(MoodSample(Mood.NEUTRAL, 0.0))

    def close(self) -> None:
        self.camera.close()


def find_scenario(name: str, dirs: Iterable[Path]) -> Path:
    """The scenario file called ``name`` (with or without .yaml) in the first of ``dirs``."""
    stem = Path(name).name.removesuffix(".yaml")
    if not stem or stem != name.removesuffix(".yaml"):
        raise CommandRefused(f"no scenario {name!r}")
    for folder in dirs:
        path = Path(folder) / f"{stem}.yaml"
        if path.is_file():
            return path
    raise CommandRefused(f"no scenario {name!r}")


def scenario_files(dirs: Iterable[Path]) -> dict[str, Path]:
    """Every scenario by name (its file's stem); an earlier folder wins."""
    found: dict[str, Path] = {}
    for folder in dirs:
        for path in sorted(Path(folder).glob("*.yaml")) if Path(folder).is_dir() else ():
            found.setdefault(path.stem, path)
    return found
