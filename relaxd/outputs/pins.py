"""The actuator pins and their polarity, read on their own, for what must work whatever else is
wrong: ``relaxd safe-off`` and the firmware's ``gpio=`` line (``relaxd config boot-pins``).

:class:`ActuatorPins` holds the fields and their limits; the configuration's
:class:`relaxd.outputs.actuators.ActuatorSettings` extends it, so the full configuration and the readers
here check the same rules. :func:`read_config_pins` takes only those fields from a configuration
file (a mistake elsewhere in it does not matter); :func:`save_pins` keeps a copy of the pins a
run drives in the state directory (:data:`SAVED_PINS`), which :func:`pins_for_safe_off` falls
back on when the file's pins cannot be read::

    pins, source = pins_for_safe_off(Path("/etc/relaxd/config.yaml"), state_dir)
    print(source)   # "pins from config /etc/relaxd/config.yaml", or the copy, or the defaults

Imports nothing but the standard library and PyYAML: ``python3 -m relaxd config boot-pins``
runs from the source tree before any virtualenv exists.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import yaml

from relaxd.core import yamlspec
from relaxd.core.durable import write_durably
from relaxd.core.errors import RelaxdError
from relaxd.core.paths import default_state_dir
from relaxd.core.yamlspec import spec

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

log = logging.getLogger(__name__)

#: The copy of the actuator pins a run drives, in the state directory.
SAVED_PINS = "actuator-pins.json"

#: A settings dataclass, built from part of the configuration file.
Settings = TypeVar("Settings", bound="DataclassInstance")


@dataclass(kw_only=True)
class ActuatorPins:
    """The actuators' GPIO pins (BCM numbers) and the level that switches their drivers on."""

    red_pin: int = spec(17, min=2, max=27, help="BCM pin of the red LED driver")
    green_pin: int = spec(27, min=2, max=27, help="BCM pin of the green LED driver")
    blue_pin: int = spec(22, min=2, max=27, help="BCM pin of the blue LED driver")
    vibration_pin: int = spec(23, min=2, max=27, help="BCM pin of the vibration motor driver")
    active_high: bool = spec(True, help="true when a high pin switches the driver on")

    def numbers(self) -> list[int]:
        """The four pins: red, green, blue light, then vibration."""
        return [self.red_pin, self.green_pin, self.blue_pin, self.vibration_pin]

    def only_pins(self) -> ActuatorPins:
        """These pins alone (from a subclass: without its other settings)."""
        return ActuatorPins(**{f.name: getattr(self, f.name) for f in pin_fields()})

    def describe(self) -> str:
        """``GPIO17,27,22,23 (active-high)``."""
        return (f"GPIO{','.join(map(str, self.numbers()))} "
                f"({'active-high' if self.active_high else 'active-low'})")

    def boot_line(self) -> str:
        """The firmware's ``config.txt`` line that makes every pin an output at its off level
        from boot: ``gpio=17,27,22,23=op,dl`` (``dh`` for active-low drivers)."""
        level = "dl" if self.active_high else "dh"
        return f"gpio={','.join(map(str, self.numbers()))}=op,{level}"


def pin_fields() -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(ActuatorPins)


def read_config_pins(path: Path) -> ActuatorPins:
    """The ``actuators`` pins and ``active_high`` of the configuration file ``path``, checked as
    the full configuration checks them; any other key, valid or not, is ignored. Raises
    :class:`RelaxdError` (a :class:`relaxd.core.yamlspec.SpecError` naming ``FILE:LINE:COL``)."""
    root = yamlspec.compose(path)
    section = _key(_mapping(root, path), "actuators", path)
    return _pins(_mapping(section, path) if section is not None else None, path)


def read_config_state_dir(path: Path) -> Path:
    """The configuration's ``state_dir`` (its default when absent); raises RelaxdError."""
    root = _mapping(yamlspec.compose(path), path)
    return _build_only(_StateDir, root, path).state_dir


def save_pins(state_dir: Path, pins: ActuatorPins, config: Path | None) -> None:
    """Keep the pins a run is about to drive in ``state_dir`` (durably; raises OSError)."""
    copy = {**dataclasses.asdict(pins.only_pins()),
            "config": str(config) if config else None, "saved_at": time.time()}
    write_durably(Path(state_dir) / SAVED_PINS, json.dumps(copy, indent=1) + "\n")


