"""``relaxd ui serve | add-user | passwd | remove-user | set-pin | renew-cert``: run the
station, manage who may use it and its certificate.

    relaxd ui serve --config /etc/relaxd/config.yaml     (relaxd-ui.service runs this)
    sudo relaxd ui add-user ana --role therapist         (asks for the password twice)
    sudo relaxd ui remove-user ana                       (her sign-ins end at once)
    sudo relaxd ui set-pin                               (the kiosk's caregiver PIN)
    sudo relaxd ui renew-cert                            (the tablets' certificate)

``serve`` listens twice: plain HTTP on 127.0.0.1 (``ui.port``) for the chair's own display, and,
when ``ui.listen`` is a network address, HTTPS there (``ui.tls_port``) for tablets; each
listener has its own connection limits (:mod:`relaxd.station.guard`).
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
    parser.add_argument("--port", type=int, metavar="N",
                        help="the chair display's port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--tls-port", type=int, metavar="N",
                        help="the tablets' HTTPS port on --listen (0: any free port)")
    parser.add_argument("--link", action="store_true",
                        help=f"print a sign-in link (its token from ${TOKEN_ENV})")


#: Connection limits by listener: (from one address, in all); both together stay far below the
#: station's open files (LimitNOFILE in relaxd-ui.service).
LOOPBACK_LIMITS = (48, 96)
NETWORK_LIMITS = (8, 64)


def run_serve(args: argparse.Namespace) -> int:
    """Serve the station until SIGTERM or Ctrl-C."""
    import asyncio

    from relaxd.station.auth import Sessions
    from relaxd.station.link import ChairLink
    from relaxd.station.server import Station, create_app

    ui, records, *bundled = _settings(args)
    ui.listen = args.listen or ui.listen
    problems = [message for _, message in ui.check()]
    if problems:
        raise RelaxdError(problems[0])
    token = os.environ.pop(TOKEN_ENV, None) if args.link else None
    station = Station(link=ChairLink(args.socket or ui.socket), users=UserStore(ui.users_file),
                      sessions=Sessions(ui.session_lifetime, ui.sessions_file),
                      records=Path(args.records) if args.records else records,
                      scenario_dirs=[ui.scenario_dir, *bundled], token=token, tls=ui.tls,
                      network_start=ui.network_start, secret=_secret_key(ui.key_file),
                      certificate=ui.certificate if ui.tls else None)
    local = listening_socket("127.0.0.1", ui.port if args.port is None else args.port)
    network = listening_socket(ui.listen, ui.tls_port if args.tls_port is None else args.tls_port) \
        if ui.network else None
    if token:
        print(f"caregiver station: http://127.0.0.1:{local.getsockname()[1]}/?token={token}",
              flush=True)
    if network is not None:
        print(f"caregiver station for tablets: https://{url_host(ui.listen)}:"
              f"{network.getsockname()[1]}/", flush=True)
    app = create_app(station, loopback_port=local.getsockname()[1])
    servers = [(_server(app, ui, LOOPBACK_LIMITS, tls=False, lifespan="on"), local)]
    if network is not None:
        servers.append((_server(app, ui, NETWORK_LIMITS, tls=True, lifespan="off"), network))
    asyncio.run(_serve_all(servers))
    return 0


def _server(app: object, ui: UISettings, limits: tuple[int, int], tls: bool,
            lifespan: str) -> object:
    """One listener's uvicorn server; with ``tls``, TLS is begun by the station's protocol
    after the connection limits admit a connection (:func:`guarded_protocol`)."""
    import uvicorn

    from relaxd.station.cert import server_context
    from relaxd.station.guard import ConnectionLimit, guarded_protocol

    context = None
    if tls:
        if ui.certificate is None or ui.key is None:
            raise RelaxdError("listening on the network needs TLS: give ui.certificate and ui.key")
        context = server_context(ui.certificate, ui.key)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan=lifespan,  # type: ignore[arg-type]
                            http=guarded_protocol(ConnectionLimit(*limits), tls=context),
                            timeout_keep_alive=5, limit_concurrency=None,
                            h11_max_incomplete_event_size=16 * 1024)
    return uvicorn.Server(config)


async def _serve_all(servers: list) -> None:
    """Both listeners until either ends (a signal ends both)."""
    import asyncio

    tasks = [asyncio.ensure_future(server.serve(sockets=[sock])) for server, sock in servers]
    _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for server, _ in servers:
        server.should_exit = True
    await asyncio.gather(*pending)


def _secret_key(path: Path) -> bytes:
    """The station's secret for page tokens: kept (mode 0600) so pages survive a restart;
    a fresh one for this run if it cannot be kept."""
    import secrets

    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except OSError:
        pass
    key = secrets.token_bytes(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
    except OSError:
        pass
    return key


def url_host(listen: str) -> str:
    """The listen address as a URL's host (an IPv6 address in brackets)."""
    return f"[{listen}]" if ":" in listen else listen


