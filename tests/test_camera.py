"""Frame sources: files, folders, webcams, the Pi camera (faked), failures and recovery."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from relaxd.core.clock import VirtualClock
from relaxd.core.errors import RelaxdError
from relaxd.vision.camera import (
    CameraError,
    Frame,
    ImageFolderSource,
    NoInput,
    PiCameraSource,
    ResilientSource,
    VideoFileSource,
    WebcamSource,
    check_image,
)
from relaxd.vision.settings import CameraSettings


def open_source(spec) -> object:
    """The one opener, CameraSettings.open, as a command line would name a source."""
    spec = str(spec)
    if spec.isdigit():
        return CameraSettings(source="webcam", index=int(spec)).open()
    if spec in ("picamera", "pi"):
        return CameraSettings(source="picamera").open()
    source = "images" if Path(spec).is_dir() else "video"
    return CameraSettings(source=source, path=Path(spec)).open()


def write_video(path, n=6, size=(64, 48), fps=10.0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((size[1], size[0], 3), 20 * i, np.uint8))
    writer.release()
    return path


def test_video_file_reads_every_frame_then_ends(tmp_path):
    source = open_source(str(write_video(tmp_path / "v.mp4")))
    assert isinstance(source, VideoFileSource) and source.fps == pytest.approx(10)
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    assert len(frames) == 6
    assert [f.t for f in frames] == pytest.approx([i / 10 for i in range(6)])
    assert frames[0].image.shape == (48, 64, 3) and frames[0].image.dtype == np.uint8
    assert source.read() is None  # ended stays ended, no error
    source.close()
    source.close()


def test_missing_and_undecodable_files_are_camera_errors(tmp_path):
    with pytest.raises(CameraError, match=r"^video .*nope\.mp4: no such file$"):
        open_source(tmp_path / "nope.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    with pytest.raises(CameraError, match="bad.mp4: cannot open") as err:
        open_source(str(bad))
    assert isinstance(err.value, RelaxdError) and "\n" not in str(err.value)


def test_webcam_that_does_not_open():
    with pytest.raises(CameraError, match=r"^webcam 97: cannot open"):
        open_source("97")
    with pytest.raises(CameraError, match=r"^webcam 98: cannot open"):
        WebcamSource(98)


class FakeCapture:
    """cv2.VideoCapture of a webcam that gives ``frames`` then fails (as when unplugged)."""

    def __init__(self, frames):
        self.frames, self.props, self.released = list(frames), {}, False

    def isOpened(self):
        return True

    def set(self, prop, value):
        self.props[prop] = value
        return True

    def read(self):
        if not self.frames:
            return False, None
        return True, self.frames.pop(0)

    def release(self):
        self.released = True


def test_webcam_unplugged_or_malformed_is_a_camera_error(monkeypatch):
    cap = FakeCapture([np.zeros((480, 640, 3), np.uint8), np.zeros((480, 640, 2), np.uint8)])
    monkeypatch.setattr(cv2, "VideoCapture", lambda index: cap)
    source = WebcamSource(0, timeout_s=1.5)
    assert cap.props[cv2.CAP_PROP_FRAME_WIDTH] == 640 and cap.props[cv2.CAP_PROP_READ_TIMEOUT_MSEC] == 1500
    assert source.read().image.shape == (480, 640, 3)
    with pytest.raises(CameraError, match=r"^webcam 0: malformed frame \(shape \(480, 640, 2\)"):
        source.read()
    with pytest.raises(CameraError, match=r"^webcam 0: no frame \(unplugged or stalled\)$"):
        source.read()
    source.close()
    assert cap.released


def test_image_folder_sorted_gray_and_colour(tmp_path):
    cv2.imwrite(str(tmp_path / "b.png"), np.full((10, 12, 3), 200, np.uint8))
    cv2.imwrite(str(tmp_path / "a.png"), np.full((10, 12), 100, np.uint8))
    cv2.imwrite(str(tmp_path / "c.png"), np.full((10, 12, 4), 50, np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    source = ImageFolderSource(tmp_path)
    a, b, c = source.read(), source.read(), source.read()
    assert a.image.shape == (10, 12) and a.image[0, 0] == 100 and a.t is None
    assert b.image.shape == (10, 12, 3) and c.image.shape == (10, 12, 3)
    assert source.read() is None
    timed = ImageFolderSource(tmp_path, fps=4)
    assert [timed.read().t for _ in range(3)] == [0, 0.25, 0.5]


def test_image_folder_problems(tmp_path):
    with pytest.raises(CameraError, match="no image files"):
        ImageFolderSource(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG garbage")
    source = ImageFolderSource(tmp_path)
    with pytest.raises(CameraError, match="cannot read broken.png"):
        source.read()
    with pytest.raises(CameraError, match="not a folder"):
        ImageFolderSource(tmp_path / "broken.png")


@pytest.mark.parametrize("image, what", [
    (None, "empty frame"), (np.zeros((0, 5), np.uint8), "empty frame"),
    (np.zeros((4, 4, 2), np.uint8), "malformed"), (np.zeros((4, 4), np.float32), "malformed")])
def test_check_image_rejects_empty_and_malformed(image, what):
    with pytest.raises(CameraError, match=f"^cam: {what}"):
        check_image(image, "cam")


class FakeSource:
    """Delivers ``frames`` frames, then fails with ``error`` (or ends if error is None)."""

    def __init__(self, frames, error=CameraError("webcam 0: no frame (unplugged or stalled)")):
        self.left, self.error, self.closed = frames, error, False
        self.name = "fake"

    def read(self):
        if self.left == 0:
            if self.error is None:
                return None
            raise self.error
        self.left -= 1
        return Frame(np.zeros((4, 4), np.uint8))

    def close(self):
        self.closed = True


def test_resilient_source_backs_off_reports_no_input_and_recovers():
    clock = VirtualClock()
    plan = [FakeSource(2), CameraError("webcam 0: cannot open"), RuntimeError("usb\nreset"),
            FakeSource(1, error=OSError("gone"))]
    made = []

    def open_fn():
        step = plan.pop(0)
        if isinstance(step, Exception):
            raise step
        made.append(step)
        return step

    source = ResilientSource(open_fn, clock, name="webcam 0", backoff_s=0.5, max_backoff_s=1.5)
    assert isinstance(source.read(), Frame) and isinstance(source.read(), Frame)
    down = source.read()                          # unplugged at t=0
    assert down == NoInput("webcam 0: no frame (unplugged or stalled)", 0.0, 0.5)
    assert made[0].closed
    clock.sleep(0.25)
    assert source.read() is down                  # not yet time to retry: no attempt made
    clock.sleep(0.25)
    down = source.read()                          # retry at 0.5 fails; next in 1.0
    assert down == NoInput("webcam 0: cannot open", 0.0, 1.5)
    clock.sleep(1.0)
    down = source.read()                          # retry at 1.5 fails; back-off capped at 1.5
    assert down == NoInput("webcam 0: usb reset", 0.0, 3.0)
    clock.sleep(1.5)
    assert isinstance(source.read(), Frame)       # back at 3.0
    assert source.opens == 2
    down = source.read()                          # fails again: back-off starts over
    assert down == NoInput("webcam 0: gone", 3.0, 3.5)
    source.close()
    assert source.read() is None and made[1].closed


def test_resilient_source_passes_the_end_of_a_file_through(tmp_path):
    path = write_video(tmp_path / "v.mp4", n=2)
    source = ResilientSource(lambda: VideoFileSource(path), VirtualClock())
    assert source.read() is not None and source.read() is not None
    assert source.read() is None and source.read() is None


def test_resilient_source_rejects_bad_backoff():
    with pytest.raises(ValueError):
        ResilientSource(lambda: FakeSource(1), VirtualClock(), backoff_s=2, max_backoff_s=1)


class FakePicamera2:
    """The few Picamera2 calls the Pi source makes; frames are YUV420 buffers."""

    instances: list[FakePicamera2] = []
    fail_open = False

    def __init__(self, camera_num=0):
        if FakePicamera2.fail_open:
            raise RuntimeError("Camera __init__ sequence did not complete.")
        self.frames = 2
        self.controls: list[dict] = []
        self.config = None
        self.stopped = self.closed = False
        FakePicamera2.instances.append(self)

    def create_video_configuration(self, main, buffer_count):
        return {"main": main, "buffer_count": buffer_count}

    def configure(self, config):
        self.config = config

    def start(self):
        pass

    def capture_arrays(self, names, wait):
        assert names == ["main"] and wait is False
        return "job"

    def wait(self, job, timeout):
        if self.frames == 0:
            raise TimeoutError
        self.frames -= 1
        w, h = self.config["main"]["size"]
        yuv = np.full((h * 3 // 2, w), 77, np.uint8)
        yuv[:h] = 9                                 # the Y plane
        return [yuv], {"ExposureTime": 9000, "AnalogueGain": 2.0, "ColourGains": (1.8, 1.5)}

    def set_controls(self, controls):
        self.controls.append(controls)

    def stop(self):
        self.stopped = True

    def close(self):
        self.closed = True


@pytest.fixture
def fake_picamera2(monkeypatch):
    FakePicamera2.instances, FakePicamera2.fail_open = [], False
    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=FakePicamera2))
    return FakePicamera2


def test_pi_camera_gives_the_y_plane_as_gray(fake_picamera2):
    source = open_source("picamera")
    assert isinstance(source, PiCameraSource)
    cam = fake_picamera2.instances[0]
    assert cam.config["main"] == {"size": (640, 480), "format": "YUV420"}
    frame = source.read()
    assert frame.image.shape == (480, 640) and np.all(frame.image == 9) and frame.t is None
    source.read()
    with pytest.raises(CameraError, match=r"^pi camera 0: no frame within 2 s$"):
        source.read()
    source.close()
    assert cam.stopped and cam.closed


def test_pi_camera_locks_exposure_once_settled_on_a_well_exposed_face(fake_picamera2):
    """The thin shell: the face's brightness and the frame's metadata go to the lock, its
    controls to picamera2 (the decisions: tests/test_exposure.py)."""
    source = open_source("picamera")
    cam = fake_picamera2.instances[0]
    cam.frames = 30
    for i in range(25):
        source.read()
        source.face_exposure(i / 10, 120.0)
    assert len(cam.controls) == 1
    assert cam.controls[0] == {"AeEnable": False, "AwbEnable": False, "ExposureTime": 10000,
                               "AnalogueGain": 1.8, "ColourGains": (1.8, 1.5)}
    source.close()


def test_pi_camera_that_cannot_open(fake_picamera2):
    fake_picamera2.fail_open = True
    with pytest.raises(CameraError, match=r"^pi camera 0: cannot open \(Camera __init__"):
        PiCameraSource()


def test_pi_camera_without_picamera2(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(CameraError, match="picamera2 is not installed"):
        open_source("pi")
