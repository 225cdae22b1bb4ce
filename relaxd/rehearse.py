"""``relaxd scenario show``: a scenario's timeline, and a rehearsal of it against a mood script.

The rehearsal is the simulated session itself (the same code as ``relaxd --simulate``, at full
speed), so what it prints and plots is what the chair would do::

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

from relaxd.scenario import load_scenario, mmss, timeline


def configure(parser: argparse.ArgumentParser) -> None:
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
    from relaxd.app import build_session
    from relaxd.events import read_trace

    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        if script is None:
            script = Path(tmp) / "neutral.yaml"
            script.write_text("- {at: 0, mood: neutral}\n")
        events = Path(tmp) / "events.jsonl"
        args = argparse.Namespace(
            config=None, simulate=True, video=None, images=None, camera=None,
            mood_script=str(script), scenario=str(scenario), speed=math.inf,
            events=str(events), trace=str(Path(tmp) / "trace.csv"), out=tmp, quiet=True,
            verbose=False)
        logging.disable(logging.CRITICAL)  # the alerts are printed below, in the timeline
        try:
            build_session(args, stack).run()
        finally:
            logging.disable(logging.NOTSET)
        return ([json.loads(line) for line in events.read_text().splitlines()],
                read_trace(Path(tmp) / "trace.csv"))


def run(args: argparse.Namespace) -> int:
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
        from relaxd.sessions import plot_events

        plot_events(events, args.plot, title=scenario.name, driven=driven)
        print(f"plot written to {args.plot}")
    return 0