def read_saved_pins(state_dir: Path) -> ActuatorPins:
    """The copy :func:`save_pins` left in ``state_dir``; every pin must be in it. Raises
    RelaxdError."""
    path = Path(state_dir) / SAVED_PINS
    node = _mapping(yamlspec.compose(path), path)  # JSON is YAML
    if node is None:
        raise RelaxdError("empty", path)
    missing = {f.name for f in pin_fields()} - {k.value for k, _ in node.value}
    if missing:
        raise RelaxdError(f"no {', '.join(sorted(missing))} in it", path)
    return _pins(node, path)


def pins_for_safe_off(config: Path | None, state_dir: Path) -> tuple[ActuatorPins, str]:
    """The pins to switch off and a line saying where they came from: the configuration file's
    own, else the copy saved at the last start, else the documented defaults. Why a source was
    passed over is logged; this never raises."""
    # Any exception (not only RelaxdError) passes to the next source: this must switch off.
    if config is not None:
        try:
            return read_config_pins(config), f"pins from config {config}"
        except Exception as exc:  # noqa: BLE001
            log.warning("safe-off: the pins in %s cannot be read: %s", config, exc)
    saved = Path(state_dir) / SAVED_PINS
    try:
        return read_saved_pins(state_dir), f"pins from the copy saved at last start ({saved})"
    except Exception as exc:  # noqa: BLE001
        log.warning("safe-off: no usable copy of the pins: %s", exc)
    return ActuatorPins(), "pins from the documented defaults"


def state_dir_for_safe_off(config: Path | None) -> Path:
    """The configuration's ``state_dir``, else the default one (``$STATE_DIRECTORY`` under
    systemd); never raises."""
    if config is not None:
        try:
            return read_config_state_dir(config)
        except Exception as exc:  # noqa: BLE001 - as for the pins: never stop safe-off
            log.warning("safe-off: state_dir in %s cannot be read (%s): using %s", config,
                        str(exc).splitlines()[0], default_state_dir())
    return default_state_dir()


@dataclass
class _StateDir:
    """The one top-level key that safe-off needs besides the pins."""

    state_dir: Path = spec(default_factory=default_state_dir)


def _pins(section: yaml.MappingNode | None, path: Path) -> ActuatorPins:
    """The pins in ``section``, each checked, and no two the same."""
    pins = _build_only(ActuatorPins, section, path)
    numbers = pins.numbers()
    if len(set(numbers)) < len(numbers):
        raise RelaxdError(f"the actuator pins {pins.describe()} are not all different", path)
    return pins


def _build_only(cls: type[Settings], section: yaml.MappingNode | None,
                path: Path) -> Settings:
    """``cls`` built from the keys of ``section`` that it has (and any merge key ``<<``, which
    the full configuration refuses too): other keys are left to the full configuration."""
    names = {f.name for f in dataclasses.fields(cls)} | {"<<"}
    node = None
    if section is not None:
        node = yaml.MappingNode(section.tag, [(k, v) for k, v in section.value
                                              if isinstance(k, yaml.ScalarNode)
                                              and k.value in names],
                                section.start_mark, section.end_mark)
    return yamlspec.build(cls, node, path)


def _mapping(node: yaml.Node | None, path: Path) -> yaml.MappingNode | None:
    if node is None or isinstance(node, yaml.MappingNode):
        return node
    mark = node.start_mark
    raise RelaxdError("expected a mapping", path, mark.line + 1, mark.column + 1)


def _key(node: yaml.MappingNode | None, name: str, path: Path) -> yaml.Node | None:
    """The value of the key ``name``, or None; a duplicate key is an error."""
    found = [(k, v) for k, v in (node.value if node else []) if isinstance(k, yaml.ScalarNode)
             and k.value == name]
    if len(found) > 1:
        mark = found[-1][0].start_mark
        raise RelaxdError(f"duplicate key '{name}'", path, mark.line + 1, mark.column + 1)
    return found[0][1] if found else None
