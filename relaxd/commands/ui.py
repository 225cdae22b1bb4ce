"""``relaxd ui serve | add-user | passwd | set-pin``: run the station, manage who may use it.

    relaxd ui serve --config /etc/relaxd/config.yaml     (relaxd-ui.service runs this)
    sudo relaxd ui add-user ana --role therapist         (asks for the password twice)
    sudo relaxd ui set-pin                               (the kiosk's caregiver PIN)
"""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import sys
from pathlib import Path

from relaxd.core.errors import RelaxdError
from relaxd.station import audit
from relaxd.station.auth import ROLES, UserStore
from relaxd.station.launch import TOKEN_ENV
from relaxd.station.settings import UISettings

#: The sign-in link's token reaches ``relaxd ui serve`` in this variable (never on argv).


def _settings(args: argparse.Namespace) -> tuple[UISettings, Path, Path, Path]:
    """The ``ui:`` settings, the daemon's state directory, and the configured scenario's and
    the bundled scenarios' folders."""
    from relaxd.config import Config, load_config
    from relaxd.core.paths import resource_dir

    config = load_config(args.config) if args.config or not getattr(args, "state_dir", None) \
        else Config()
    ui = config.ui
    if getattr(args, "state_dir", None):
        ui.state_dir = Path(args.state_dir)
    return ui, config.state_dir, Path(config.scenario).parent, resource_dir("scenarios")


def configure_serve(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="configuration file (its ui: section)")
    parser.add_argument("--socket", metavar="PATH", help="the daemon's control socket")
    parser.add_argument("--records", metavar="DIR", help="the daemon's state directory")
    parser.add_argument("--state-dir", metavar="DIR", help="the station's accounts and scenarios")
    parser.add_argument("--listen", metavar="ADDRESS", help="listen address (default: ui.listen)")
    parser.add_argument("--port", type=int, metavar="N", help="port (0: any free port)")
    parser.add_argument("--link", action="store_true",
                        help=f"print a sign-in link (its token from ${TOKEN_ENV})")


def run_serve(args: argparse.Namespace) -> int:
    """Serve the station until SIGTERM or Ctrl-C."""
    import uvicorn

    from relaxd.station.auth import Sessions
    from relaxd.station.link import ChairLink
    from relaxd.station.server import Station, create_app

    ui, records, *bundled = _settings(args)
    listen = args.listen or ui.listen
    ui.listen = listen
    problems = [message for _, message in ui.check()]
    if problems:
        raise RelaxdError(problems[0])
    token = os.environ.pop(TOKEN_ENV, None) if args.link else None
    station = Station(link=ChairLink(args.socket or ui.socket), users=UserStore(ui.users_file),
                      sessions=Sessions(ui.session_lifetime),
                      records=Path(args.records) if args.records else records,
                      scenario_dirs=[ui.scenario_dir, *bundled], token=token, tls=ui.tls)
    sock = _bind(listen, ui.port if args.port is None else args.port)
    port = sock.getsockname()[1]
    if token:
        scheme = "https" if ui.tls else "http"
        print(f"caregiver station: {scheme}://{_host(listen)}:{port}/?token={token}", flush=True)
    config = uvicorn.Config(create_app(station), log_level="warning", access_log=False,
                            ssl_certfile=str(ui.certificate) if ui.tls else None,
                            ssl_keyfile=str(ui.key) if ui.tls else None,
                            timeout_keep_alive=5, limit_concurrency=64, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def _host(listen: str) -> str:
    return f"[{listen}]" if ":" in listen else listen


def _bind(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError as exc:
        raise RelaxdError(f"the station cannot listen on {address}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


# --- accounts --------------------------------------------------------------------------------

def configure_users(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="configuration file (its ui: section)")
    parser.add_argument("--state-dir", metavar="DIR", help="the station's state directory")
    parser.add_argument("--password-stdin", action="store_true",
                        help="read the password (or PIN) from standard input, not a prompt")


def configure_add_user(parser: argparse.ArgumentParser) -> None:
    configure_users(parser)
    parser.add_argument("name", help="user name")
    parser.add_argument("--role", choices=ROLES, default="caregiver",
                        help="caregiver (watch, stop, start, acknowledge) or therapist (also "
                             "scenarios and the audit log)")


def configure_passwd(parser: argparse.ArgumentParser) -> None:
    configure_users(parser)
    parser.add_argument("name", help="user name")


def _secret(args: argparse.Namespace, what: str) -> str:
    """The PIN or password, typed twice at a prompt or read once from standard input."""
    if args.password_stdin:
        given = sys.stdin.readline().rstrip("\n")
        if not given:
            raise RelaxdError(f"no {what} on standard input")
        return given
    if not sys.stdin.isatty():
        raise RelaxdError(f"no terminal to type the {what} at: pass it on standard input with "
                          "--password-stdin")
    try:
        first = getpass.getpass(f"{what}: ")
        again = getpass.getpass(f"{what} again: ")
    except EOFError:
        raise RelaxdError(f"no {what} given (end of input): type it at the prompt, or pass it "
                          "on standard input with --password-stdin") from None
    if again != first:
        raise RelaxdError(f"the two {what}s differ")
    return first


def _store(args: argparse.Namespace) -> UserStore:
    ui = _settings(args)[0]
    return UserStore(ui.users_file)


def run_add_user(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.name in store.names():
        raise RelaxdError(f"user {args.name!r} exists (change the password with `relaxd ui passwd`)")
    store.set_user(args.name, _secret(args, "password"), args.role)
    audit.record(store.path.parent, "add user", f"{args.name} ({args.role})")
    print(f"user {args.name} ({args.role}) added to {store.path}")
    return 0


def run_passwd(args: argparse.Namespace) -> int:
    store = _store(args)
    store.set_user(args.name, _secret(args, "password"))
    audit.record(store.path.parent, "change password", args.name)
    print(f"password of {args.name} changed")
    return 0


def run_set_pin(args: argparse.Namespace) -> int:
    store = _store(args)
    store.set_pin(_secret(args, "PIN"))
    audit.record(store.path.parent, "set PIN", "the kiosk's caregiver PIN")
    print(f"caregiver PIN set in {store.path} (it signs in only from the chair itself)")
    return 0
