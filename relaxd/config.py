"""The chair's configuration: ``/etc/relaxd/config.yaml`` read into dataclasses by yamlspec.

Which file: ``--config FILE``, else ``$RELAXD_CONFIG``, else :data:`DEFAULT_PATH`. A file named
explicitly must exist; a missing default file means every default (logged). Every field has a
safe default; ``deploy/config.yaml`` documents them all. Problems raise
:class:`relaxd.yamlspec.SpecError`, one ``FILE:LINE:COL: message`` line each.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Literal

from relaxd import yamlspec
from relaxd.actuators import ActuatorSettings
from relaxd.mood import MoodSettings
from relaxd.paths import default_model, default_scenario
from relaxd.safety import SafetySettings
from relaxd.station.settings import UISettings
from relaxd.yamlspec import spec

if TYPE_CHECKING:
    from relaxd.camera import FrameSource

log = logging.getLogger(__name__)

#: Where the installer puts the configuration (systemd's ConfigurationDirectory=relaxd).
DEFAULT_PATH = Path("/etc/relaxd/config.yaml")

#: Session records and other state when systemd gives no ``$STATE_DIRECTORY``.
DEFAULT_STATE_DIR = Path("/var/lib/relaxd")


def default_state_dir() -> Path:
    """``$RELAXD_STATE_DIR``, else ``$STATE_DIRECTORY`` (set by systemd's ``StateDirectory=``;
    first of a list), else /var/lib/relaxd."""
    for var in ("RELAXD_STATE_DIR", "STATE_DIRECTORY"):
        first = os.environ.get(var, "").split(":")[0]
        if first:
            return Path(first)
    return DEFAULT_STATE_DIR


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
        """Open this source (raises :class:`relaxd.camera.CameraError`)."""
        from relaxd.camera import ImageFolderSource, PiCameraSource, VideoFileSource, WebcamSource

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


@dataclass
class Config:
    """relaxd's configuration; every field has a safe default."""

    camera: CameraSettings = spec(default_factory=CameraSettings, help="where frames come from")
    model: ModelSettings = spec(default_factory=ModelSettings, help="the emotion classifier")
    mood: MoodSettings = spec(default_factory=MoodSettings, help="how moods are smoothed")
    actuators: ActuatorSettings = spec(default_factory=ActuatorSettings,
                                       help="light, sound and vibration outputs")
    safety: SafetySettings = spec(default_factory=SafetySettings,
                                  help="the emergency stop and caregiver alerts")
    scenario: Path = spec(default_factory=default_scenario,
                          help="scenario to play (default: the bundled calm-blue-waves.yaml)")
    state_dir: Path = spec(default_factory=default_state_dir,
                           help="session records (default: $STATE_DIRECTORY or /var/lib/relaxd)")
    ui: UISettings = spec(default_factory=UISettings, help="the caregiver station")
    #: The file this was read from (None: all defaults).
    path: Path | None = field(default=None, init=False, compare=False)


def load_config(path: str | Path | None = None) -> Config:
    """Read the configuration (see the module's docstring for which file)."""
    explicit = path if path is not None else os.environ.get("RELAXD_CONFIG") or None
    if explicit is None and not DEFAULT_PATH.exists():
        log.info("no %s: using the default configuration", DEFAULT_PATH)
        return Config()
    chosen = Path(explicit) if explicit is not None else DEFAULT_PATH
    config = yamlspec.load(Config, chosen)
    config.path = chosen
    return config
