"""Frame sources: the Pi camera, webcams, video files and image folders, behind one interface.

Every source returns :class:`Frame` objects from ``read()`` and ``None`` once it has ended (a
video file or folder that ran out). A source that fails (cannot open, times out, delivers an
empty or malformed frame, was unplugged) raises :class:`CameraError`, one line naming the
source. :class:`ResilientSource` wraps a live camera so that failures become :class:`NoInput`
markers and reopening is retried with exponential back-off: the daemon's loop never crashes.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import cv2
import numpy as np

from relaxd.core.clock import Clock
from relaxd.core.errors import RelaxdError
from relaxd.vision.exposure import ExposureLock

#: Frame size every live camera is asked for (width, height).
log = logging.getLogger(__name__)

CAMERA_SIZE: tuple[int, int] = (640, 480)

#: Image files an image folder source reads, by lower-case suffix.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff"})


class CameraError(RelaxdError):
    """A frame source cannot deliver frames."""


@dataclass(frozen=True)
class Frame:
    """One image: HxW gray or HxWx3 BGR uint8; ``t`` is seconds into a file of known fps, else
    None. ``yuv420``: the Pi camera's whole YUV420 buffer (``image`` is its luma plane), from
    which :func:`mean_rgb` reads a region's colour."""

    image: np.ndarray
    t: float | None = None
    yuv420: np.ndarray | None = None


class Region(Protocol):
    """A rectangle of a frame, in pixels (``relaxd.vision.faces.Box`` is one)."""

    @property
    def x(self) -> int: ...

    @property
    def y(self) -> int: ...

    @property
    def w(self) -> int: ...

    @property
    def h(self) -> int: ...


def mean_rgb(frame: Frame, box: Region) -> tuple[float, float, float] | None:
    """The mean (red, green, blue) of region ``box`` of ``frame``; None for a gray
    frame without a YUV420 buffer. From a YUV420 buffer only the region's planes are read: the
    conversion (BT.601, limited range, as OpenCV's I420) is linear, so the mean of the converted pixels is the
    conversion of the planes' means."""
    x, y, w, h = box.x, box.y, box.w, box.h
    if frame.image.ndim == 3:
        b, g, r, _ = cv2.mean(frame.image[y:y + h, x:x + w])
        return float(r), float(g), float(b)
    if frame.yuv420 is None:
        return None
    return _yuv420_mean_rgb(frame.yuv420, frame.image.shape[0], (x, y, w, h))


