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
from typing import TYPE_CHECKING, Any, Iterator, Literal

import yaml

from relaxd.children.store import ChildrenSettings
from relaxd.core import yamlspec
from relaxd.core.paths import (
    DEFAULT_CONFIG,
    default_model,
    default_scenario,
    default_state_dir,
    resource_dir,
)
from relaxd.core.yamlspec import spec
from relaxd.outputs.actuators import ActuatorSettings
from relaxd.safety.alerts import AlertSettings
from relaxd.safety.estop import SafetySettings
from relaxd.safety.thermal import ThermalSettings
from relaxd.station.settings import UISettings
from relaxd.vision.mood import MoodSettings

if TYPE_CHECKING:
    from relaxd.vision.camera import FrameSource

log = logging.getLogger(__name__)

#: The configuration file when none is named (:data:`relaxd.core.paths.DEFAULT_CONFIG`).
DEFAULT_PATH = DEFAULT_CONFIG


@dataclass
class CameraSettings:
    """Where frames come from."""

    source: Literal["picamera", "webcam", "video", "images"] = spec(
        "picamera", help="picamera (the chair), webcam (USB, by index), video (file), images (folder)")
    index: int = spec(0, min=0, max=63, help="source webcam: its number (/dev/videoN)")
    path: Path | None = spec(None, help="source video: the file; source images: the folder")
    width: int = spec(640, min=160, max=1920, help="frame width asked of a live camera, pixels")
    height: int = spec(480, min=120, max=1080, help="frame height asked of a live camera, pixels")
    fps: float = spec(10.0, min=1, max=30, help="frames processed per second at most")
    read_timeout_s: float = spec(2.0, min=0.1, max=30,
                                 help="a live camera giving no frame this long counts as failed")
    retry_backoff_s: float = spec(0.5, min=0.1, max=60,
                                  help="first wait before reopening a failed camera; doubles each time")
    retry_backoff_max_s: float = spec(30.0, min=0.1, max=600, help="longest wait between reopens")
    restart_after_s: float = spec(
        120.0, min=10, max=3600,
        help="a live camera down this long stops the watchdog, so systemd restarts relaxd afresh")

    def check(self) -> Iterator[tuple[str | None, str]]:
        if self.source in ("video", "images") and self.path is None:
            yield "source", f"source {self.source} needs 'path'"
        if self.retry_backoff_max_s < self.retry_backoff_s:
            yield "retry_backoff_max_s", "retry_backoff_max_s must be >= retry_backoff_s"

    def open(self) -> FrameSource:
        """Open this source (raises :class:`relaxd.vision.camera.CameraError`)."""
        from relaxd.vision.camera import ImageFolderSource, PiCameraSource, VideoFileSource, WebcamSource

        size = (self.width, self.height)
        if self.source == "picamera":
            return PiCameraSource(size, self.read_timeout_s)
        if self.source == "webcam":
            return WebcamSource(self.index, size, self.read_timeout_s)
        assert self.path is not None  # check() requires it
        if self.source == "images":
            return ImageFolderSource(self.path, self.fps)
        return VideoFileSource(self.path)


@dataclass
class ModelSettings:
    """The emotion classifier."""

    path: Path = spec(default_factory=default_model,
                      help="int8 TFLite emotion model (default: the bundled one)")
    threads: int = spec(1, min=1, max=4, help="inference threads (the Pi 4 has 4 cores)")
    delegate: Literal["auto", "xnnpack", "none"] = spec(
        "auto", help="auto: XNNPACK where the runtime has int8 XNNPACK (ai-edge-litert), else "
        "the built-in kernels (tflite-runtime 2.14, as the model card); xnnpack; none")


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
    #: The file this was read from (None: all defaults).
    path: Path | None = field(default=None, init=False, compare=False)

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
