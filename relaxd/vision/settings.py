"""The sense half's settings (the configuration's ``camera``, ``model`` and ``mood``
sections): light modules only, so reading the configuration loads no camera, model or numpy."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Literal

from relaxd.core.paths import default_model
from relaxd.core.yamlspec import limit_problem, spec

if TYPE_CHECKING:
    from relaxd.vision.camera import FrameSource


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
    #: The LEDs' PWM frequency (the configuration's ``actuators.light_frequency``, set by
    #: :class:`relaxd.config.Config`): the Pi camera's locked exposure is whole periods of it.
    light_pwm_hz: float = field(default=400.0, init=False, compare=False)

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
            return PiCameraSource(size, self.read_timeout_s, pwm_hz=self.light_pwm_hz)
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
    delegate: Literal["xnnpack", "none"] = spec(
        "xnnpack", help="xnnpack: ai-edge-litert's XNNPACK int8 kernels; none: its built-in "
        "kernels only (the reference answers, as the model card's figures)")


@dataclass(frozen=True)
class MoodSettings:
    """How moods are smoothed and switched (seconds and probabilities; defaults are safe).

    Loadable from the configuration file by :mod:`relaxd.core.yamlspec` (limits in each field's spec);
    :meth:`check` lists values outside them, and :class:`MoodSmoother` refuses such settings.
    """

    window_s: float = spec(2.0, min=0.001, max=60,
                           help="time constant of the moving average of mood probabilities, s")
    max_gap_s: float = spec(0.5, min=0.001, max=10,
                            help="longest time one frame may stand for after a gap, s")
    enter_threshold: float = spec(0.5, min=0, max=1,
                                  help="a new mood needs at least this smoothed probability")
    switch_margin: float = spec(0.15, min=0, max=1,
                                help="and must lead the current mood's probability by this much")
    min_dwell_s: float = spec(2.0, min=0, max=600,
                              help="a mood is kept at least this long before another replaces it, s")
    no_face_timeout_s: float = spec(3.0, min=0.001, max=600,
                                    help="no face for longer than this: the mood is no_face, s")

    def check(self) -> Iterator[tuple[str, str]]:
        """(field, message) for each value outside its limits (NaN included)."""
        for f in fields(self):
            problem = limit_problem(f, getattr(self, f.name))
            if problem is not None:
                yield f.name, problem