def _yuv420_mean_rgb(buffer: np.ndarray, height: int,
                     box: tuple[int, int, int, int]) -> tuple[float, float, float]:
    """Mean RGB of ``box`` in a planar YUV420 (I420) ``buffer``: ``height`` rows of Y, then the U
    and V planes at half resolution, each stored in rows of the buffer's full width."""
    x, y, w, h = box
    stride = buffer.shape[1]
    luma = float(buffer[y:y + h, x:x + w].mean())
    quarter = height // 4
    u_plane = buffer[height:height + quarter].reshape(height // 2, stride // 2)
    v_plane = buffer[height + quarter:height + 2 * quarter].reshape(height // 2, stride // 2)
    cx, cy, cw, ch = x // 2, y // 2, max(1, w // 2), max(1, h // 2)
    u = float(u_plane[cy:cy + ch, cx:cx + cw].mean()) - 128.0
    v = float(v_plane[cy:cy + ch, cx:cx + cw].mean()) - 128.0
    luma = 1.164 * (luma - 16.0)
    return (luma + 1.596 * v, luma - 0.391 * u - 0.813 * v, luma + 2.018 * u)


@dataclass(frozen=True)
class NoInput:
    """Marker from :class:`ResilientSource`: no frame now because the camera is down.

    ``reason`` is the last error's line, ``since`` the clock time input was lost, ``retry_at`` the
    clock time of the next attempt to reopen it.
    """

    reason: str
    since: float
    retry_at: float


class FrameSource(Protocol):
    """Anything frames come from."""

    name: str

    def read(self) -> Frame | None:
        """The next frame, or None when the source has ended; raises :class:`CameraError`."""

    def close(self) -> None:
        """Release the device or file; safe to call twice."""


class FrameFeed(Protocol):
    """What the loop reads frames from: a :class:`FrameSource`, or a :class:`ResilientSource`,
    which answers :class:`NoInput` while a live camera is down instead of raising."""

    name: str

    def read(self) -> Frame | NoInput | None:
        """The next frame, NoInput while the camera is down, or None once the feed has ended."""

    def close(self) -> None: ...


@contextmanager
def _opencv_quiet() -> Iterator[None]:
    """Silence OpenCV's own warnings while a capture opens: the CameraError says it in one line."""
    level = cv2.getLogLevel()
    cv2.setLogLevel(0)  # silent
    try:
        yield
    finally:
        cv2.setLogLevel(level)


def check_image(image: object, source: str) -> np.ndarray:
    """Return ``image`` if it is a non-empty HxW or HxWx3 uint8 array, else raise CameraError."""
    if not isinstance(image, np.ndarray) or image.size == 0:
        raise CameraError(f"{source}: empty frame")
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise CameraError(f"{source}: malformed frame (shape {image.shape}, dtype {image.dtype})")
    return image


class VideoFileSource:
    """Frames of a video file; ``t`` from the file's fps. The end of the file ends the source."""

    def __init__(self, path: str | Path) -> None:
        self.name = f"video {path}"
        if not Path(path).exists():
            raise CameraError(f"{self.name}: no such file")
        if not Path(path).is_file():
            raise CameraError(f"{self.name}: not a file")
        with _opencv_quiet():
            # One decoding thread: FFmpeg starts one a core, each with its buffers (15.7 -> 12.4 MB
            # peak here); only --speed max replays notice the slower decode.
            self._cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
        if not self._cap.isOpened():
            raise CameraError(f"{self.name}: cannot open (not a video OpenCV can decode)")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        #: The file's frame rate, None when it does not say.
        self.fps: float | None = fps if math.isfinite(fps) and fps > 0 else None
        self._index = 0

    def read(self) -> Frame | None:
        ok, image = self._cap.read()
        if not ok:
            return None
        t = self._index / self.fps if self.fps else None
        self._index += 1
        return Frame(check_image(image, self.name), t)

    def close(self) -> None:
        self._cap.release()


class WebcamSource:
    """A USB webcam through OpenCV, asked for ``size``; a failed read means it is gone."""

    def __init__(self, index: int, size: tuple[int, int] = CAMERA_SIZE,
                 timeout_s: float = 2.0) -> None:
        self.name = f"webcam {index}"
        with _opencv_quiet():
            self._cap = cv2.VideoCapture(index)
        if not self._cap.isOpened():
            self._cap.release()
            raise CameraError(f"{self.name}: cannot open (not connected or busy)")
        self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
        self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
        self._cap.set(cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_s * 1000)

    def read(self) -> Frame:
        ok, image = self._cap.read()
        if not ok:
            raise CameraError(f"{self.name}: no frame (unplugged or stalled)")
        return Frame(check_image(image, self.name))

    def close(self) -> None:
        self._cap.release()


class ImageFolderSource:
    """The image files of a folder in sorted name order; ``t`` = index / ``fps`` when fps is given."""

    def __init__(self, folder: str | Path, fps: float | None = None) -> None:
        self.name = f"folder {folder}"
        folder = Path(folder)
        if not folder.is_dir():
            raise CameraError(f"{self.name}: not a folder")
        self._files = sorted(p for p in folder.iterdir()
                             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise CameraError(f"{self.name}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.fps = fps
        self._index = 0

    def read(self) -> Frame | None:
        if self._index >= len(self._files):
            return None
        path = self._files[self._index]
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise CameraError(f"{self.name}: cannot read {path.name}")
        if image.ndim == 3 and image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        t = self._index / self.fps if self.fps else None
        self._index += 1
        return Frame(check_image(image, f"{self.name}/{path.name}"), t)

    def close(self) -> None:
        self._index = len(self._files)


class PiCameraSource:
    """The Raspberry Pi camera through picamera2 (apt's python3-picamera2, imported here only).

    The main stream is YUV420 at ``size``: its first ``height`` rows are the Y plane, which is
    the grayscale image the face detector wants, so no whole frame is ever converted to colour;
    the buffer goes with the frame so that the regions needing colour (the skin read for the
    pulse) convert only themselves (:func:`mean_rgb`).
    """

    def __init__(self, size: tuple[int, int] = CAMERA_SIZE, timeout_s: float = 2.0,
                 camera_num: int = 0, pwm_hz: float = 400.0) -> None:
        self.name = f"pi camera {camera_num}"
        self._size, self._timeout_s, self._cam = size, timeout_s, None
        self.exposure = ExposureLock(pwm_hz)
        self._metadata: dict[str, Any] = {}
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise CameraError(f"{self.name}: picamera2 is not installed "
                              "(apt install python3-picamera2; venv with --system-site-packages)") from None
        try:
            self._cam = Picamera2(camera_num)
            config = self._cam.create_video_configuration(
                main={"size": size, "format": "YUV420"}, buffer_count=4)
            self._cam.configure(config)
            self._cam.start()
        except Exception as e:  # noqa: BLE001 - libcamera reports a missing or busy camera in many ways
            self.close()
            raise CameraError(f"{self.name}: cannot open ({_one_line(e)})") from None

    def read(self) -> Frame:
        cam = self._cam
        if cam is None:
            raise CameraError(f"{self.name}: capture failed (the camera is closed)")
        try:
            job = cam.capture_arrays(["main"], wait=False)
            (yuv,), self._metadata = cam.wait(job, timeout=self._timeout_s)
        except TimeoutError:
            raise CameraError(f"{self.name}: no frame within {self._timeout_s:g} s") from None
        except Exception as e:  # noqa: BLE001 - any capture failure is a camera fault
            raise CameraError(f"{self.name}: capture failed ({_one_line(e)})") from None
        width, height = self._size
        yuv = check_image(yuv, self.name)
        if yuv.ndim != 2 or yuv.shape[0] < height * 3 // 2 or yuv.shape[1] < width:
            raise CameraError(f"{self.name}: malformed YUV420 frame (shape {yuv.shape})")
        return Frame(yuv[:height, :width], yuv420=yuv)

    def face_exposure(self, t: float, brightness: float | None) -> None:
        """The child's face's mean luma in the last frame (None: no face): exposure and white
        balance are locked once settled, and let settle again when the face is badly exposed
        (:class:`relaxd.vision.exposure.ExposureLock`)."""
        controls = self.exposure.update(t, brightness, self._metadata)
        if controls is not None and self._cam is not None:
            try:
                self._cam.set_controls(controls)
            except Exception as e:  # noqa: BLE001 - a refused control leaves the camera on auto
                log.warning("%s: exposure controls refused (%s)", self.name, _one_line(e))

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            try:
                cam.stop()
            finally:
                cam.close()


def tell_face_exposure(source: object, t: float, brightness: float | None) -> None:
    """The face's mean luma (None: no face) at ``t``, to a source that locks its exposure on it
    (:meth:`PiCameraSource.face_exposure`); other sources need not take it."""
    take = getattr(source, "face_exposure", None)
    if take is not None:
        take(t, brightness)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


class ResilientSource:
    """Keeps a live camera going: on any failure it closes it, returns :class:`NoInput`, and
    reopens it with exponential back-off (``backoff_s``, doubling up to ``max_backoff_s``).

    ``read()`` never blocks waiting for a retry and never raises: it returns a Frame, a NoInput
    marker (camera down: the controller should go safe), or None when the source ended. Time
    comes from ``clock`` so tests need not sleep. ``open_fn`` makes a fresh source; it is first
    called by the first ``read()``.
    """

    def __init__(self, open_fn: Callable[[], FrameSource], clock: Clock, name: str = "camera",
                 backoff_s: float = 0.5, max_backoff_s: float = 30.0) -> None:
        if backoff_s <= 0 or max_backoff_s < backoff_s:
            raise ValueError("need 0 < backoff_s <= max_backoff_s")
        self.name = name
        self._open_fn, self._clock = open_fn, clock
        self._backoff_s, self._max_backoff_s = backoff_s, max_backoff_s
        self._source: FrameSource | None = None
        self._down: NoInput | None = None
        self._delay = backoff_s
        self._ended = False
        #: How many times the source was (re)opened successfully.
        self.opens = 0

    def read(self) -> Frame | NoInput | None:
        if self._ended:
            return None
        now = self._clock.now()
        if self._source is None:
            if self._down is not None and now < self._down.retry_at:
                return self._down
            try:
                self._source = self._open_fn()
            except Exception as e:  # noqa: BLE001 - any failure to open is retried later
                return self._fail(now, e)
            self.opens += 1
        try:
            frame = self._source.read()
        except Exception as e:  # noqa: BLE001 - any read failure: camera down, retried
            return self._fail(now, e)
        if frame is None:
            self._ended = True
            self._close_source()
            return None
        self._down, self._delay = None, self._backoff_s
        return frame

    def _fail(self, now: float, e: Exception) -> NoInput:
        self._close_source()
        reason = _one_line(e) if isinstance(e, CameraError) else f"{self.name}: {_one_line(e)}"
        since = self._down.since if self._down is not None else now
        self._down = NoInput(reason, since, now + self._delay)
        self._delay = min(self._delay * 2, self._max_backoff_s)
        return self._down

    def _close_source(self) -> None:
        source, self._source = self._source, None
        if source is not None:
            try:
                source.close()
            except Exception:  # noqa: BLE001 - closing a dead device may fail too; it is gone anyway
                pass

    def face_exposure(self, t: float, brightness: float | None) -> None:
        """Passed on to the open camera, if it locks its exposure (the Pi camera)."""
        tell_face_exposure(self._source, t, brightness)

    def close(self) -> None:
        self._ended = True
        self._close_source()
