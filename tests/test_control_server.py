"""The control socket itself (relaxd.daemon.server.ControlServer) on a real unix socket: slots and
idle clients, STOP with every slot taken, an accept loop that outlives its errors, and the
server's half of the stop/start arbiter (a Start bound to a stop; a late command cancelled).

The loop's side is played by the test, so every race is decided by the test, not by timing.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from relaxd.daemon import server as control
from relaxd.daemon.server import Command, CommandRefused, ControlServer

ROOT = Path(__file__).resolve().parent.parent
NOT_CARRIED_OUT = "the chair did not answer in time; the command was not carried out"


@pytest.fixture
def place() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cs-", dir="/tmp"))  # short: unix sockets <= 107 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Stops:
    """The arbiter's stop side: each stop gets the next number."""

    def __init__(self, newest: int = 0) -> None:
        self.newest, self.by = newest, []

    def __call__(self, by: str) -> int:
        self.by.append(by)
        self.newest += 1
        return self.newest


@contextmanager
def serving(place: Path, stops: Stops | None = None, **kwargs: Any) -> Iterator[ControlServer]:
    stops = stops or Stops()
    server = ControlServer(place / "ctl.sock", stop=stops, stop_seq=lambda: stops.newest,
                           **kwargs)
    try:
        yield server
    finally:
        server.close()


class Client:
    """One connection, as the station or ``relaxd start`` makes it."""

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall((json.dumps(message) + "\n").encode())

    def read(self) -> dict[str, Any] | None:
        """The next message; None once the server has closed the connection."""
        line = self.file.readline()
        return json.loads(line) if line else None

    def ask(self, message: dict[str, Any]) -> dict[str, Any] | None:
        self.send(message)
        return self.read()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def ask(path: Path, message: dict[str, Any]) -> dict[str, Any] | None:
    client = Client(path)
    try:
        return client.ask(message)
    finally:
        client.close()


def asking(path: Path, message: dict[str, Any]) -> queue.Queue:
    """Send ``message`` on a thread of its own; its answer arrives on the queue returned."""
    answers: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: answers.put(ask(path, message)), daemon=True).start()
    return answers


def wait_for(cond: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := cond()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)
    return found


def taken(server: ControlServer, what: str = "the command") -> Command:
    """The loop's next command, once it is queued."""
    commands = wait_for(server.take, what)
    assert len(commands) == 1
    return commands[0]


def answering_loop(server: ControlServer, seen: list[Command]) -> threading.Event:
    """A loop that claims and answers every command at once; set the event to end it."""
    done = threading.Event()

    def run() -> None:
        while not done.wait(0.005):
            for command in server.take():
                if command.claim():
                    seen.append(command)
                    command.finish({"ok": True})

    threading.Thread(target=run, daemon=True).start()
    return done


@pytest.fixture
def cancel_seen(monkeypatch) -> threading.Event:
    """Set once the server has tried to cancel a command (its sender has waited enough)."""
    tried = threading.Event()
    original = Command.cancel

    def cancel(self: Command) -> bool:
        try:
            return original(self)
        finally:
            tried.set()

    monkeypatch.setattr(Command, "cancel", cancel)
    return tried


# --- slots, idle clients, STOP with every slot taken -----------------------------------------

def test_stop_is_answered_with_its_number_while_idle_clients_hold_every_slot(place):
    stops = Stops(newest=4)
    with serving(place, stops) as server:
        idle = [Client(server.path) for _ in range(control.MAX_CLIENTS)]
        try:
            for client in idle:  # each is served (holds a slot), then says nothing more
                assert client.ask({"cmd": "state"})["ok"]
            assert ask(server.path, {"id": 9, "cmd": "stop", "by": "ana"}) == {
                "id": 9, "ok": True, "stop_seq": 5}
            assert stops.by == ["ana"]
            refused = ask(server.path, {"id": 10, "cmd": "start", "scenario": "x"})
            assert refused["id"] == 10 and not refused["ok"]
            assert refused["error"] == "too many clients: only stop is answered now"
            assert server.take() == []
        finally:
            for client in idle:
                client.close()


