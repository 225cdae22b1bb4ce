"""``relaxd safe-off``: every actuator pin off and held, whatever else is wrong; latch when the
run before did not end cleanly.

It runs from the systemd unit before every start and after every exit (a crash and SIGKILL
included). The pins come from :func:`relaxd.outputs.pins.pins_for_safe_off` (the file's, else the
copy saved at the last start, else the defaults). Imports no model, camera, audio stack or full
configuration.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from relaxd.core.errors import RelaxdError
from relaxd.core.paths import DEFAULT_CONFIG
from relaxd.daemon.hardware import HELD_UNTIL_EXIT, hold_off, simulated_pins
from relaxd.outputs.pins import pins_for_safe_off, state_dir_for_safe_off
from relaxd.safety.latch import latch_if_unclean

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="configuration file (default: "
                        "$RELAXD_CONFIG or /etc/relaxd/config.yaml; --simulate: none)")
    parser.add_argument("--simulate", action="store_true",
                        help="mock pins; the run marker and latch in --out DIR")
    parser.add_argument("--out", metavar="DIR", default="relaxd-sim",
                        help="--simulate: the folder of `relaxd --simulate --keep-latch`")


def safe_off_config(args: argparse.Namespace) -> Path | None:
    """The configuration file safe-off reads its pins from: ``--config``; on the chair also
    ``$RELAXD_CONFIG`` or the installed one; None when there is none."""
    if args.config:
        return Path(args.config)
    if args.simulate:
        return None
    named = os.environ.get("RELAXD_CONFIG")
    if named:
        return Path(named)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def run(args: argparse.Namespace) -> int:
    """Every actuator pin off, whatever else is wrong (see :func:`pins_for_safe_off` for where
    the pins come from); latch when the previous run did not exit cleanly. Exit status 0 when
    every pin was driven off and any latch written, else 1. The pins stay claimed at their off
    level until the process ends (:data:`HELD_UNTIL_EXIT`, :func:`hold_off`)."""
    config = safe_off_config(args)
    state_dir = Path(args.out) if args.simulate else state_dir_for_safe_off(config)
    factory = simulated_pins() if args.simulate else _chair_pins()
    pins, source = pins_for_safe_off(config, state_dir)
    try:
        held, failed = hold_off(pins, factory)
        HELD_UNTIL_EXIT.extend(held)
        print(f"relaxd safe-off: {source}: {pins.describe()}")
        for problem in failed:
            log.critical("safe-off: could not switch off %s", problem)
        reason, latch_failed = _latch_if_unclean(state_dir)
        print("relaxd safe-off: actuator pins off"
              + (f"; {len(failed)} failed" if failed else "")
              + (f"; latched: {reason}" if reason else "")
              + ("; COULD NOT LATCH" if latch_failed else ""))
    finally:
        if args.simulate:  # the chair's factory stays: it holds the pins until exit
            factory.close()
    return 1 if failed or latch_failed else 0


def _latch_if_unclean(state_dir: Path) -> tuple[str | None, bool]:
    """(the latch reason or None, whether writing the latch failed)."""
    if not state_dir.is_dir():
        return None, False
    try:
        return latch_if_unclean(state_dir), False
    except OSError as exc:
        log.critical("safe-off: could not latch in %s: %s", state_dir, exc)
        return None, True


def _chair_pins() -> Any:
    """gpiozero's own pin factory (lgpio on the Pi); one line where this machine has no GPIO."""
    import warnings

    from gpiozero import Device

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gpiozero warns for every factory it cannot load
        try:
            if Device.pin_factory is None:  # as gpiozero's devices find it
                Device.pin_factory = Device._default_pin_factory()
            return Device.pin_factory
        except Exception as exc:  # noqa: BLE001 - any failure here means no GPIO to drive
            raise RelaxdError(f"no GPIO on this machine ({exc}): nothing was driven; on a "
                              "laptop, rehearse with relaxd safe-off --simulate") from None
