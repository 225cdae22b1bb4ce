"""``relaxd bridge``: this chair's bridge to the clinic's broker (relaxd-bridge.service).

    relaxd bridge --config /etc/relaxd/config.yaml      (its clinic: section)
    relaxd bridge --broker mqtt://127.0.0.1:1883 --chair-id A --socket PATH --records DIR
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from relaxd.clinic.settings import (
    BROKER_TIMEOUT_S,
    COMMAND_EXPIRY_S,
    HEARTBEAT_S,
    ClinicSettings,
    parse_broker,
)
from relaxd.core.errors import RelaxdError

#: ``relaxd --simulate --bridge``: the chair's broker password file, when the broker needs one.
PASSWORD_FILE_ENV = "RELAXD_BRIDGE_PASSWORD_FILE"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="configuration file (its clinic: and "
                        "ui: sections)")
    parser.add_argument("--broker", metavar="URL", help="mqtts://HOST:PORT, or plain "
                        "mqtt://127.0.0.1:PORT or unix:///PATH on this machine")
    parser.add_argument("--chair-id", metavar="ID", help="this chair's id (its MQTT user)")
    parser.add_argument("--room", metavar="NAME", help="where the chair stands")
    parser.add_argument("--ca", metavar="FILE", help="the clinic's CA (PEM), the only one trusted")
    parser.add_argument("--password-file", metavar="FILE",
                        help=f"the chair's broker password (default: ${PASSWORD_FILE_ENV})")
    parser.add_argument("--certificate", metavar="FILE", help="a client certificate (PEM)")
    parser.add_argument("--key", metavar="FILE", help="the client certificate's key (PEM)")
    parser.add_argument("--socket", metavar="PATH", help="the daemon's control socket")
    parser.add_argument("--records", metavar="DIR", help="the daemon's state directory")
    parser.add_argument("--state-dir", metavar="DIR", help="the bridge's own state")
    add_timing(parser)


def add_timing(parser: argparse.ArgumentParser) -> None:
    """The clinic's clocks (tests and simulation shorten them; the defaults suit a clinic)."""
    parser.add_argument("--heartbeat", type=float, metavar="S", dest="heartbeat_s",
                        help=f"heartbeat when nothing changes (default {HEARTBEAT_S:g})")
    parser.add_argument("--command-lifetime", type=float, metavar="S",
                        dest="command_lifetime_s", help="how long a command from afar is "
                        f"honoured (default and at most {COMMAND_EXPIRY_S})")
    parser.add_argument("--broker-timeout", type=float, metavar="S", dest="broker_timeout_s",
                        help=f"how long the broker may stay silent (default {BROKER_TIMEOUT_S:g})")


def _settings(args: argparse.Namespace) -> tuple[ClinicSettings, Path, Path]:
    """The ``clinic:`` settings with the command line's over them, the control socket and the
    daemon's records."""
    from relaxd.config import Config, load_config

    config = load_config(args.config) if args.config or not args.broker else Config()
    clinic = config.clinic
    for name in ("broker", "chair_id", "room", "heartbeat_s", "command_lifetime_s",
                 "broker_timeout_s"):
        if getattr(args, name):
            setattr(clinic, name, getattr(args, name))
    password_file = args.password_file or os.environ.get(PASSWORD_FILE_ENV)
    for name, value in (("ca", args.ca), ("password_file", password_file),
                        ("certificate", args.certificate), ("key", args.key),
                        ("state_dir", args.state_dir)):
        if value:
            setattr(clinic, name, Path(value))
    if not clinic.broker:
        raise RelaxdError("no broker: give --broker URL (or clinic: broker in the configuration)")
    problems = [message for _, message in clinic.check()]
    if problems:
        raise RelaxdError(problems[0])
    socket = Path(args.socket) if args.socket else config.ui.socket
    return clinic, socket, Path(args.records) if args.records else config.state_dir


def run(args: argparse.Namespace) -> int:
    """Bridge until SIGTERM or Ctrl-C."""
    from relaxd.clinic.bridge import Bridge
    from relaxd.station.link import ChairLink

    clinic, socket, records = _settings(args)
    credentials = clinic.credentials()
    try:
        credentials.password()
    except OSError as exc:
        raise RelaxdError(f"cannot read the password file: {exc.strerror}",
                          credentials.password_file) from None

    async def bridge() -> None:
        await Bridge(ChairLink(socket), parse_broker(clinic.broker), credentials,
                     chair_id=clinic.chair_id, room=clinic.room, records=records,
                     state_dir=clinic.state_dir, timing=clinic.timing()).run()

    print(f"clinic bridge: chair {clinic.chair_id} -> {parse_broker(clinic.broker)}", flush=True)
    asyncio.run(bridge())
    return 0