def test_another_kind_of_stop_is_answered_like_stop_while_every_slot_is_taken(place):
    """The clinic's stop (through the chair's bridge) is a stop: the reserve answers it too."""
    clinic: list[str] = []

    def clinic_stop(message: dict[str, Any]) -> dict[str, Any]:
        clinic.append(str(message.get("by")))
        return {"ok": True, "stop_seq": 7}

    server = ControlServer(place / "ctl.sock", stop=Stops(), stops={"clinic_stop": clinic_stop})
    with closing(server):
        idle = [Client(server.path) for _ in range(control.MAX_CLIENTS)]
        try:
            for client in idle:
                assert client.ask({"cmd": "state"})["ok"]
            assert ask(server.path, {"id": 3, "cmd": "clinic_stop", "by": "desk"}) == {
                "id": 3, "ok": True, "stop_seq": 7}
            assert clinic == ["desk"]
        finally:
            for client in idle:
                client.close()


def test_a_silent_client_is_dropped_but_a_reading_subscriber_never(place, monkeypatch):
    monkeypatch.setattr(control, "IDLE_TIMEOUT_S", 0.3)
    with serving(place) as server:
        server.publish({"n": 1})
        subscriber = Client(server.path)
        subscriber.send({"cmd": "subscribe"})
        assert subscriber.read() == {"type": "state", "state": {"n": 1}}
        subscribed = time.monotonic()
        silent = Client(server.path)
        closing = silent.read()  # the server hangs up on it, saying why
        assert not closing["ok"] and closing["error"] == "closed: nothing asked for 0.3 s"
        assert silent.read() is None
        wait_for(lambda: time.monotonic() - subscribed > 3 * 0.3, "three idle timeouts")
        server.publish({"n": 2})  # nothing was published meanwhile: still subscribed
        assert subscriber.read() == {"type": "state", "state": {"n": 2}}
        for client in (subscriber, silent):
            client.close()


def test_subscribers_that_hung_up_free_their_slots_with_nothing_published(place):
    with serving(place) as server:
        gone = [Client(server.path) for _ in range(control.MAX_CLIENTS)]
        for client in gone:
            client.send({"cmd": "subscribe"})
            assert client.read()["type"] == "state"
            client.close()  # and nothing is published after (the loop stalled)
        wait_for(lambda: ask(server.path, {"cmd": "state"})["ok"], "a slot for a query")


def test_the_stations_subscription_and_commands_work_past_the_idle_timeout(place, monkeypatch):
    from relaxd.station import link

    monkeypatch.setattr(control, "IDLE_TIMEOUT_S", 0.3)
    assert link.ANSWER_WAIT_S > control.LONGEST_ANSWER_S  # it never gives up on an answer early

    async def station(server: ControlServer) -> None:
        chair = link.ChairLink(server.path)
        chair.start()
        try:
            seen = await chair.changed(0, 5.0)
            assert chair.state == {"n": 1}
            await asyncio.sleep(1.0)  # more than three idle timeouts, nothing published
            assert chair.version == seen  # never dropped (that would have been a change)
            server.publish({"n": 2})
            await chair.changed(seen, 5.0)
            assert chair.state == {"n": 2}
            assert (await chair.command("stop"))["stop_seq"] == 1
        finally:
            await chair.stop()

    with serving(place) as server:
        server.publish({"n": 1})
        asyncio.run(station(server))


# --- the accept loop ----------------------------------------------------------------------------

def poke(path: Path) -> None:
    """Connect and hang up, waiting for no answer (the listener may never accept it)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))


class FailingListener:
    """The listening socket, but accept() fails with ``error`` for the first ``failures``
    calls (when each came is kept)."""

    def __init__(self, sock: socket.socket, failures: float, error: int = errno.EMFILE) -> None:
        self.sock, self.failures, self.error, self.calls = sock, failures, error, []

    def accept(self) -> tuple[socket.socket, Any]:
        self.calls.append(time.monotonic())
        if len(self.calls) <= self.failures:
            raise OSError(self.error, os.strerror(self.error))
        return self.sock.accept()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def test_accept_failures_are_logged_backed_off_and_survived(place, monkeypatch, caplog):
    monkeypatch.setattr(control, "ACCEPT_BACKOFF_S", (0.02, 0.08))
    caplog.set_level(logging.WARNING, logger="relaxd.daemon.server")
    with serving(place) as server:
        listener = FailingListener(server._sock, failures=5)
        server._sock = listener  # used from the accept after the one under way
        assert ask(server.path, {"cmd": "state"})["ok"]  # that one; then five EMFILEs
        assert ask(server.path, {"cmd": "stop"})["stop_seq"] == 1
        assert server.alive and len(listener.calls) >= 6  # the 7th: waiting for the next
        calls = listener.calls[:6]
        pauses = [b - a for a, b in zip(calls, calls[1:])]
        assert all(p >= 0.9 * want for p, want in zip(pauses, (0.02, 0.04, 0.08, 0.08, 0.08)))
        assert all(p < 2.0 for p in pauses)
    logged = [r.getMessage() for r in caplog.records]
    assert any("accept() failed (Too many open files)" in m for m in logged), logged
    assert any("accepting again after 5 failed" in m for m in logged), logged
    assert len(logged) == 2  # one line for the failures, one when they end: no flood


def test_a_real_emfile_is_survived(place):
    """A process out of file descriptors (RLIMIT_NOFILE): a STOP sent meanwhile is answered
    once descriptors are free again."""
    script = f"""
