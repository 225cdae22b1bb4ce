"""``relaxd reset``: ask the running chair to clear a latched stop, only where the configuration
lets a shell stand for the reset button at the chair (``safety.remote_reset``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from relaxd.config import load_config
from relaxd.core.errors import RelaxdError
from relaxd.safety.latch import RESET_REQUEST_TTL_S, FaultLatch


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="configuration file")
    parser.add_argument("--simulate", action="store_true",
                        help="rehearse: the chair of `relaxd --simulate --keep-latch --out DIR` "
                        "(its reset button; always allowed)")
    parser.add_argument("--out", metavar="DIR", default="relaxd-sim",
                        help="--simulate: that chair's folder (default relaxd-sim)")


def run(args: argparse.Namespace) -> int:
    """Ask the running daemon to clear a latched stop -- only where the configuration allows
    a reset away from the chair (``safety.remote_reset``); otherwise say where the button is.
    In simulation it stands for the simulated chair's reset button."""
    config = load_config(args.config)
    state_dir = Path(args.out) if args.simulate else config.state_dir
    latch = FaultLatch.in_state_dir(state_dir)
    if latch.reason is None:
        print("relaxd: nothing is latched" + (f" in {state_dir} (a simulated chair keeps its "
                                              "latch there only with --keep-latch)"
                                              if args.simulate else ""))
        return 0
    if not (config.safety.remote_reset or args.simulate):
        raise RelaxdError(
            f"latched ({latch.reason}); to restart, a caregiver at the chair holds its reset "
            f"button (GPIO{config.safety.reset_pin}) for {config.safety.hold_to_reset:g} s and "
            "lets go. `relaxd reset` is off (safety.remote_reset: false) so that nobody away "
            "from the chair can restart stimulation")
    try:
        latch.request_reset()
    except OSError as exc:
        raise RelaxdError(f"cannot ask for a reset: {exc.strerror}", latch.request) from None
    print(f"reset requested for stop {latch.stop_seq} ({latch.reason}), valid for "
          f"{RESET_REQUEST_TTL_S:g} s; the chair is then idle with every output at 0 until a "
          "caregiver starts a session")
    return 0
