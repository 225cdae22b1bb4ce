"""The ``relaxd`` command: the chair's daemon, ``--simulate`` for laptops, and the tools around them.

    relaxd                              run on the chair (systemd starts this)
    relaxd --simulate                   the bundled demo, no hardware or camera needed
    relaxd --simulate --video F         the whole loop on a video file
    relaxd check | bench | model evaluate DIR | scenario validate F... | sessions
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import sys
from typing import Callable

from relaxd import __version__
from relaxd.core.errors import RelaxdError

log = logging.getLogger("relaxd")

# subcommand -> (module, configure function, run function, help)
_COMMANDS: dict[tuple[str, ...], tuple[str, str, str, str]] = {
    ("check",): ("relaxd.commands.check", "configure", "run", "check camera, model, pins, audio and storage"),
    ("bench",): ("relaxd.commands.bench", "configure", "run", "time the vision pipeline on 640x480 frames"),
    ("model", "evaluate"): ("relaxd.commands.evaluate", "configure", "run",
                            "evaluate an emotion model on a folder in FER2013 layout"),
    ("model", "calibrate"): ("relaxd.commands.calibrate", "configure", "run",
                             "fit the 3-mood decision's calibration on half of a folder"),
    ("scenario", "validate"): ("relaxd.commands.scenario", "configure_validate", "run_validate",
                               "check scenario files, reporting every problem"),
    ("scenario", "show"): ("relaxd.commands.scenario", "configure_show", "run_show",
                           "print a scenario's timeline (and plot it against a mood script)"),
    ("sessions",): ("relaxd.commands.sessions", "configure", "run", "list and export recorded sessions"),
    # Child profiles, and the study of the scenario learner
    ("children", "add"): ("relaxd.commands.children", "configure_add", "run_add",
                          "add a child (a pseudonym unless a name is given)"),
    ("children", "list"): ("relaxd.commands.children", "configure_list", "run_list", "list the children"),
    ("children", "show"): ("relaxd.commands.children", "configure_one", "run_show",
                           "a child's profile, consent, limits, baseline and scenario record"),
    ("children", "set"): ("relaxd.commands.children", "configure_set", "run_set",
                          "change a child's consent, limits, pinned or forbidden scenarios"),
    ("children", "rename"): ("relaxd.commands.children", "configure_rename", "run_rename",
                             "rename a child"),
    ("children", "export"): ("relaxd.commands.children", "configure_export", "run_export",
                             "write a child's profile and sessions as JSON"),
    ("children", "delete"): ("relaxd.commands.children", "configure_delete", "run_delete",
                             "erase a child and every session linked to them"),
    ("children", "study"): ("relaxd.commands.study", "configure", "run",
                            "virtual children: the learner against the default and random"),
    ("reset",): ("relaxd.commands.reset", "configure", "run",
                 "ask the running chair to clear a latched stop (only if safety.remote_reset)"),
    ("start",): ("relaxd.commands.start", "configure", "run",
                 "start a child's session from a shell (the daemon runs with the station)"),
    ("safe-off",): ("relaxd.commands.safe_off", "configure", "run",
                    "drive every actuator pin off; latch if the last run ended uncleanly"),
    ("config", "boot-pins"): ("relaxd.commands.config", "configure_boot_pins", "run_boot_pins",
                              "print the config.txt gpio= line: the actuator pins off from boot"),
    # The clinic: a bridge per chair, one overview
    ("bridge",): ("relaxd.commands.bridge", "configure", "run",
                  "bridge this chair to the clinic's MQTT broker (status, alerts, remote stop)"),
    ("overview",): ("relaxd.commands.overview", "configure", "run",
                    "the clinic's overview of every chair, through the broker (web application)"),
    ("overview-user",): ("relaxd.commands.overview", "configure_user", "run_user",
                         "add a clinic overview account (nurse or viewer), or change its password"),
    # The caregiver station
    ("ui", "serve"): ("relaxd.commands.ui", "configure_serve", "run_serve",
                      "run the caregiver station (web application) beside the daemon"),
    ("ui", "add-user"): ("relaxd.commands.ui", "configure_add_user", "run_add_user",
                         "add a station account (caregiver or therapist)"),
    ("ui", "passwd"): ("relaxd.commands.ui", "configure_passwd", "run_passwd",
                       "change a station account's password"),
    ("ui", "set-pin"): ("relaxd.commands.ui", "configure_users", "run_set_pin",
                        "set the caregiver PIN for signing in at the chair's own screen"),
    ("ui", "remove-user"): ("relaxd.commands.ui", "configure_remove_user", "run_remove_user",
                            "remove a station account and end its sign-ins"),
    ("ui", "renew-cert"): ("relaxd.commands.ui", "configure_renew_cert", "run_renew_cert",
                           "make a new certificate for tablets (names, addresses, fingerprint)"),
}


def _speed(text: str) -> float:
    if text == "max":
        return math.inf
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number or 'max'") from None
    if not 0.1 <= value <= 1e6:
        raise argparse.ArgumentTypeError("expected 0.1 to 1000000, or 'max'")
    return value


def _camera_index(text: str) -> int:
    if not text.isdigit() or int(text) > 63:
        raise argparse.ArgumentTypeError("expected a webcam number, 0 to 63")
    return int(text)


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE",
                   help="configuration file (default: $RELAXD_CONFIG or /etc/relaxd/config.yaml)")
    p.add_argument("--simulate", action="store_true",
                   help="no Pi hardware: mock GPIO pins, audio rendered to a WAV file")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--video", metavar="FILE", help="read frames from a video file")
    src.add_argument("--images", metavar="DIR", help="read frames from a folder of images")
    src.add_argument("--camera", metavar="N", type=_camera_index,
                     help="read frames from webcam number N")
    src.add_argument("--mood-script", metavar="FILE",
                     help="skip vision: feed moods (and e-stop presses) from a YAML script")
    src.add_argument("--virtual-child", metavar="FILE",
                     help="--simulate: a virtual child whose face answers what the chair plays")
    p.add_argument("--scenario", metavar="FILE|NAME|auto",
                   help="scenario to play (default: from config); with --child, an installed "
                        "scenario's name or 'auto' (the recommendation)")
    p.add_argument("--child", metavar="ID", help="the session's child (simulation: created on "
                   "first use)")
    p.add_argument("--scenarios", metavar="DIR",
                   help="installed scenarios for --scenario auto (default: the configured "
                        "scenario's folder)")
    p.add_argument("--speed", type=_speed, metavar="N|max",
                   help="scripted input only: run N times faster than real time, or 'max'")
    p.add_argument("--events", metavar="FILE", help="write every event as JSON Lines to FILE")
    p.add_argument("--trace", metavar="FILE.csv",
                   help="--simulate: each tick, every output as driven (t,light,vibration,audio)")
    p.add_argument("--out", metavar="DIR", default="relaxd-sim",
                   help="--simulate: folder for the WAV file and session records (default: %(default)s)")
    p.add_argument("--keep-latch", action="store_true",
                   help="--simulate: keep the stop latch and run marker in --out DIR as the "
                        "chair keeps them in its state directory (to rehearse a crash)")
    p.add_argument("--ui", action="store_true",
                   help="--simulate: run the caregiver station beside the simulated chair, which "
                        "stays up, idle, after a session ends (Ctrl-C ends it)")
    p.add_argument("--ui-port", type=int, default=0, metavar="N",
                   help="--ui: the station's port (default 0: any free port)")
    p.add_argument("--bridge", metavar="URL",
                   help="--ui: a bridge to the clinic's broker beside the simulated chair "
                        "(mqtt://127.0.0.1:PORT, unix:///PATH or mqtts://HOST:PORT)")
    p.add_argument("--chair-id", metavar="ID", help="--bridge: the simulated chair's id")
    p.add_argument("--bridge-password-file", metavar="FILE",
                   help="--bridge: the chair's broker password (default: "
                        "$RELAXD_BRIDGE_PASSWORD_FILE)")
    p.add_argument("--quiet", action="store_true", help="no live status line")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="relaxd", description="Adaptive relaxation chair: light, sound and vibration that "
        "follow a child's mood, with an emergency stop that always wins.")
    parser.add_argument("--version", action="version", version=f"relaxd {__version__}")
    _add_run_arguments(parser)
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    leaves: dict[str, argparse.ArgumentParser] = {}
    for words, (*_, help_text) in _COMMANDS.items():
        where = subs
        if len(words) == 2:
            if words[0] not in groups:
                group = subs.add_parser(words[0], help=f"{words[0]} commands")
                groups[words[0]] = group.add_subparsers(dest="subcommand", metavar="COMMAND",
                                                        required=True)
            where = groups[words[0]]
        leaf = where.add_parser(words[-1], help=help_text, description=help_text)
        leaf.set_defaults(_command=words)
        leaves[" ".join(words)] = leaf
    return parser, leaves


def _named_commands(argv: list[str]) -> list[tuple[str, ...]]:
    """The subcommands whose words appear in ``argv`` in order (at most one is meant)."""
    return [words for words in _COMMANDS
            if any(tuple(argv[i:i + len(words)]) == words for i in range(len(argv)))]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser, leaves = build_parser()
    # The named subcommand's module adds its arguments; only it is imported, so a light command
    # (safe-off) loads nothing heavy.
    runs: dict[tuple[str, ...], Callable[[argparse.Namespace], int]] = {}
    for words in _named_commands(argv):
        module_name, configure, run, _ = _COMMANDS[words]
        module = importlib.import_module(module_name)
        getattr(module, configure)(leaves[" ".join(words)])
        runs[words] = getattr(module, run)
    args = parser.parse_args(argv)
    try:
        if getattr(args, "_command", None):
            logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
            return runs[args._command](args)
        from relaxd.core.options import RunOptions
        from relaxd.daemon.build import run as run_chair
        return run_chair(RunOptions.of(args))
    except RelaxdError as exc:
        print(f"relaxd: {exc}", file=sys.stderr)
        return exc.exit_code
    except PermissionError as exc:
        print(f"relaxd: {exc.filename or exc}: permission denied (run it with sudo, or as the "
              "relaxd user)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
