"""``relaxd sessions``: list the recorded sessions, each with its child's name, and export one
as CSV (one row an event) or a plot of mood and levels over time.

The session records name a child by id only; the names live in the child profiles
(:mod:`relaxd.children.store`), readable by relaxd's user alone. Where they cannot be read (another
user), the id is shown.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from relaxd.children.store import child_names
from relaxd.control.scenario import mmss
from relaxd.core.errors import RelaxdError
from relaxd.records.sessions import export_csv, list_sessions, load_events, plot_events


def configure(parser: argparse.ArgumentParser) -> None:
    """``relaxd sessions [--state-dir D]`` and ``... export ID [--csv OUT] [--plot OUT.png]``"""
    def add_state_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS,
                       help="where sessions.sqlite lives (default: the configuration's "
                            "state_dir: $RELAXD_STATE_DIR, $STATE_DIRECTORY or /var/lib/relaxd)")

    add_state_dir(parser)
    sub = parser.add_subparsers(dest="sessions_command")
    export = sub.add_parser("export", help="write one session as CSV and/or a PNG plot")
    add_state_dir(export)
    export.add_argument("id", type=int, help="session id (from the list)")
    export.add_argument("--csv", metavar="OUT", help="CSV file to write")
    export.add_argument("--plot", metavar="OUT.png", help="PNG of mood and levels over time")


def run(args: argparse.Namespace) -> int:
    from relaxd.config import load_config

    state_dir = Path(getattr(args, "state_dir", None)
                     or load_config(getattr(args, "config", None)).state_dir)
    if not state_dir.is_dir():
        raise RelaxdError("no such state directory (give the folder of the records, e.g. "
                          "relaxd-sim after `relaxd --simulate`)", state_dir)
    if getattr(args, "sessions_command", None) == "export":
        return _export(state_dir, args)
    return _list(state_dir)


def _export(state_dir: Path, args: argparse.Namespace) -> int:
    if not (args.csv or args.plot):
        raise RelaxdError("give --csv OUT and/or --plot OUT.png")
    events = load_events(state_dir, args.id)
    if args.csv:
        export_csv(events, args.csv)
        print(f"session {args.id}: {len(events)} events written to {args.csv}")
    if args.plot:
        child = next((e.get("child") for e in events if e["type"] == "session"), None)
        name = child_names(state_dir).get(child, child) if child else None
        plot_events(events, args.plot, title=f"session {args.id}" + (f": {name}" if name else ""))
        print(f"session {args.id}: plot written to {args.plot}")
    return 0


def _list(state_dir: Path) -> int:
    sessions = list_sessions(state_dir)
    if not sessions:
        print(f"no sessions recorded in {state_dir}")
        return 0
    names = child_names(state_dir)
    print(f"{'id':>4}  {'started (UTC)':<25} {'length':>7} {'events':>7} {'alerts':>6} "
          f"{'e-stops':>7}  {'scenario':<20} {'child':<20} status")
    for s in sessions:
        status = "ended" if s.ended else "running or interrupted"
        child = names.get(s.child, s.child) if s.child else "-"
        print(f"{s.id:>4}  {s.started:<25} {mmss(s.duration):>7} {s.events:>7} {s.alerts:>6} "
              f"{s.estops:>7}  {s.scenario:<20} {child:<20} {status}")
    return 0
