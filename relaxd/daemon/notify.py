"""Telling systemd how the service is doing: sd_notify messages and a frame-driven watchdog.

With ``Type=notify`` systemd waits for ``READY=1`` before it counts the service as started,
shows ``STATUS=`` text in ``systemctl status`` and, with ``WatchdogSec=``, restarts the service
when ``WATCHDOG=1`` stops arriving. Messages go through ``systemd.daemon.notify`` (apt's
python3-systemd) when it is importable, else as one datagram to ``$NOTIFY_SOCKET`` (a leading
``@`` names the abstract namespace). Without ``$NOTIFY_SOCKET`` (not under systemd) every call
does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Callable

log = logging.getLogger(__name__)


def _systemd_notify() -> Callable[[str], bool] | None:
    try:
        from systemd import daemon
    except ImportError:
        return None
    return daemon.notify


class Notifier:
    """Sends sd_notify state lines; every method returns whether a message went out.

    ``use_systemd``: True = through systemd-python (must be importable), False = the plain
    datagram, None = systemd-python when importable.
    """

    def __init__(self, use_systemd: bool | None = None):
        self.address = os.environ.get("NOTIFY_SOCKET") or None
        self._systemd = _systemd_notify() if use_systemd in (None, True) else None
        if use_systemd and self._systemd is None:
            raise ImportError("systemd-python (apt: python3-systemd) is not importable")
        self._ready_sent = False
        self._failed = False

    @property
    def enabled(self) -> bool:
        """Whether systemd listens (``$NOTIFY_SOCKET`` was set at start)."""
        return self.address is not None

    def ready(self, status: str | None = None) -> bool:
        """``READY=1`` (sent once; later calls only update ``status`` when given)."""
        if self._ready_sent:
            return self.status(status) if status is not None else False
        lines = ["READY=1"] + ([f"STATUS={status}"] if status is not None else [])
        self._ready_sent = self.send("\n".join(lines))
        return self._ready_sent

    def status(self, text: str) -> bool:
        """One line of free text for ``systemctl status``."""
        return self.send("STATUS=" + " ".join(text.splitlines()))

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the service is alive (see :class:`Watchdog` for pacing)."""
        return self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: a clean shutdown has begun."""
        return self.send("STOPPING=1" + (f"\nSTATUS={status}" if status is not None else ""))

    def watchdog_interval(self) -> float | None:
        """Seconds systemd allows between ``WATCHDOG=1`` messages, or None when it does not watch.

        From ``$WATCHDOG_USEC``, only when ``$WATCHDOG_PID`` is unset or this process's id.
        """
        usec, pid = os.environ.get("WATCHDOG_USEC"), os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            value = int(usec)
        except ValueError:
            return None
        return value / 1e6 if value > 0 else None

    def send(self, message: str) -> bool:
        """Send raw ``KEY=VALUE`` lines; failures are logged once and reported as False."""
        if self.address is None:
            return False
        try:
            if self._systemd is not None:
                sent = bool(self._systemd(message))
            else:
                self._send_datagram(message)
                sent = True
        except OSError as exc:
            sent = False
            if not self._failed:
                log.warning("cannot notify systemd at %s: %s", self.address, exc)
        else:
            if not sent and not self._failed:
                log.warning("cannot notify systemd at %s", self.address)
        self._failed = not sent
        return sent

    def _send_datagram(self, message: str) -> None:
        assert self.address is not None
        address = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())


class Watchdog:
    """Pets systemd's watchdog from the main loop, after each processed frame.

    :meth:`pet` sends ``WATCHDOG=1`` at most every ``interval / 2`` seconds. It is called only
    when a frame went through the whole pipeline, so a stalled loop (camera hang, stuck
    inference) stops the messages and systemd restarts the service after ``WatchdogSec``.
    ``interval`` defaults to the notifier's :meth:`Notifier.watchdog_interval`; None = off.
    """

    def __init__(self, notifier: Notifier, interval: float | None = None):
        self.notifier = notifier
        self.interval = notifier.watchdog_interval() if interval is None else interval
        self._last: float | None = None

    @property
    def enabled(self) -> bool:
        return self.interval is not None and self.notifier.enabled

    def pet(self, now: float | None = None) -> bool:
        """Record a processed frame at monotonic time ``now``; True when WATCHDOG=1 was sent."""
        interval = self.interval
        if interval is None or not self.notifier.enabled:
            return False
        now = time.monotonic() if now is None else now
        if self._last is not None and now - self._last < interval / 2:
            return False
        sent = self.notifier.watchdog()
        if sent:
            self._last = now
        return sent
