"""Real or simulated pins, the caregiver's hands on simulated buttons, and ``relaxd safe-off``.

On the chair gpiozero picks the Pi's pin factory (lgpio); ``--simulate`` and the tests use
gpiozero's MockFactory with PWM pins. ``relaxd safe-off`` runs from the systemd unit before every
start and after every exit (a crash and SIGKILL included)::

    relaxd safe-off                     # every actuator pin to its off level; latch if unclean

It imports no model, camera or audio stack.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from relaxd.latch import latch_if_unclean
from relaxd.safety import SafetySettings

log = logging.getLogger(__name__)


def simulated_pins() -> Any:
    """gpiozero's MockFactory whose PWM pins keep only their recent history.

    gpiozero's mock pins record every change for tests to inspect; over hours of simulation
    that record would grow without bound (measured: 31 MB in a 2-hour soak).
    """
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    class SimulatedPWMPin(MockPWMPin):
        def _change_state(self, value: Any) -> bool:
            changed = super()._change_state(value)
            if len(self.states) > 1024:
                del self.states[:-256]
            return changed

    return MockFactory(pin_class=SimulatedPWMPin)


class SimulatedHands:
    """A caregiver's hands on the simulated buttons, driving their lines as the wiring would.

    ``hands("press", "estop")`` pushes the latching e-stop down (its line goes to the pressed
    level of its contact, nc or no) and it stays down until ``hands("release", "estop")``;
    the reset button is a plain momentary contact to GND.
    """

    def __init__(self, factory: Any, settings: SafetySettings) -> None:
        self.factory, self.settings = factory, settings

    def rest(self) -> None:
        """Both buttons released: the state the chair starts in."""
        self("release", "estop")
        self("release", "reset")

    def __call__(self, action: str, button: str) -> None:
        s = self.settings
        pin = self.factory.pin(s.estop_pin if button == "estop" else s.reset_pin)
        pressed_high = button == "estop" and s.estop_contact == "nc"
        if (action == "press") == pressed_high:
            pin.drive_high()
        else:
            pin.drive_low()


def actuator_pins(config: Any) -> list[int]:
    a = config.actuators
    return [a.red_pin, a.green_pin, a.blue_pin, a.vibration_pin]


def drive_off(pins: list[int], active_high: bool, pin_factory: Any = None) -> list[str]:
    """Each pin to its off level, then released (it keeps that level); the failures."""
    from gpiozero import DigitalOutputDevice

    failed = []
    for pin in pins:
        try:
            DigitalOutputDevice(pin, active_high=active_high, initial_value=False,
                                pin_factory=pin_factory).close()
        except Exception as exc:  # noqa: BLE001 - switch the others off whatever this one did
            failed.append(f"GPIO{pin}: {exc}")
    return failed


def configure_safe_off(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="configuration file")
    parser.add_argument("--simulate", action="store_true",
                        help="mock pins; the run marker and latch in --out DIR")
    parser.add_argument("--out", metavar="DIR", default="relaxd-sim",
                        help="--simulate: the folder of `relaxd --simulate --keep-latch`")


def run_safe_off(args: argparse.Namespace) -> int:
    """Every actuator pin off; latch when the previous run did not exit cleanly."""
    from relaxd.config import Config, load_config

    config = load_config(args.config) if args.config or not args.simulate else Config()
    factory = simulated_pins() if args.simulate else None
    failed = drive_off(actuator_pins(config), config.actuators.active_high, factory)
    for problem in failed:
        log.critical("safe-off: could not switch off %s", problem)
    state_dir = Path(args.out) if args.simulate else config.state_dir
    reason = latch_if_unclean(state_dir) if state_dir.is_dir() else None
    print("relaxd safe-off: actuator pins off"
          + (f"; {len(failed)} failed" if failed else "")
          + (f"; latched: {reason}" if reason else ""))
    return 1 if failed else 0
