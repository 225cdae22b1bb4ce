"""``relaxd scenario validate`` and ``relaxd scenario show``: the therapist's tools.

``validate`` reports every problem of each file as FILE:LINE:COL, and with ``--config`` warns
where this chair's installation caps apply. ``show`` prints a scenario's timeline and rehearses it
against a mood script through the simulated session itself (the same code as
``relaxd --simulate``, at full speed), so what it prints and plots is what the chair would do::

    relaxd scenario show scenarios/gentle-start.yaml --mood-script moods.yaml --plot levels.png
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from relaxd.config import load_config
from relaxd.control.scenario import load_scenario, mmss, timeline
from relaxd.core import yamlspec
from relaxd.core.errors import RelaxdError
from relaxd.core.options import RunOptions
from relaxd.core.yamlspec import Problem
from relaxd.outputs.actuators import cap_warnings


def configure_show(parser: argparse.ArgumentParser) -> None:
    """``relaxd scenario show FILE [--mood-script S] [--plot OUT.png]``"""
    parser.add_argument("file", help="scenario YAML file")
    parser.add_argument("--mood-script", metavar="S",
                        help="YAML list of {at, mood} / {at, press}: rehearse the scenario on it")
    parser.add_argument("--plot", metavar="OUT.png",
                        help="plot mood and levels over time (needs matplotlib; without a mood "
                             "script the mood stays neutral)")


def rehearse(scenario: Path, script: Path | None
             ) -> tuple[list[dict[str, Any]], list[dict[str, float]]]:
    """The events of a simulated session of ``scenario`` driven by ``script`` (neutral if None),
    and its trace (each output as driven, every tick)."""
    from relaxd.daemon.build import build_session
    from relaxd.records.events import read_trace

    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        if script is None:
            script = Path(tmp) / "neutral.yaml"
            script.write_text("- {at: 0, mood: neutral}\n")
        events = Path(tmp) / "events.jsonl"
        options = RunOptions(simulate=True, mood_script=script, scenario=str(scenario),
                             speed=math.inf, events=events, trace=Path(tmp) / "trace.csv",
                             out=Path(tmp), quiet=True)
        logging.disable(logging.CRITICAL)  # the alerts are printed below, in the timeline
        try:
            build_session(options, stack).run()
        finally:
            logging.disable(logging.NOTSET)
        return ([json.loads(line) for line in events.read_text().splitlines()],
                read_trace(Path(tmp) / "trace.csv"))


def run_show(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.file)
    print("\n".join(timeline(scenario)))
    if not (args.mood_script or args.plot):
        return 0
    events, driven = rehearse(Path(args.file),
                              Path(args.mood_script) if args.mood_script else None)
    for e in events:
        if e["type"] == "decision":
            print(f"  {mmss(e['t']):>6} {e['action']:<8} {e['reason']}")
        elif e["type"] == "alert":
            print(f"  {mmss(e['t']):>6} ALERT    {e['reason']}: {e['detail']}")
        elif e["type"] == "estop":
            print(f"  {mmss(e['t']):>6} estop    {e['action']} ({e['source']})")
    if args.plot:
        from relaxd.records.sessions import plot_events

        plot_events(events, args.plot, title=scenario.name, driven=driven)
        print(f"plot written to {args.plot}")
    return 0


def configure_validate(parser: argparse.ArgumentParser) -> None:
    """``relaxd scenario validate [--config FILE] FILE...``"""
    parser.add_argument("files", nargs="+", metavar="FILE", help="scenario YAML files")
    parser.add_argument("--config", metavar="FILE",
                        help="also warn where a scenario asks for more than this chair's "
                             "installation caps (actuators.max_level, max_ramp) allow")


def run_validate(args: argparse.Namespace) -> int:
    """Print every problem as FILE:LINE:COL: message, "FILE: ok" for good files; 1 if any bad.
    With ``--config``, "FILE:LINE:COL: warning: ..." where the installation caps apply."""
    settings = None
    if getattr(args, "config", None):
        settings = load_config(args.config).actuators
    bad = False
    for f in args.files:
        try:
            scenario = load_scenario(f)
        except RelaxdError as exc:
            print(exc)
            bad = True
            continue
        if settings is not None:
            node = yamlspec.compose(f)
            warnings = [Problem(*yamlspec.locate(node, keys), f"warning: {message}")
                        for keys, message in cap_warnings(scenario, settings)]
            for w in sorted(warnings, key=lambda w: (w.line, w.col)):
                print(w.format(f))
        print(f"{f}: ok")
    return 1 if bad else 0
