"""``relaxd reset``: ask the running chair to clear a latched stop, only where the configuration
lets a shell stand for the reset button at the chair (``safety.remote_reset``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from relaxd.core.errors import RelaxdError
from relaxd.daemon.hardware import hardware_configured
from relaxd.safety.latch import RESET_REQUEST_TTL_S


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
    hw = hardware_configured(args.config, simulate=args.simulate, out=Path(args.out),
                             keep_latch=True)
    latch = hw.kept_latch()
    assert latch is not None  # a chair's, or a --keep-latch simulation's
    if latch.reason is None:
        print("relaxd: nothing is latched" + (f" in {hw.state_dir} (a simulated chair keeps its "
                                              "latch there only with --keep-latch)"
                                              if hw.simulated else ""))
        return 0
    if not hw.remote_reset():
        safety = hw.config.safety
        raise RelaxdError(
            f"latched ({latch.reason}); to restart, a caregiver at the chair holds its reset "
            f"button (GPIO{safety.reset_pin}) for {safety.hold_to_reset:g} s and "
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
