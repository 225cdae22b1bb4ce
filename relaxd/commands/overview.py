"""``relaxd overview``: the clinic's overview of every chair (relaxd-overview.service).

    relaxd overview --broker mqtts://broker.clinic:8883 --ca /etc/relaxd-overview/ca.pem \\
        --password-file /etc/relaxd-overview/broker-password
    relaxd overview --broker mqtt://127.0.0.1:1883 --port 0 --link     (simulation)
    sudo relaxd overview-user ana --role nurse                          (or viewer)
"""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path

from relaxd.clinic.settings import (
    BrokerAddress,
    Credentials,
    Timing,
    is_loopback,
    parse_broker,
)
from relaxd.commands.bridge import add_timing
from relaxd.commands.ui import listening_socket, read_secret, url_host
from relaxd.core.errors import RelaxdError

STATE_DIR_ENV = "RELAXD_OVERVIEW_STATE_DIR"
SESSION_LIFETIME_S = 12 * 3600
#: How long a stop waits for open connections (a browser's live view never closes by itself),
#: well inside the unit's TimeoutStopSec.
SHUTDOWN_WAIT_S = 2


def _state_dir(args: argparse.Namespace) -> Path:
    return Path(args.state_dir or os.environ.get(STATE_DIR_ENV) or "/var/lib/relaxd-overview")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", metavar="URL", required=True,
                        help="mqtts://HOST:PORT, or plain mqtt://127.0.0.1:PORT or unix:///PATH")
    parser.add_argument("--user", metavar="NAME", default="overview",
                        help="the overview's broker user (default: %(default)s)")
    parser.add_argument("--name", metavar="NAME", default="desk",
                        help="this overview's name on the broker (default: %(default)s)")
    parser.add_argument("--ca", metavar="FILE", help="the clinic's CA (PEM), the only one trusted")
    parser.add_argument("--password-file", metavar="FILE", help="the broker password")
    parser.add_argument("--certificate", metavar="FILE", help="a client certificate (PEM)")
    parser.add_argument("--key", metavar="FILE", help="the client certificate's key (PEM)")
    parser.add_argument("--listen", metavar="ADDRESS", default="127.0.0.1",
                        help="listen address (anything but loopback needs --web-certificate)")
    parser.add_argument("--port", type=int, default=8090, metavar="N", help="0: any free port")
    parser.add_argument("--web-certificate", metavar="FILE", help="TLS certificate for browsers")
    parser.add_argument("--web-key", metavar="FILE", help="its key")
    parser.add_argument("--state-dir", metavar="DIR",
                        help=f"accounts and overview.sqlite (default: ${STATE_DIR_ENV} or "
                             "/var/lib/relaxd-overview)")
    parser.add_argument("--link", action="store_true",
                        help="print a one-time sign-in link (simulation, tests)")
    add_timing(parser)


def _credentials(args: argparse.Namespace) -> tuple[BrokerAddress, Credentials]:
    try:
        broker = parse_broker(args.broker)
    except ValueError as exc:
        raise RelaxdError(str(exc)) from None
    credentials = Credentials(args.user, *(Path(p) if p else None for p in (
        args.password_file, args.ca, args.certificate, args.key)))
    problems = list(credentials.problems(broker))
    if problems:
        raise RelaxdError(problems[0])
    try:
        credentials.password()
    except OSError as exc:
        raise RelaxdError(f"cannot read the password file: {exc.strerror}",
                          credentials.password_file) from None
    return broker, credentials


def _timing(args: argparse.Namespace) -> Timing:
    given = {name: getattr(args, name) for name in ("heartbeat_s", "command_lifetime_s",
                                                     "broker_timeout_s") if getattr(args, name)}
    try:
        return Timing(**given)
    except ValueError as exc:
        raise RelaxdError(str(exc)) from None


def _web_tls(args: argparse.Namespace) -> bool:
    tls = bool(args.web_certificate and args.web_key)
    if not is_loopback(args.listen) and not tls:
        raise RelaxdError(f"listening on {args.listen} needs TLS: give --web-certificate and "
                          "--web-key")
    return tls


def run(args: argparse.Namespace) -> int:
    """Serve the overview until SIGTERM or Ctrl-C."""
    import uvicorn

    from relaxd.clinic.overview import Overview
    from relaxd.clinic.server import Desk, OverviewUsers, create_app
    from relaxd.station.auth import Sessions

    broker, credentials = _credentials(args)
    tls, state_dir, timing = _web_tls(args), _state_dir(args), _timing(args)
    token = secrets.token_urlsafe(24) if args.link else None
    desk = Desk(overview=Overview(broker, credentials, state_dir, args.name, timing),
                users=OverviewUsers(state_dir / "users.json"),
                sessions=Sessions(SESSION_LIFETIME_S), token=token, tls=tls)
    sock = listening_socket(args.listen, args.port, "the overview")
    url = f"{'https' if tls else 'http'}://{url_host(args.listen)}:{sock.getsockname()[1]}/"
    print(f"clinic overview: {url}" + (f"?token={token}" if token else ""), flush=True)
    config = uvicorn.Config(create_app(desk), log_level="warning", access_log=False,
                            ssl_certfile=args.web_certificate if tls else None,
                            ssl_keyfile=args.web_key if tls else None,
                            timeout_keep_alive=5, limit_concurrency=128, lifespan="on",
                            timeout_graceful_shutdown=SHUTDOWN_WAIT_S)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def configure_user(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="user name")
    parser.add_argument("--role", choices=("nurse", "viewer"),
                        help="nurse (may send a software stop, calmer, end gently, hold) or "
                             "viewer (looks only); leave out to change a password")
    parser.add_argument("--state-dir", metavar="DIR", help="the overview's state directory")
    parser.add_argument("--password-stdin", action="store_true",
                        help="read the password from standard input, not a prompt")


def run_user(args: argparse.Namespace) -> int:
    from relaxd.clinic.server import OverviewUsers

    store = OverviewUsers(_state_dir(args) / "users.json")
    store.set_user(args.name, read_secret(args, "password"), args.role)
    print(f"overview user {args.name} ({args.role or 'password changed'}) in {store.path}")
    return 0
