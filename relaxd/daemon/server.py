"""The daemon's control socket: the station's state out, caregivers' commands in.

The wire protocol (newline-delimited JSON, the commands, stop numbers) is
:mod:`relaxd.station.protocol`. The socket has mode 0660, so the station's group may use it.

Safety: the loop never waits on the socket. ``stop`` runs on the connection's own thread and
calls :meth:`EmergencyStop.trigger` directly (every output 0 at once, latched, recorded), so it
works while the loop is busy. Every other command is queued and carried out by the loop at its
next tick (``obey``); ``publish`` only stores the new state under a lock. The loop
:meth:`Command.claim`\\ s a command before carrying it out; one not claimed within
:data:`ANSWER_TIMEOUT_S` of its arrival is cancelled, never carried out later, and answered
"the chair did not answer in time; the command was not carried out" (so is one whose
preparation alone took that long). A claimed one is waited for up to :data:`CLAIMED_GRACE_S`
more, so a client that waits a little longer than :data:`LONGEST_ANSWER_S` hears what became of
its command, and one that gives up sooner than its preparation takes has not started anything.

Connections: at most :data:`MAX_CLIENTS` at once. One that sends no complete line for
:data:`IDLE_TIMEOUT_S` is closed (a subscription never: it only reads); one that stops reading
is dropped after :data:`SEND_TIMEOUT_S`. With every slot taken, up to :data:`STOP_RESERVE` more
are each answered one ``stop`` (anything else: "too many clients"), so STOP is answered while
idle clients hold every slot. A failed ``accept()`` (EMFILE: no file descriptor left) is logged
and retried with a growing pause; :attr:`ControlServer.alive` turns False only once accepting
has failed for :data:`ACCEPT_GIVE_UP_S` without a break, or the socket itself is gone.

"""

from __future__ import annotations

import errno
import json
import logging
import os
import queue
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from relaxd.station.protocol import (
    ANSWER_TIMEOUT_S,
    CLAIMED_GRACE_S,
    LONGEST_ANSWER_S,
    MAX_LINE,
    CommandRefused,
    decode,
    encode,
)

log = logging.getLogger(__name__)

MAX_CLIENTS = 8
#: Connections beyond MAX_CLIENTS that may still send one ``stop`` (nothing else).
STOP_RESERVE = 4
#: How long such a reserve connection has to send its ``stop``.
STOP_RESERVE_WAIT_S = 1.0
#: With the reserve taken too, how long a connection has to send its ``stop``, on the accept
#: thread itself.
OVERFLOW_WAIT_S = 0.2
SEND_TIMEOUT_S = 5.0
#: A connection that sends no complete line for this long is closed (a subscription never).
IDLE_TIMEOUT_S = 10.0
#: The pause after a failed accept(): the first, doubling after each failure up to the second.
ACCEPT_BACKOFF_S = (0.05, 1.0)
#: accept() failing for this long without a break: the accept thread gives up (not ``alive``).
ACCEPT_GIVE_UP_S = 30.0
MAX_COMMANDS_PER_TICK = 8
#: The answer to a command the loop did not claim in time.
NOT_CARRIED_OUT = "the chair did not answer in time; the command was not carried out"
#: The answer on a reserve connection to anything but ``stop``.
ONLY_STOP_NOW = "too many clients: only stop is answered now"
#: accept() errors that mean the listening socket itself is gone (no use trying again).
_SOCKET_GONE = (errno.EBADF, errno.EINVAL, errno.ENOTSOCK)


_QUEUED, _CLAIMED, _CANCELLED = "queued", "claimed", "cancelled"


