"""The ``ui:`` section of the configuration: the caregiver station and the control socket."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from relaxd.core.yamlspec import spec

#: The control socket on the chair: /run/relaxd is the daemon's runtime directory (mode 0750,
#: group relaxd, of which the station's user is a member).
DEFAULT_SOCKET = Path("/run/relaxd/control.sock")


def default_ui_state_dir() -> Path:
    return Path(os.environ.get("RELAXD_UI_STATE_DIR") or "/var/lib/relaxd-ui")


@dataclass(kw_only=True)
class UISettings:
    """The caregiver station."""

    enabled: bool = spec(
        default_factory=lambda: os.environ.get("RELAXD_STATION") == "1",
        help="the chair has a caregiver station: the daemon opens the control socket and "
        "a session starts only when a caregiver starts it (never because a face appeared); default: "
        "on where deploy/install.sh installed the station (RELAXD_STATION=1 in the unit)")
    socket: Path = spec(DEFAULT_SOCKET, help="the daemon's control socket (at most 107 bytes)")
    listen: str = spec("127.0.0.1", help="the network address tablets reach the station on "
                       "(over TLS: needs certificate and key); 127.0.0.1: the chair's own "
                       "display alone")
    port: int = spec(8080, min=0, max=65535, help="the chair's own display's port on 127.0.0.1 "
                     "(plain HTTP, never leaves the chair; 0: any free port)")
    tls_port: int = spec(8443, min=0, max=65535, help="the port tablets use (HTTPS) on "
                         "ui.listen, when it is not 127.0.0.1")
    network_start: bool = spec(
        default_factory=lambda: os.environ.get("RELAXD_NETWORK_START") == "1",
        help="a tablet on the network may Start a session (a STOP is always allowed); off where "
        "the chair has its own display, whose caregiver sees the child; default: on where "
        "deploy/install.sh installed a station-only chair (RELAXD_NETWORK_START=1 in "
        "relaxd-ui.service's drop-in)")
    certificate: Path | None = spec(None, help="TLS certificate (PEM) for listening on the network")
    key: Path | None = spec(None, help="TLS private key (PEM) of the certificate")
    session_lifetime: float = spec(
        8 * 3600, min=60, max=7 * 24 * 3600, help="seconds a sign-in lasts")
    state_dir: Path = spec(default_factory=default_ui_state_dir,
                           help="the station's accounts (hashed) and installed scenarios")

    def check(self) -> Iterable[tuple[str | None, str]]:
        if len(os.fsencode(str(self.socket))) > 107:
            yield "socket", "a unix socket path is at most 107 bytes"
        if self.network and (self.certificate is None or self.key is None):
            yield "listen", (f"listening on {self.listen} needs TLS: give certificate and key "
                             "(the installer can generate them)")

    @property
    def tls(self) -> bool:
        return self.certificate is not None and self.key is not None

    @property
    def users_file(self) -> Path:
        return self.state_dir / "users.json"

    @property
    def network(self) -> bool:
        """Tablets on the network are served too (a second, TLS, listener): ``listen`` is
        anything but the chair's own loopback address (127.0.0.1, ::1, localhost)."""
        return self.listen not in ("127.0.0.1", "::1", "localhost")

    @property
    def sessions_file(self) -> Path:
        """Sign-ins (tokens hashed), kept across restarts of the station."""
        return self.state_dir / "sessions.json"

    @property
    def key_file(self) -> Path:
        """The station's secret for the tokens of the pages without a sign-in."""
        return self.state_dir / "station.key"

    @property
    def scenario_dir(self) -> Path:
        """Scenarios installed from the station (the daemon reads them too)."""
        return self.state_dir / "scenarios"

