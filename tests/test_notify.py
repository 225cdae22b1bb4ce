"""sd_notify against real unix datagram sockets (filesystem and abstract), both backends."""

from __future__ import annotations

import os
import socket
import sys
import types
import uuid

import pytest

from relaxd.daemon.notify import Notifier, Watchdog

try:
    import systemd.daemon  # noqa: F401
    HAVE_SYSTEMD = True
except ImportError:
    HAVE_SYSTEMD = False

BACKENDS = [
    pytest.param(False, id="datagram"),
    pytest.param(True, id="systemd-python",
                 marks=pytest.mark.skipif(not HAVE_SYSTEMD, reason="systemd-python not installed")),
]


class Listener:
    """A bound datagram socket standing in for systemd's notify socket."""

    def __init__(self, sock: socket.socket, address: str):
        self.sock, self.address = sock, address

    def messages(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return out


@pytest.fixture(params=["filesystem", "abstract"])
def listener(request, tmp_path, monkeypatch):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "filesystem":
        address = str(tmp_path / "notify")
        sock.bind(address)
    else:
        address = f"@relaxd-test-{os.getpid()}-{uuid.uuid4().hex}"
        sock.bind("\0" + address[1:])
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    yield Listener(sock, address)
    sock.close()


@pytest.mark.parametrize("use_systemd", BACKENDS)
def test_ready_sent_once(listener, use_systemd):
    n = Notifier(use_systemd=use_systemd)
    assert n.enabled
    assert n.ready()
    assert not n.ready()
    assert listener.messages() == ["READY=1"]


@pytest.mark.parametrize("use_systemd", BACKENDS)
def test_status_and_stopping(listener, use_systemd):
    n = Notifier(use_systemd=use_systemd)
    n.ready("model loaded")
    n.status("phase calm,\nmood relaxed")
    n.stopping()
    assert listener.messages() == ["READY=1\nSTATUS=model loaded", "STATUS=phase calm, mood relaxed",
                                   "STOPPING=1"]


@pytest.mark.parametrize("use_systemd", BACKENDS)
def test_watchdog_stops_when_loop_stalls(listener, use_systemd):
    dog = Watchdog(Notifier(use_systemd=use_systemd), interval=4.0)
    sent_at = []
    t = 0.0
    while t < 30.0:  # frames every 0.25 s until t=12, then the loop hangs
        if t < 12.0 and dog.pet(t):
            sent_at.append(t)
        t += 0.25
    assert sent_at == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    assert listener.messages() == ["WATCHDOG=1"] * len(sent_at)
    assert dog.pet(30.0)  # the loop recovers: petting resumes at once
    assert listener.messages() == ["WATCHDOG=1"]


def test_watchdog_interval_from_environment(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert Notifier().watchdog_interval() == 20.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert Notifier().watchdog_interval() == 20.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # meant for another process
    assert Notifier().watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert Notifier().watchdog_interval() is None


def test_watchdog_takes_interval_from_systemd(listener, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    dog = Watchdog(Notifier(use_systemd=False))
    assert dog.interval == 10.0
    assert [dog.pet(t) for t in (100.0, 104.9, 105.0)] == [True, False, True]


def test_no_socket_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    n = Notifier(use_systemd=False)
    assert not n.enabled
    assert not any([n.ready(), n.status("x"), n.watchdog(), n.stopping()])
    assert not Watchdog(n).pet(0.0)


def test_vanished_socket_reports_false(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    n = Notifier(use_systemd=False)
    assert not n.ready()
    assert not n.watchdog()
    assert sum("cannot notify" in r.message for r in caplog.records) == 1


def test_prefers_systemd_python_when_importable(monkeypatch):
    sent = []
    daemon = types.SimpleNamespace(notify=lambda msg: sent.append(msg) or True)
    monkeypatch.setitem(sys.modules, "systemd", types.SimpleNamespace(daemon=daemon))
    monkeypatch.setitem(sys.modules, "systemd.daemon", daemon)
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    assert Notifier().ready()
    assert sent == ["READY=1"]
