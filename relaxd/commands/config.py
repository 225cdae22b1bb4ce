"""``relaxd config boot-pins``: the firmware's ``gpio=`` line for the actuator pins.

``deploy/install.sh`` writes it into ``/boot/firmware/config.txt`` so the pins are outputs at
their off level from boot, before anything runs::

    $ PYTHONPATH=~/relaxd python3 -m relaxd config boot-pins --config /etc/relaxd/config.yaml
    gpio=17,27,22,23=op,dl

Only the ``actuators`` pins and ``active_high`` are read, checked as relaxd checks them (a
mistake elsewhere in the file does not matter here). Imports nothing but the standard library
and PyYAML, so it runs from the source tree before relaxd's virtualenv exists.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from relaxd.core.paths import DEFAULT_CONFIG
from relaxd.outputs.pins import ActuatorPins, read_config_pins


def configure_boot_pins(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help="configuration file (default: $RELAXD_CONFIG or "
                             "/etc/relaxd/config.yaml; none there: the defaults)")


def run_boot_pins(args: argparse.Namespace) -> int:
    """Print the ``gpio=`` line; a pin that cannot be read is a RelaxdError (exit status 2)."""
    print(boot_pins(args.config or os.environ.get("RELAXD_CONFIG") or None).boot_line())
    return 0


def boot_pins(named: str | None) -> ActuatorPins:
    """The pins of the file ``named``; with none named, of the installed file, or the defaults
    when there is none (as relaxd itself reads its configuration)."""
    if named is not None:
        return read_config_pins(Path(named))
    return read_config_pins(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else ActuatorPins()
