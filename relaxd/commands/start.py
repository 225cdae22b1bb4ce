"""``relaxd start --child ID --scenario NAME|auto``: a caregiver's Start from a shell on the chair.

It sends the station's Start over the daemon's control socket (the daemon runs with a station:
``ui.enabled`` on the chair, ``relaxd --simulate --ui`` on a laptop), so the daemon runs the same
checks as for the station's Start button: the e-stop (a Start clears only the station's own
STOP, never the e-stop button's or a fault's), the child's consent and limits. It prints the
scenario chosen and why, or the refusal as one line with exit status 2::

    $ relaxd start --child ada --scenario auto
    started Calm blue waves for child ada: Calm blue waves: calm in 4 of 5 session(s)
    $ relaxd start --child bo --scenario auto
    relaxd: start refused: child bo: no guardian consent recorded (...)

Imports nothing heavy (the protocol is :mod:`relaxd.station.protocol`'s plain JSON lines).
"""

from __future__ import annotations

import argparse
import socket
from pathlib import Path
from typing import Any

from relaxd.core.errors import RelaxdError
from relaxd.station.audit import shell_user

TIMEOUT_S = 30.0  # a recommendation reads every child's sessions


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--child", metavar="ID", required=True, help="the session's child")
    parser.add_argument("--scenario", metavar="NAME|auto", default="auto",
                        help="an installed scenario (its file's stem or name), or 'auto': the "
                             "recommendation for the child (default)")
    parser.add_argument("--manual", action="store_true",
                        help="manual mode: no camera (the child's consent may cover only this)")
    parser.add_argument("--config", metavar="FILE", help="configuration file (its ui.socket)")
    parser.add_argument("--socket", metavar="PATH", help="the daemon's control socket")
    parser.add_argument("--simulate", action="store_true",
                        help="the chair of `relaxd --simulate --ui --out DIR`")
    parser.add_argument("--out", metavar="DIR", default="relaxd-sim",
                        help="--simulate: its --out folder (default: %(default)s)")


def socket_path(args: argparse.Namespace) -> Path:
    """The socket named, else where the hardware's daemon listens (the configuration's
    ``ui.socket``; a simulated chair's, from its ``--out`` folder)."""
    if args.socket:
        return Path(args.socket)
    from relaxd.daemon.hardware import hardware_configured

    return hardware_configured(args.config, simulate=args.simulate,
                               out=Path(args.out)).control_socket()


def ask(path: Path, message: dict[str, Any], timeout: float = TIMEOUT_S) -> dict[str, Any]:
    """One command over the control socket; the daemon's answer. RelaxdError if none."""
    from relaxd.station.protocol import decode, encode

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            s.sendall(encode(message))
            line = s.makefile("rb").readline()
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise RelaxdError(f"no chair daemon answers on {path} ({why}): is relaxd running with "
                          "the station (ui.enabled)?") from None
    try:
        return decode(line)
    except ValueError:
        raise RelaxdError(f"the daemon on {path} gave no answer") from None


def run(args: argparse.Namespace) -> int:
    path = socket_path(args)
    answer = ask(path, {"cmd": "start", "child": args.child, "scenario": args.scenario,
                        "manual": args.manual, "by": shell_user()})
    if not answer.get("ok"):
        raise RelaxdError(f"start refused: {answer.get('error', 'no reason given')}")
    print(f"started {answer.get('scenario')} for child {answer.get('child')}"
          f"{' (manual mode)' if args.manual else ''}: {answer.get('why')}")
    return 0
