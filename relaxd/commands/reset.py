"""``relaxd reset``: ask the running chair to clear a latched stop, only where the configuration
lets a shell stand for the reset button at the chair (``safety.remote_reset``)."""

from __future__ import annotations

import argparse

from relaxd.config import load_config
from relaxd.core.errors import RelaxdError
from relaxd.safety.latch import RESET_REQUEST_TTL_S, FaultLatch


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="configuration file")


def run(args: argparse.Namespace) -> int:
    """Ask the running daemon to clear a latched stop -- only where the configuration allows
    a reset away from the chair (``safety.remote_reset``); otherwise say where the button is."""
    config = load_config(args.config)
    latch = FaultLatch.in_state_dir(config.state_dir)
    if latch.reason is None:
        print("relaxd: nothing is latched")
        return 0
    if not config.safety.remote_reset:
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
