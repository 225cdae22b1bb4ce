"""The chair's configuration: ``/etc/relaxd/config.yaml`` read into dataclasses by yamlspec.

Which file: ``--config FILE``, else ``$RELAXD_CONFIG``, else :data:`DEFAULT_PATH`. A file named
explicitly must exist; a missing default file means every default (logged). Every field has a
safe default; ``deploy/config.yaml`` documents them all. Problems raise
:class:`relaxd.core.yamlspec.SpecError`, one ``FILE:LINE:COL: message`` line each.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from relaxd.children.settings import ChildrenSettings
from relaxd.clinic.settings import ClinicSettings
from relaxd.core import yamlspec
from relaxd.core.paths import (
    DEFAULT_CONFIG,
    default_scenario,
    default_state_dir,
    resource_dir,
)
from relaxd.core.yamlspec import spec
from relaxd.outputs.settings import ActuatorSettings
from relaxd.safety.settings import AlertSettings, SafetySettings, ThermalSettings
from relaxd.station.settings import UISettings
from relaxd.vision.settings import CameraSettings, ModelSettings, MoodSettings

log = logging.getLogger(__name__)

#: The configuration file when none is named (:data:`relaxd.core.paths.DEFAULT_CONFIG`).
DEFAULT_PATH = DEFAULT_CONFIG


@dataclass
class Config:
    """relaxd's configuration; every field has a safe default."""

    camera: CameraSettings = spec(default_factory=CameraSettings, help="where frames come from")
    model: ModelSettings = spec(default_factory=ModelSettings, help="the emotion classifier")
    mood: MoodSettings = spec(default_factory=MoodSettings, help="how moods are smoothed")
    actuators: ActuatorSettings = spec(default_factory=ActuatorSettings,
                                       help="light, sound and vibration outputs")
    safety: SafetySettings = spec(default_factory=SafetySettings,
                                  help="the emergency stop, the reset button, the heartbeat")
    alerts: AlertSettings = spec(default_factory=AlertSettings,
                                 help="the caregiver's alert buzzer, LED and command")
    thermal: ThermalSettings = spec(default_factory=ThermalSettings,
                                    help="the Pi's temperature and throttling watch")
    children: ChildrenSettings = spec(default_factory=ChildrenSettings,
                                      help="the clinic's policy for new child profiles")
    scenario: Path = spec(default_factory=default_scenario,
                          help="scenario to play (default: the bundled calm-blue-waves.yaml)")
    state_dir: Path = spec(default_factory=default_state_dir,
                           help="session records (default: $STATE_DIRECTORY or /var/lib/relaxd)")
    ui: UISettings = spec(default_factory=UISettings, help="the caregiver station")
    clinic: ClinicSettings = spec(default_factory=ClinicSettings,
                                  help="the chair's bridge to the clinic's broker (relaxd bridge)")
    #: The file this was read from (None: all defaults).
    path: Path | None = field(default=None, init=False, compare=False)

    def __post_init__(self) -> None:
        # The Pi camera's locked exposure is a whole number of the LEDs' PWM periods.
        self.camera.light_pwm_hz = self.actuators.light_frequency

    def pins(self) -> dict[str, int]:
        """Every GPIO the chair uses, by what it is (unfitted ones left out)."""
        named = {**self.actuators.pins(), **self.safety.pins(), **self.alerts.pins()}
        return {name: pin for name, pin in named.items() if pin is not None}

    def check(self) -> Iterator[tuple[str | None, str]]:
        by_pin: dict[int, list[str]] = {}
        for name, pin in self.pins().items():
            by_pin.setdefault(pin, []).append(name)
        for pin, names in by_pin.items():
            if len(names) > 1:
                yield None, f"GPIO{pin} is given to {' and '.join(names)}: each needs its own pin"


#: Keys of older configurations: (section, key) -> their new (section, key), or why they are no
#: longer used. A file that still has them works, with a warning naming the new place, so an
#: installed chair's /etc/relaxd/config.yaml keeps working after an update.
OLD_KEYS: dict[tuple[str, str], tuple[str, str] | str] = {
    ("safety", "buzzer_pin"): ("alerts", "buzzer_pin"),
    ("safety", "alert_led_pin"): ("alerts", "led_pin"),
    ("safety", "alert_command"): ("alerts", "command"),
    ("safety", "alert_timeout"): ("alerts", "timeout"),
    ("safety", "rearm_after"): "no longer used: the e-stop never resets; the reset button does "
                               "(safety.reset_pin)",
}


def load_config(path: str | Path | None = None) -> Config:
    """Read the configuration (see the module's docstring for which file)."""
    explicit = path if path is not None else os.environ.get("RELAXD_CONFIG") or None
    if explicit is None and not DEFAULT_PATH.exists():
        log.info("no %s: using the default configuration", DEFAULT_PATH)
        return Config()
    chosen = Path(explicit) if explicit is not None else DEFAULT_PATH
    node = yamlspec.compose(chosen)
    _update_old_keys(node, chosen)
    config = yamlspec.build(Config, node, chosen)
    config.path = chosen
    config.scenario = _installed_or_bundled(config.scenario)
    return config


def _installed_or_bundled(scenario: Path) -> Path:
    """The configured scenario; where its file is not beside the configuration (the source
    tree's deploy/config.yaml before the installer copies the scenarios), the bundled one of
    the same file name."""
    bundled = resource_dir("scenarios") / scenario.name
    return scenario if scenario.is_file() or not bundled.is_file() else bundled


def _update_old_keys(root: yaml.Node | None, path: Path) -> None:
    """Move each of :data:`OLD_KEYS` found in ``root`` to its new place (a key already there
    wins), or drop it, warning with its position."""
    if not isinstance(root, yaml.MappingNode):
        return
    for (section, key), new in OLD_KEYS.items():
        pair = _take(_section(root, section), key)
        if pair is None:
            continue
        mark = pair[0].start_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}"
        if isinstance(new, str):
            log.warning("%s: '%s.%s' is %s", where, section, key, new)
            continue
        log.warning("%s: '%s.%s' has moved to '%s.%s'; it still works, but please move it",
                    where, section, key, *new)
        target = _section(root, new[0], create_at=mark)
        if _take(target, new[1], remove=False) is None:
            target.value.append((yaml.ScalarNode("tag:yaml.org,2002:str", new[1], mark), pair[1]))


def _section(root: yaml.MappingNode, name: str, create_at: yaml.Mark | None = None) -> Any:
    """The mapping under ``name`` (created, when ``create_at`` is given and it is missing)."""
    for key, value in root.value:
        if key.value == name and isinstance(value, yaml.MappingNode):
            return value
    if create_at is None:
        return None
    section = yaml.MappingNode("tag:yaml.org,2002:map", [], create_at)
    root.value.append((yaml.ScalarNode("tag:yaml.org,2002:str", name, create_at), section))
    return section


def _take(section: yaml.MappingNode | None, key: str, remove: bool = True) -> Any:
    """The (key, value) node pair of ``key`` in ``section``, removed from it; None if absent."""
    if not section:
        return None
    pair = next((p for p in section.value if p[0].value == key), None)
    if pair is not None and remove:
        section.value.remove(pair)
    return pair
