"""The ``clinic:`` section (the chair's bridge to the clinic's broker) and the broker's address.

A broker is named by a URL: ``mqtts://HOST:PORT`` (TLS, the clinic's CA pinned: ``ca``),
``mqtt://127.0.0.1:PORT`` or ``unix:///PATH`` (plain MQTT: only to a broker on this machine,
for tests and simulation). Every client signs in: a chair as its chair id, with a password
file or a client certificate whose name is that id. Standard library only.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable
from urllib.parse import urlsplit

from relaxd.core.yamlspec import spec

DEFAULT_TLS_PORT, DEFAULT_PLAIN_PORT = 8883, 1883
#: Every topic's first level; no chair may take the name OVERVIEW (the overviews' topics).
PREFIX, OVERVIEW = "relaxd", "overview"
CHAIR_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
#: The MQTT v5 message expiry every command carries, and the longest a command is honoured.
COMMAND_EXPIRY_S = 10
#: A bridge's state heartbeat, and an overview's presence heartbeat, when nothing changes.
HEARTBEAT_S = 5.0
#: Seconds a publish or subscribe waits for the broker before the link counts as broken, and
#: the MQTT keepalive (a silent broker is given up after about one and a half of it).
BROKER_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Timing:
    """The clinic's clocks: the defaults above on site; shorter in tests (``--heartbeat``,
    ``--command-lifetime``, ``--broker-timeout``; the ``clinic:`` section's keys)."""

    heartbeat_s: float = HEARTBEAT_S
    command_lifetime_s: float = COMMAND_EXPIRY_S
    broker_timeout_s: float = BROKER_TIMEOUT_S

    def __post_init__(self) -> None:
        if not 0.2 <= self.heartbeat_s <= 60:
            raise ValueError(f"a heartbeat is 0.2 to 60 s, got {self.heartbeat_s}")
        if not 1 <= self.command_lifetime_s <= COMMAND_EXPIRY_S:
            raise ValueError(f"a command lives 1 to {COMMAND_EXPIRY_S} s, got "
                             f"{self.command_lifetime_s}")
        if not 1 <= self.broker_timeout_s <= 120:
            raise ValueError(f"the broker timeout is 1 to 120 s, got {self.broker_timeout_s}")

    @property
    def keepalive_s(self) -> int:
        return max(1, round(self.broker_timeout_s))


def check_chair_id(chair: str) -> str:
    """The chair id, if it can name topics and an MQTT user; ValueError (one line) otherwise."""
    if not CHAIR_ID.fullmatch(chair) or chair == OVERVIEW:
        raise ValueError(f"a chair id is 1 to 32 letters, digits, '-' or '_' (not "
                         f"{OVERVIEW!r}), got {chair!r}")
    return chair


def default_bridge_state_dir() -> Path:
    return Path(os.environ.get("RELAXD_BRIDGE_STATE_DIR") or "/var/lib/relaxd-bridge")


@dataclass(frozen=True)
class BrokerAddress:
    """Where the broker is: ``transport`` "tcp" (``host``, ``port``) or "unix" (``host`` is
    the socket's path), and whether the link is TLS."""

    transport: str
    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        if self.transport == "unix":
            return f"unix://{self.host}"
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_broker(url: str) -> BrokerAddress:
    """The broker's address from its URL; ValueError (one line) for anything else, and for
    plain MQTT to anything but this machine."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"a unix broker URL names its socket: unix:///PATH, got {url!r}")
        return BrokerAddress("unix", parts.path, 0, False)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"a broker URL is mqtts://HOST:PORT, mqtt://127.0.0.1:PORT or "
                         f"unix:///PATH, got {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    tls = parts.scheme == "mqtts"
    if not tls and not is_loopback(parts.hostname):
        raise ValueError(f"plain MQTT only to a broker on this machine; use mqtts:// for "
                         f"{parts.hostname}")
    return BrokerAddress("tcp", parts.hostname, port or (DEFAULT_TLS_PORT if tls else
                                                         DEFAULT_PLAIN_PORT), tls)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@dataclass(frozen=True)
class Credentials:
    """How a client signs in to the broker and trusts it."""

    username: str
    password_file: Path | None = None
    ca: Path | None = None  # the clinic's CA, the only one trusted (mqtts)
    certificate: Path | None = None  # a client certificate (its name: the user) and its key
    key: Path | None = None

    def password(self) -> str | None:
        """The password (the file's first line); OSError if it cannot be read."""
        if self.password_file is None:
            return None
        lines = self.password_file.read_text().splitlines()
        return lines[0] if lines else ""

    def problems(self, broker: BrokerAddress) -> Iterable[str]:
        if broker.tls and self.ca is None:
            yield "a TLS broker needs the clinic's CA (ca): it is the only one trusted"
        if broker.tls and self.password_file is None and self.certificate is None:
            yield "no anonymous clients: give a password file or a client certificate"
        if (self.certificate is None) != (self.key is None):
            yield "a client certificate needs its key, and a key its certificate"
        if self.certificate is not None and not broker.tls:
            yield "a client certificate needs a TLS broker (mqtts://)"


@dataclass(kw_only=True)
class ClinicSettings:
    """The chair's bridge to the clinic's broker (relaxd-bridge.service)."""

    broker: str = spec("", help="the clinic's broker: mqtts://HOST:PORT (empty: no bridge)")
    chair_id: str = spec("", help="this chair's id: its MQTT user and topics relaxd/<id>/...")
    room: str = spec("", help="where the chair stands, shown with its alerts")
    ca: Path | None = spec(None, help="the clinic's CA certificate (PEM), the only one trusted")
    password_file: Path | None = spec(None, help="the chair's broker password (mode 0600)")
    certificate: Path | None = spec(None, help="a client certificate named as the chair id")
    key: Path | None = spec(None, help="the client certificate's key")
    state_dir: Path = spec(default_factory=default_bridge_state_dir,
                           help="the bridge's own state (which session summaries went out)")
    heartbeat_s: float = spec(HEARTBEAT_S, help="the state's heartbeat when nothing changes")
    command_lifetime_s: float = spec(float(COMMAND_EXPIRY_S),
                                     help="how long a command from afar is honoured (at most "
                                          f"{COMMAND_EXPIRY_S} s)")
    broker_timeout_s: float = spec(BROKER_TIMEOUT_S, help="how long the broker may stay silent")

    def timing(self) -> Timing:
        """ValueError (one line) for a value out of range."""
        return Timing(self.heartbeat_s, self.command_lifetime_s, self.broker_timeout_s)

    def credentials(self) -> Credentials:
        return Credentials(self.chair_id, self.password_file, self.ca, self.certificate,
                           self.key)

    def check(self) -> Iterable[tuple[str | None, str]]:
        if not self.broker:
            return
        try:
            address = parse_broker(self.broker)
        except ValueError as exc:
            yield "broker", str(exc)
            return
        try:
            check_chair_id(self.chair_id)
        except ValueError as exc:
            yield "chair_id", str(exc)
        for problem in self.credentials().problems(address):
            yield None, problem
        try:
            self.timing()
        except ValueError as exc:
            yield None, str(exc)