@dataclass
class Command:
    """A queued command, the stop it was sent after, and the loop's answer to it.

    The loop :meth:`claim`\\ s it before carrying it out; the server :meth:`cancel`\\ s it when
    its sender has waited long enough. Whichever comes first wins, under a lock, so a command
    whose sender was told it was not carried out never is.
    """

    name: str
    args: dict[str, Any]
    #: The stop number it is bound to: a Start or reset is refused once a newer stop exists.
    after_stop: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    answer: dict[str, Any] = field(default_factory=dict)
    _fate: str = field(default=_QUEUED, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False,
                                  compare=False)

    def claim(self) -> bool:
        """The loop's side: True when the loop may carry it out (it can no longer be
        cancelled); False when it was cancelled (skip it)."""
        return self._settle(_CLAIMED)

    def cancel(self) -> bool:
        """The server's side: True when cancelled (the loop will skip it); False when the
        loop has claimed it already."""
        return self._settle(_CANCELLED)

    def finish(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.done.set()

    def _settle(self, fate: str) -> bool:
        with self._lock:
            if self._fate == _QUEUED:
                self._fate = fate
            return self._fate == fate


# --- the socket ------------------------------------------------------------------------------

class ControlServer:
    """The unix socket: one thread a connection; ``stop`` handled on it, the rest queued."""

    def __init__(self, path: str | Path, stop: Callable[[str], int], mode: int = 0o660, *,
                 direct: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] | None = None,
                 stops: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] | None = None,
                 prepare: Callable[[Command], None] | None = None,
                 stop_seq: Callable[[], int] = lambda: 0,
                 latched: Callable[[], bool] = lambda: False) -> None:
        self.path = Path(path)
        #: Queries answered on the connection's thread (they never touch the loop's parts).
        #: Other stops (the clinic's), answered like ``stop``: on the connection's thread, and on
        #: a reserve connection when every slot is taken.
        self._direct = {**(direct or {}), **(stops or {})}
        self._stop_names = {"stop", *(stops or {})}
        #: Called on the connection's thread before a command is queued (slow lookups there,
        #: not in the loop); raises CommandRefused to answer at once.
        self._prepare = prepare
        if len(os.fsencode(self.path)) > 107:
            from relaxd.core.errors import RelaxdError
            raise RelaxdError("control socket path longer than 107 bytes", self.path)
        #: STOP (returns the number of the stop it made), the newest stop's number, and whether
        #: a stop still holds the chair (its latch is set).
        self._stop_chair, self._stop_seq, self._latched = stop, stop_seq, latched
        self._commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._changed = threading.Condition()
        self._state: dict[str, Any] = {}
        self._version = 0
        self._closed = False
        self._closing = threading.Event()
        self._clients = threading.BoundedSemaphore(MAX_CLIENTS)
        self._reserve = threading.BoundedSemaphore(STOP_RESERVE)
        self.path.unlink(missing_ok=True)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(self.path))
        os.chmod(self.path, mode)
        self._sock.listen(MAX_CLIENTS + STOP_RESERVE)
        self._thread = threading.Thread(target=self._accept, name="control-accept", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """The accept thread runs and has not given up: a new connection (a STOP) is taken.
        Cheap enough for the loop to read every tick."""
        return self._thread.is_alive()

    def publish(self, state: dict[str, Any]) -> None:
        """The loop's side: store the new state (never blocks on a client)."""
        with self._changed:
            self._state, self._version = state, self._version + 1
            self._changed.notify_all()

    def take(self, limit: int = MAX_COMMANDS_PER_TICK) -> list[Command]:
        """The loop's side: the commands queued since the last tick. Carry one out only if
        :meth:`Command.claim` says so (a cancelled one is skipped: its sender was told so)."""
        out: list[Command] = []
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
        self._closing.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept thread
        except OSError:
            pass
        try:
            self._sock.close()
        finally:
            self.path.unlink(missing_ok=True)
        if self._thread is not threading.current_thread():
            self._thread.join(1.0)

    # --- accepting ---------------------------------------------------------------------------

    def _accept(self) -> None:
        """Hand each connection to a thread of its own until closed. A failed accept() is
        logged and retried after a growing pause; the thread gives up (``alive`` False) only
        when the socket is gone or accepting has failed for ACCEPT_GIVE_UP_S without a break."""
        failures = _AcceptFailures()
        try:
            while not self._closing.is_set():
                try:
                    conn, _ = self._sock.accept()
                except OSError as exc:
                    pause = None if self._closing.is_set() else failures.pause(exc)
                    if pause is None:
                        break
                    self._closing.wait(pause)
                    continue
                failures.ended()
                self._hand_over(conn)
        except Exception as exc:  # noqa: BLE001 - said below, and ``alive`` turns False
            failures.last = f"{type(exc).__name__}: {exc}"
            log.exception("control socket: the accept thread failed")
        if not self._closing.is_set():
            log.critical("control socket: no longer accepting connections (%s): the station "
                         "cannot reach the chair; its e-stop still works", failures.last)

    def _hand_over(self, conn: socket.socket) -> None:
        """A thread for the connection: a slot of its own, else a reserve slot that answers one
        ``stop``, else a one-line refusal."""
        if self._clients.acquire(blocking=False):
            slot, serve = self._clients, self._serve
        elif self._reserve.acquire(blocking=False):
            slot, serve = self._reserve, self._serve_stop_only
        else:
            self._overflow(conn)
            return
        accepted_after = self._stop_seq()  # in the order clients connected, before any runs
        try:
            threading.Thread(target=serve, args=(conn, slot, accepted_after),
                             name="control-client", daemon=True).start()
        except RuntimeError as exc:  # no thread to be had: refuse this one, keep accepting
            slot.release()
            _send_quietly(conn, {"ok": False, "error": "the chair is out of threads"})
            conn.close()
            log.error("control socket: no thread for a client: %s", exc)

    def _overflow(self, conn: socket.socket) -> None:
        """Every slot and the reserve taken: here, on the accept thread, give the connection a
        moment to send a ``stop`` (carried out) and refuse anything else. Connections are taken
        in the order they came, so clients that keep every slot busy delay a STOP by at most
        OVERFLOW_WAIT_S each, never refuse it."""
        with _client(conn):
            self._one_stop(conn, OVERFLOW_WAIT_S, "too many clients")

    # --- one connection ----------------------------------------------------------------------

    def _serve(self, conn: socket.socket, slot: threading.BoundedSemaphore,
               accepted_after: int) -> None:
        """Answer the client's lines until it goes, falls silent or subscribes. Its first
        command is bound to the newest stop when the connection was accepted, so a STOP on a
        connection made later always wins over it, whichever thread runs first."""
        bound: int | None = accepted_after
        with _client(conn, slot):
            for line in _lines(conn, IDLE_TIMEOUT_S):
                if not self._answer(conn, line, bound):
                    return
                bound = None

    def _serve_stop_only(self, conn: socket.socket, slot: threading.BoundedSemaphore,
                         accepted_after: int = 0) -> None:
        """Every slot is taken: answer one ``stop`` (anything else is refused), then close."""
        with _client(conn, slot):
            self._one_stop(conn, STOP_RESERVE_WAIT_S, ONLY_STOP_NOW)

    def _one_stop(self, conn: socket.socket, wait_s: float, refusal: str) -> None:
        """Read one line within ``wait_s``: a ``stop`` is carried out, anything else refused."""
        for line in _lines(conn, wait_s):
            try:
                message = decode(line)
            except ValueError:
                message = {}
            if message.get("cmd") in self._stop_names:
                _send(conn, self._reply(message))
            else:
                _send(conn, {**_echo_id(message), "ok": False, "error": refusal})
            return

    def _answer(self, conn: socket.socket, line: bytes, bound: int | None = None) -> bool:
        """Answer one line (a command bound to stop ``bound`` at the latest); False once the
        connection has become a subscription (ended)."""
        try:
            message = decode(line)
        except ValueError as exc:
            _send(conn, {"ok": False, "error": str(exc)})
            return True
        if message.get("cmd") == "subscribe":
            self._push(conn)
            return False
        _send(conn, self._reply(message, conn, bound))
        return True

    def _reply(self, message: dict[str, Any], conn: socket.socket | None = None,
               bound: int | None = None) -> dict[str, Any]:
        """The answer to one message (anything but ``subscribe``) from ``conn``."""
        name = str(message.get("cmd", ""))
        reply = _echo_id(message)
        if name == "state":
            with self._changed:
                reply.update(ok=True, state=self._state)
        elif name == "stop":
            reply.update(self._stop(str(message.get("by") or "station"), message.get("for_stop")))
        elif name in self._direct:
            reply.update(self._direct[name](message))
        else:
            reply.update(self._queue(name, message, conn, bound))
        return reply

    def _stop(self, by: str, for_stop: Any = None) -> dict[str, Any]:
        """STOP, here and now: every output is 0 before the answer goes out. ``for_stop`` N (a
        retry of a STOP pressed when N was the newest stop) is answered ``already`` only while a
        stop newer than N still holds the chair (latched): the chair is stopped, and a late
        retry never stops a later session. Otherwise (no newer stop, or a session started since
        it) it is carried out: in doubt, stop."""
        try:
            newest = self._stop_seq()
            if isinstance(for_stop, int) and not isinstance(for_stop, bool) and newest > for_stop \
                    and self._latched():
                return {"ok": True, "stop_seq": newest, "already": True}
            return {"ok": True, "stop_seq": self._stop_chair(by)}
        except Exception as exc:  # noqa: BLE001 - the caregiver must hear that it failed
            log.exception("the station's STOP failed")
            why = " ".join(f"{type(exc).__name__}: {exc}".split())
            return {"ok": False, "error": f"the stop failed ({why}): press the e-stop"}

    def _queue(self, name: str, message: dict[str, Any], conn: socket.socket | None = None,
               bound: int | None = None) -> dict[str, Any]:
        """Bind the command to a stop as it arrives (``bound`` at the latest), prepare it here,
        then hand it to the loop and wait for its answer; cancelled, never carried out, when
        the loop is too late or the client has hung up (it stopped waiting)."""
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        newest = self._stop_seq()
        try:
            command = Command(name, message, after_stop=_after_stop(
                message, newest if bound is None else min(bound, newest)))
            if self._prepare is not None:
                self._prepare(command)
        except CommandRefused as exc:
            return {"ok": False, "error": str(exc)}
        if time.monotonic() >= deadline or _gone(conn):
            command.cancel()  # prepared too slowly, or its sender stopped waiting
        self._commands.put(command)  # cancelled too: the loop skips it, and frees what it holds
        if _wait_while_there(command, conn, deadline):
            return command.answer
        if command.cancel():
            return {"ok": False, "error": NOT_CARRIED_OUT}
        if command.done.wait(CLAIMED_GRACE_S):
            return command.answer
        return {"ok": False, "error": "the chair took the command but has not answered yet: "
                                      "look at the chair's state before sending it again"}

    def _push(self, conn: socket.socket) -> None:
        """Send the state on every change until the client goes (or stops reading); one that
        has hung up is noticed within a second even while nothing is published."""
        seen = -1
        while True:
            with self._changed:
                self._changed.wait_for(partial(self._news_since, seen), timeout=1.0)
                if self._closed:
                    return
                state, changed, seen = self._state, self._version != seen, self._version
            if changed:
                _send(conn, {"type": "state", "state": state})
            elif _hung_up(conn):
                return

    def _news_since(self, seen: int) -> bool:
        """Closed, or a state newer than version ``seen`` published (under ``_changed``)."""
        return self._closed or self._version != seen


class _AcceptFailures:
    """accept()'s failures in a row: the pause after each, and when to give up."""

    def __init__(self) -> None:
        self.count, self.since, self.last = 0, 0.0, ""

    def pause(self, exc: OSError) -> float | None:
        """How long to wait before trying again after ``exc``; None: give up."""
        now = time.monotonic()
        if self.count == 0:
            self.since = now
        self.count += 1
        self.last = exc.strerror or str(exc)
        if exc.errno in _SOCKET_GONE or now - self.since > ACCEPT_GIVE_UP_S:
            return None
        first, longest = ACCEPT_BACKOFF_S
        pause = min(first * 2 ** (self.count - 1), longest)
        if self.count == 1:
            log.error("control socket: accept() failed (%s); trying again, pausing up to "
                      "%g s between tries", self.last, longest)
        return pause

    def ended(self) -> None:
        """A connection was accepted: the failures (if any) are over."""
        if self.count:
            log.warning("control socket: accepting again after %d failed accept() calls",
                        self.count)
            self.count = 0


def _after_stop(message: dict[str, Any], newest: int) -> int:
    """The stop a command is bound to: the one it names, else the newest now. CommandRefused
    (one line) for anything but a whole number from 0 to the newest stop's."""
    if "after_stop" not in message:
        return newest
    named = message["after_stop"]
    if isinstance(named, bool) or not isinstance(named, int) or named < 0:
        shown = json.dumps(named, default=str)[:40]
        raise CommandRefused(f"after_stop must be a whole number, 0 or more (not {shown})")
    if named > newest:
        raise CommandRefused(f"after_stop {named}: no such stop yet (the newest is {newest})")
    return named


def _echo_id(message: dict[str, Any]) -> dict[str, Any]:
    """The start of a reply: the message's ``id``, if it has one."""
    return {"id": message["id"]} if "id" in message else {}


def _lines(conn: socket.socket, idle_s: float) -> Iterable[bytes]:
    """The lines a client sends. Ends when it closes, when no complete line has come for
    ``idle_s`` (it is told so), or at a line longer than MAX_LINE."""
    buffer = b""
    deadline = time.monotonic() + idle_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            _send_quietly(conn, {"ok": False, "error": f"closed: nothing asked for {idle_s:g} s"})
            return
        conn.settimeout(left)
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
                deadline = time.monotonic() + idle_s
        if len(buffer) > MAX_LINE:
            _send_quietly(conn, {"ok": False, "error": "line too long"})
            return


@contextmanager
def _client(conn: socket.socket, slot: threading.BoundedSemaphore | None = None) -> Iterator[None]:
    """One client's connection: closed at the end, its slot given back; a client that goes
    away ends quietly, and one bad client never takes the server down."""
    try:
        yield
    except OSError:
        pass
    except Exception:  # noqa: BLE001 - one bad client never takes the server down
        log.exception("control client failed")
    finally:
        conn.close()
        if slot is not None:
            slot.release()


def _gone(conn: socket.socket | None) -> bool:
    """The client has closed its end (peeked without waiting or reading)."""
    if conn is None:
        return False
    conn.settimeout(0.0)  # a socket with a timeout would wait out EAGAIN
    try:
        return conn.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _wait_while_there(command: Command, conn: socket.socket | None, deadline: float) -> bool:
    """Wait for the loop's answer until ``deadline``; True if it came. Gives up early (False)
    once the client has hung up, so a command nobody waits for is cancelled, not carried out."""
    while True:
        left = deadline - time.monotonic()
        if command.done.wait(max(0.0, min(left, 0.05))):
            return True
        if left <= 0 or _gone(conn):
            return False


def _hung_up(conn: socket.socket) -> bool:
    """A subscriber has closed its end (looked at without waiting; what it sends after
    subscribing is read and ignored)."""
    conn.settimeout(0.0)
    try:
        return conn.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _send(conn: socket.socket, message: dict[str, Any]) -> None:
    """One message; OSError if the client has not read it within SEND_TIMEOUT_S."""
    conn.settimeout(SEND_TIMEOUT_S)
    conn.sendall(encode(message))


def _send_quietly(conn: socket.socket, message: dict[str, Any]) -> None:
    try:
        _send(conn, message)
    except OSError:
        pass

__all__ = ["ANSWER_TIMEOUT_S", "CLAIMED_GRACE_S", "LONGEST_ANSWER_S", "MAX_LINE",
           "Command", "CommandRefused", "ControlServer", "decode", "encode"]
