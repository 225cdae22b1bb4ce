"""``relaxd children study``: virtual children play many sessions; the learner against always
the default scenario and a random one."""

from __future__ import annotations

import argparse

from relaxd.core.errors import RelaxdError
from relaxd.sim.study import format_body, format_table, plot_study, run_study, study_scenarios


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--children", type=int, default=30,
                   help="how many virtual children (1..1000; default 30)")
    p.add_argument("--sessions", type=int, default=20,
                   help="sessions each child plays with each policy (1..200; default 20)")
    p.add_argument("--seed", type=int, default=1,
                   help="the random seed: the same seed gives the same study (default 1)")
    p.add_argument("--scenarios", metavar="DIR",
                   help="the folder of scenarios to choose from (default: the bundled ones)")
    p.add_argument("--plot", metavar="OUT.png",
                   help="also draw the curves to this PNG file (needs matplotlib; default: none)")


def run(args: argparse.Namespace) -> int:
    if not (1 <= args.children <= 1000 and 1 <= args.sessions <= 200):
        raise RelaxdError("--children 1..1000 and --sessions 1..200")
    if args.plot:
        _check_plotting()
    result = run_study(args.children, args.sessions, args.seed, study_scenarios(args.scenarios))
    print(format_table(result["summary"], args.children, args.sessions))
    print()
    print(format_body(result["body"], args.children))
    if args.plot:
        plot_study(result, args.plot)
        print(f"curves written to {args.plot}")
    return 0


def _check_plotting() -> None:
    """Before minutes of work: --plot needs matplotlib."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise RelaxdError("--plot needs matplotlib (pip install 'relaxd[plots]')") from None