def listening_socket(address: str, port: int, service: str = "the station") -> socket.socket:
    """A TCP socket listening on ``address``:``port``, handed to uvicorn (and kept across its
    workers); one line naming ``service`` when it cannot listen there."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError as exc:
        raise RelaxdError(f"{service} cannot listen on {address}:{port}: {exc.strerror}") from None
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


def read_secret(args: argparse.Namespace, what: str) -> str:
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


def configure_remove_user(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="configuration file (its ui: section)")
    parser.add_argument("--state-dir", metavar="DIR", help="the station's state directory")
    parser.add_argument("name", help="user name")


def _store(args: argparse.Namespace) -> UserStore:
    ui = _settings(args)[0]
    return UserStore(ui.users_file)


def run_add_user(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.name in store.names():
        raise RelaxdError(f"user {args.name!r} exists (change the password with `relaxd ui passwd`)")
    store.set_user(args.name, read_secret(args, "password"), args.role)
    audit.record(store.path.parent, "add user", f"{args.name} ({args.role})")
    print(f"user {args.name} ({args.role}) added to {store.path}")
    return 0


def run_passwd(args: argparse.Namespace) -> int:
    store = _store(args)
    store.set_user(args.name, read_secret(args, "password"))
    ended = _end_sign_ins(args, args.name)
    audit.record(store.path.parent, "change password", f"{args.name} ({ended} sign-ins ended)")
    print(f"password of {args.name} changed; {ended} sign-in(s) ended")
    return 0


def run_remove_user(args: argparse.Namespace) -> int:
    store = _store(args)
    store.remove_user(args.name)
    ended = _end_sign_ins(args, args.name)
    audit.record(store.path.parent, "remove user", f"{args.name} ({ended} sign-ins ended)")
    print(f"user {args.name} removed; {ended} sign-in(s) ended")
    return 0


def _end_sign_ins(args: argparse.Namespace, name: str) -> int:
    """End every sign-in of ``name`` (the running station reads the file again)."""
    from relaxd.station.auth import Sessions

    ui = _settings(args)[0]
    return Sessions(ui.session_lifetime, ui.sessions_file).drop_user(name)


# --- the tablets' certificate -----------------------------------------------------------------

def configure_renew_cert(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="configuration file (its ui: section)")
    parser.add_argument("--cert", metavar="FILE", help="certificate to write (default: "
                        "ui.certificate)")
    parser.add_argument("--key", metavar="FILE", help="private key to write (default: ui.key)")
    parser.add_argument("--days", type=int, default=None, metavar="N",
                        help="lifetime in days (default and most: 397, what browsers accept)")


def run_renew_cert(args: argparse.Namespace) -> int:
    """A new certificate with the chair's names and addresses; its fingerprint printed."""
    from relaxd.station import cert

    ui = _settings(args)[0]
    crt, key = args.cert or ui.certificate, args.key or ui.key
    if crt is None or key is None:
        raise RelaxdError("no ui.certificate and ui.key in the configuration: give --cert and --key")
    days = cert.LIFETIME_DAYS if args.days is None else args.days
    if not 1 <= days <= cert.LIFETIME_DAYS:
        raise RelaxdError(f"--days must be 1 to {cert.LIFETIME_DAYS} (browsers refuse longer)")
    info = cert.make(Path(crt), Path(key), cert.chair_names(ui.listen), days)
    print(f"certificate {crt}: valid until {info.not_after:%Y-%m-%d}, for "
          f"{', '.join(info.names)}")
    print(f"SHA-256 fingerprint (check it on each tablet): {info.fingerprint}")
    print("restart the station to use it: sudo systemctl restart relaxd-ui")
    return 0


def run_set_pin(args: argparse.Namespace) -> int:
    store = _store(args)
    store.set_pin(read_secret(args, "PIN"))
    audit.record(store.path.parent, "set PIN", "the kiosk's caregiver PIN")
    print(f"caregiver PIN set in {store.path} (it signs in only from the chair itself)")
    return 0