import os, resource, sys, logging
logging.basicConfig(level=logging.WARNING)
from relaxd.daemon.server import ControlServer
server = ControlServer({str(place / "ctl.sock")!r}, stop=lambda by: 1)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
held = []
try:
    while True:
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    print("full", flush=True)
sys.stdin.readline()
for fd in held:
    os.close(fd)
sys.stdin.readline()
"""
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    logged: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [logged.put(line) for line in child.stderr],
                     daemon=True).start()
    try:
        assert child.stdout.readline() == "full\n"
        client = Client(place / "ctl.sock")
        client.send({"cmd": "stop", "by": "ana"})
        while "Too many open files" not in logged.get(timeout=10):  # logged; it tries again
            pass
        child.stdin.write("\n")
        child.stdin.flush()
        assert client.read() == {"ok": True, "stop_seq": 1}
        client.close()
    finally:
        child.kill()
        child.wait(10)


def test_alive_until_closed_or_until_accepting_has_failed_too_long(place, monkeypatch, caplog):
    monkeypatch.setattr(control, "ACCEPT_BACKOFF_S", (0.01, 0.02))
    monkeypatch.setattr(control, "ACCEPT_GIVE_UP_S", 0.2)
    with serving(place) as server:
        assert server.alive
    assert not server.alive  # closed
    with serving(place) as server:
        server._sock = FailingListener(server._sock, failures=float("inf"))
        poke(server.path)  # wakes an accept under way, if the thread is in one
        wait_for(lambda: not server.alive, "the accept thread to give up")
    assert any(r.levelno == logging.CRITICAL and "no longer accepting" in r.getMessage()
               for r in caplog.records)
    with serving(place) as server:  # the socket itself gone: no use trying again
        server._sock = FailingListener(server._sock, failures=1, error=errno.EBADF)
        poke(server.path)  # wakes an accept under way, if the thread is in one
        wait_for(lambda: not server.alive, "the accept thread to give up")


# --- the stop/start arbiter: the server's half -----------------------------------------------

def test_a_failed_stop_is_answered_in_one_line(place):
    def broken(by: str) -> int:
        raise RuntimeError("relay\nstuck")

    server = ControlServer(place / "ctl.sock", stop=broken)
    try:
        answer = ask(server.path, {"id": 1, "cmd": "stop"})
        assert answer == {"id": 1, "ok": False,
                          "error": "the stop failed (RuntimeError: relay stuck): press the e-stop"}
        assert ask(server.path, {"cmd": "state"})["ok"]
    finally:
        server.close()


def test_every_command_is_bound_to_a_stop_as_it_arrives(place):
    stops = Stops(newest=3)
    seen: list[Command] = []

    def slow_prepare(command: Command) -> None:
        stops("bo")  # a STOP from another station while this one is prepared
        if command.args.get("child") == "zed":
            raise CommandRefused("no child 'zed'")

    with serving(place, stops, prepare=slow_prepare) as server:
        done = answering_loop(server, seen)
        assert ask(server.path, {"cmd": "start", "child": "zed"}) == {
            "ok": False, "error": "no child 'zed'"}  # refused at once, never queued
        assert ask(server.path, {"cmd": "start"}) == {"ok": True}
        assert ask(server.path, {"cmd": "start", "after_stop": 2}) == {"ok": True}
        assert ask(server.path, {"cmd": "ack", "after_stop": 0}) == {"ok": True}
        done.set()
        # the first: the newest stop when it arrived (4), not the one made while it was prepared
        assert [c.after_stop for c in seen] == [4, 2, 0] and stops.newest == 7


@pytest.mark.parametrize("named, why", [
    (-1, "after_stop must be a whole number, 0 or more (not -1)"),
    ("2", 'after_stop must be a whole number, 0 or more (not "2")'),
    (2.0, "after_stop must be a whole number, 0 or more (not 2.0)"),
    (True, "after_stop must be a whole number, 0 or more (not true)"),
    (None, "after_stop must be a whole number, 0 or more (not null)"),
    (4, "after_stop 4: no such stop yet (the newest is 3)"),
])
def test_a_bad_after_stop_is_refused_at_once_and_never_queued(place, named, why):
    with serving(place, Stops(newest=3)) as server:
        answer = ask(server.path, {"id": 5, "cmd": "start", "after_stop": named})
        assert answer == {"id": 5, "ok": False, "error": why}
        assert server.take() == []


def test_a_command_the_loop_never_took_is_cancelled_not_carried_out_later(place, monkeypatch):
    monkeypatch.setattr(control, "ANSWER_TIMEOUT_S", 0.2)
    with serving(place) as server:
        answer = ask(server.path, {"id": 1, "cmd": "start", "scenario": "x"})
        assert answer == {"id": 1, "ok": False, "error": NOT_CARRIED_OUT}
        (late,) = server.take()  # the loop comes back at last: it must skip it
        assert not late.claim()


def test_a_command_taken_but_claimed_after_the_timeout_is_not_carried_out(
        place, monkeypatch, cancel_seen):
    monkeypatch.setattr(control, "ANSWER_TIMEOUT_S", 0.2)
    with serving(place) as server:
        answer = asking(server.path, {"cmd": "start", "scenario": "x"})
        command = taken(server)  # the loop has it, but stalls before claiming it
        assert cancel_seen.wait(10)
        assert not command.claim()
        assert answer.get(timeout=10) == {"ok": False, "error": NOT_CARRIED_OUT}


def test_a_command_claimed_just_before_the_timeout_gets_its_real_answer(
        place, monkeypatch, cancel_seen):
    monkeypatch.setattr(control, "ANSWER_TIMEOUT_S", 0.2)
    with serving(place) as server:
        answer = asking(server.path, {"cmd": "start", "scenario": "x"})
        command = taken(server)
        assert command.claim()  # the loop carries it out ...
        assert cancel_seen.wait(10)  # ... while the server's wait runs out
        command.finish({"ok": True, "scenario": "x"})
        assert answer.get(timeout=10) == {"ok": True, "scenario": "x"}


def test_a_claimed_command_the_loop_never_finishes_is_not_called_lost(place, monkeypatch):
    monkeypatch.setattr(control, "ANSWER_TIMEOUT_S", 0.1)
    monkeypatch.setattr(control, "CLAIMED_GRACE_S", 0.1)
    with serving(place) as server:
        answer = asking(server.path, {"cmd": "start", "scenario": "x"})
        assert taken(server).claim()
        error = answer.get(timeout=10)["error"]
        assert "took the command" in error and "not carried out" not in error


def test_claim_and_cancel_exclude_each_other():
    first = Command("start", {})
    assert first.claim() and not first.cancel() and first.claim()
    second = Command("start", {})
    assert second.cancel() and not second.claim() and second.cancel()



def test_a_command_prepared_for_longer_than_the_timeout_is_never_carried_out(place, monkeypatch):
    """Its sender may have stopped waiting: even an eager loop never gets to claim it."""
    monkeypatch.setattr(control, "ANSWER_TIMEOUT_S", 0.1)
    seen: list[Command] = []

    def slow_prepare(command: Command) -> None:
        began = time.monotonic()
        wait_for(lambda: time.monotonic() > began + 0.2, "a slow preparation")

    with serving(place, prepare=slow_prepare) as server:
        done = answering_loop(server, seen)
        assert ask(server.path, {"cmd": "start"}) == {"ok": False, "error": NOT_CARRIED_OUT}
        done.set()
        assert seen == []
