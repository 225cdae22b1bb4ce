"""relaxd check: each check's ok and FAIL cases, the report, and the simulated run."""

from __future__ import annotations

import argparse
import base64
import io
import os
import socket
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from gpiozero import LED
from gpiozero.pins.mock import MockFactory, MockPWMPin

from relaxd.commands import check
from relaxd.commands.check import (
    Check,
    check_audio,
    check_camera,
    check_camera_view,
    check_config,
    check_estop,
    check_model,
    check_output_pin,
    check_scenario,
    check_state_dir,
    report,
    sample_face,
)
from relaxd.core.errors import RelaxdError
from relaxd.daemon.hardware import SimulatedHands
from relaxd.safety.settings import SafetySettings
from relaxd.vision.camera import CameraError, Frame

# A 2.7 kB int8 TFLite model with the classifier's shapes, (1, 48, 48, 1) -> (1, 7): one conv,
# pooling, dense softmax, untrained; made with tf.lite.TFLiteConverter (full int8).
TINY_MODEL = zlib.decompress(base64.b64decode(
    "eNq1Vn9MG3UU/5YeUEoFZJXBIMg0U/5oCgVStEfYsGA20wIBJGii3UEPaChXbK/EKPHahT8Wo24CYYThMgnJlvgjMSH+"
    "43RqlkUWIzMxGBOjizETdSYk/uFg0PO9u+/1bmW6qPGbvH7v+7333ufz3vd9X6+KENLzuK8eJmInVaSClMJcRGywthAG"
    "ngnsETIHsoFzFiHnQdbzCDHD2gRShMbEqlihjRVWNmrXBFIIEuOj4yFhKBDkB7l4WFTsGJCTsixb6DPOkbg4FhcDtYT6"
    "xv32HVlmqM8RPsrFAiIvxCJR1AEqpIHqfQu+8unzHhBvR3tvW1f3kY72gL+tp6W1pacFMFSOFoWxrjsaEgLRuCCGRvnA"
    "OB+NhSKCgrcEJBZAJkGaQGwgy7D/Nr4DWQCZARGpry3K9SjlayEFaTzMU7WSqxxlL4faYJy/mlFfyz2j2PZP3HNgvu+P"
    "+7JonIxiSUids87lhAwNplQs9OtyuhqcStbUceGmLH8McgnkM5ApqnsYRGp+45v3fjpWeSb5xbU3HaurzWv3lkQee22k"
    "LGl/5URq8gIjeYNHx+Wheucn0trmGVtytJtMrR7qmkq++6FgKp6ZlQrXF6/vS12nPqvI3UexrOo+AlK2OMMvfyeN/3ai"
    "Y/rV5OsTL0h9LxattE14X5Y+f7bw69lzn6YOPLjWLL3v2vhdunz18vGcB6Tg2eFTvdSHheYMc7K0KcvnQbDG/L4jXVXe"
    "iADnJ/JBp6JjV9AL0pnFvBfQfazPVlA6DOIzqfkd5UIC0eqJ1n2nwc8+6ief+qlQw8uroHkwZ5wvIYmDJgPnXJArEIfq"
    "j1iKqG+MZWxLljUdMz1r3Ad12RhDviEGGOWaD7Rdpj4022y6j/Z2pVZ2cTdhTTqUerXDXcAc5Sr1h+9MaXv1OTsdo5oj"
    "rQdYdD0CrYHUguISKHwFClUgPiAzhzkGSVBb6y2Mi5hKae6aqC1OnYbYMR83ttQ+UURxErI6VMwEWw6/3SIn8oPxcCcX"
    "FUMi3GA+6OXC4YDLU6v40nJ7LAP3EOWPuH0ZuMFbKq6W3xTF1frTyuL3ngqlvz0X56F9cABXE4T2xMPs50R/PFyn9SkN"
    "P2t7N34uxR824CPujxn4iQx8f+uKx5GJPxSO9MMDBxeBG+IDY5FIGHpvXRAp8Zxg5IO+pwx8qmmPyKF8tLNCTCfMTmoz"
    "sf33vBz9XWxTJq8BuJsKiy4+HGfv/AofIuE4Hh8x9Ecj9pUdlS9iH6c1iVyxH9t3VF4+/Uz/80A/z3xpZt8a+ciz9tS0"
    "59IMw1oX1j0b75zy7L/fyj55Y9Oz/y9jvT0grX+ZDXdnPnV7PIwKm3USz/9/iqe+m2l89OGL7pu/TLuf3pvd+FDyZ3ev"
    "d87tOGdtlH7YcmN/4KIhcdgJ/GMiJ4h6vTwh63yf1/tBHvKdSal8DTX9rwbaDtZMstbKRXaw+Cxb6D/Nih9MsbPb82z1"
    "xYPsXe6cS6vx3HTeSpRvm730X0BDKaG9DWu/lNrg1KmcA6OcRfM/vF81UT4YH8ADD4SEYGiAj+n/V8gDv7LK019ZROm3"
    "Rh4N9D/HZOgJ2h3Ev/ha+s6Wtmfot8ad++OelxJs5e5vsIDxWwpaZPquGTEYWnsOmh9cXwW/ZXquyq7BOk+v27wNWFfr"
    "76ttwKrQwNOs14z5T3F++ZU="))

SCENARIO = """\
name: check test
phases:
  - name: calm
    duration: 60
    light: {colour: "#3060ff"}
"""


@pytest.fixture
def factory():
    f = MockFactory(pin_class=MockPWMPin)
    yield f
    f.close()


@pytest.fixture
def model(tmp_path) -> Path:
    path = tmp_path / "tiny.tflite"
    path.write_bytes(TINY_MODEL)
    return path


@pytest.fixture
def config_file(tmp_path, model) -> Path:
    (tmp_path / "scenario.yaml").write_text(SCENARIO)
    path = tmp_path / "config.yaml"
    path.write_text(f"model:\n  path: {model}\nscenario: scenario.yaml\n")
    return path


def lines(checks) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = report(iter(checks), out)
    return code, out.getvalue().splitlines()


def test_simulated_run_passes(config_file, capsys):
    args = argparse.Namespace(config=str(config_file), simulate=True)
    assert check.run(args) == 0
    out = capsys.readouterr().out.splitlines()
    names = [line[6:20].strip() for line in out[:-1]]
    assert names == ["config", "scenario", "camera", "camera view", "model", "light red", "light green",
                     "light blue", "vibration", "buzzer", "alert LED", "e-stop", "reset button",
                     "audio", "state dir", "temperature", "throttling", "station"]
    assert all(line.startswith("ok ") for line in out[:-1]), out
    assert out[-1] == "all checks passed"


def test_missing_model_and_bad_state_dir_fail_with_exit_1(tmp_path, config_file):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    config_file.write_text(f"model:\n  path: {tmp_path}/gone.tflite\nscenario: scenario.yaml\n"
                           f"state_dir: {blocker}/state\n")
    cwd = os.getcwd()
    checks = {c.name: c for c in check.run_checks(config_file, simulate=False)}
    assert os.getcwd() == cwd
    assert not checks["model"].ok and "gone.tflite: model file not found" in checks["model"].detail
    assert not checks["state dir"].ok and "no such folder" in checks["state dir"].detail
    code, out = lines(checks.values())
    assert code == 1
    assert any(line.startswith("FAIL  model ") for line in out)
    assert out[-1].endswith("checks failed")


def test_invalid_config_lists_every_problem_and_goes_on(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("camera:\n  fps: 0\nactuators:\n  red_pn: 5\n")
    result, config = check_config(path)
    assert not result.ok
    assert config == check.Config()
    code, out = lines([result])
    assert code == 1
    assert out[0].startswith(f"FAIL  config         {path}:2:8: 'fps' is 0")
    assert out[1].startswith(" " * 21 + f"{path}:4:3: unknown key 'red_pn'")


def test_scenario_problems_fail(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text("name: x\nphases: []\n")
    assert not check_scenario(bad).ok
    good = tmp_path / "good.yaml"
    good.write_text(SCENARIO)
    assert check_scenario(good) == Check("scenario", True, f"{good} valid (1 phases, 60 s)")


class Source:
    name = "test camera"

    def __init__(self, frame):
        self.frame, self.closed = frame, False

    def read(self):
        return self.frame

    def close(self):
        self.closed = True


class Repeating(Source):
    """The same frame again and again."""

    def __init__(self, image):
        super().__init__(Frame(image))


def _seated(top: int) -> np.ndarray:
    import cv2

    frame = np.full((480, 640), 128, np.uint8)
    face, _ = sample_face()
    frame[top:top + 160, 240:400] = cv2.resize(face, (160, 160))
    return frame


def test_the_camera_view_says_when_the_chest_is_out_of_the_picture():
    high = check_camera_view(lambda: Repeating(_seated(40)))
    assert high.ok and not high.warn and "chest below it in view" in high.detail, high
    low = check_camera_view(lambda: Repeating(_seated(300)))
    assert low.ok and low.warn and "chest is out of the camera's view" in low.detail, low
    empty = check_camera_view(lambda: Repeating(np.full((480, 640), 128, np.uint8)))
    assert empty.warn and "no face in view" in empty.detail


def test_camera_ok_and_failures():
    source = Source(Frame(np.zeros((480, 640), np.uint8)))
    result = check_camera(lambda: source)
    assert result.ok and result.detail.startswith("test camera: 640x480 frame") and source.closed
    ended = check_camera(lambda: Source(None))
    assert not ended.ok and "ended before giving a frame" in ended.detail

    def unplugged():
        raise CameraError("pi camera 0: cannot open (no camera)")
    assert check_camera(unplugged) == Check("camera", False, "pi camera 0: cannot open (no camera)")


def test_model_classifies_a_face(model):
    result = check_model(model)
    assert result.ok, result.detail
    assert result.detail.startswith("tiny.tflite: ")


def test_model_failures(tmp_path, monkeypatch, model):
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"not a model")
    assert not check_model(tmp_path / "missing.tflite").ok
    result = check_model(garbage)
    assert not result.ok and "not a usable TFLite model" in result.detail

    class Broken:
        def __init__(self, *args):
            pass

        def classify(self, face):
            return np.full(7, np.nan)
    monkeypatch.setattr("relaxd.vision.emotion.EmotionClassifier", Broken)
    result = check_model(model)
    assert not result.ok and "bad output" in result.detail


def test_sample_face_is_a_48_pixel_gray_face():
    face, origin = check.sample_face()
    assert face.shape == (48, 48) and face.dtype == np.uint8 and face.std() > 10
    assert origin in ("astronaut photo", "drawn face")


def test_output_pins(factory):
    assert check_output_pin("light red", 17, factory) == \
        Check("light red", True, "GPIO17 claimed and driven")
    states = [s.state for s in factory.pin(17).states]
    assert 0.1 in states and states[-1] == 0  # pulsed, then off
    holder = LED(27, pin_factory=factory)  # another program holds the pin
    busy = check_output_pin("light green", 27, factory)
    assert not busy.ok and "already in use" in busy.detail
    holder.close()


def test_no_actuator_is_pulsed_while_the_chair_is_latched(factory, tmp_path):
    from relaxd.config import Config
    from relaxd.daemon.hardware import SimulatedHardware

    config = Config()
    hw = SimulatedHardware(config, tmp_path / "state", pins=factory)
    checks = {c.name: c for c in check._pin_checks(config, hw, tmp_path, latched=True)}
    a = config.actuators
    for pin in (a.red_pin, a.green_pin, a.blue_pin, a.vibration_pin):
        assert max(s.state for s in factory.pin(pin).states) == 0  # never lit, not even 10 %
    assert checks["vibration"].ok and "not pulsed" in checks["vibration"].detail
    assert checks["buzzer"].ok and "driven" in checks["buzzer"].detail  # not an actuator


class PressedPin(MockPWMPin):
    """A pressed (or latched) e-stop holds the line low whatever the pull-up."""

    def drive_high(self):
        self.drive_low()


def test_estop(factory):
    assert check_estop(SafetySettings(estop_pin=26, estop_contact="no"), factory).ok
    factory.pin(5, pin_class=PressedPin)
    pressed = check_estop(SafetySettings(estop_pin=5, estop_contact="no"), factory)
    assert not pressed.ok and "GPIO5 (NO contact) reads pressed at start" in pressed.detail


def test_estop_nc_contact_reads_a_broken_wire_as_pressed(factory):
    nc = SafetySettings(estop_pin=13, estop_contact="nc")
    broken = check_estop(nc, factory)  # nothing holds the line low: the pull-up wins
    assert not broken.ok and "a broken wire reads pressed" in broken.detail
    rest = lambda: SimulatedHands(factory, nc).rest()  # noqa: E731
    assert check_estop(nc, factory, rest).ok  # the simulated button rests released


def test_reset_button(factory):
    assert check.check_reset_button(SafetySettings(), factory).ok
    factory.pin(12, pin_class=PressedPin)
    stuck = check.check_reset_button(SafetySettings(reset_pin=12), factory)
    assert not stuck.ok and "GPIO12 reads pressed" in stuck.detail


def test_audio(tmp_path):
    from relaxd.outputs.audio import WavFileOutput

    wav = tmp_path / "out.wav"
    assert check_audio(lambda: WavFileOutput(wav)) == Check("audio", True, "WavFileOutput opens")
    assert wav.stat().st_size > 44

    def no_device():
        raise RelaxdError("cannot open audio device None: Error querying device -1")
    assert check_audio(no_device) == \
        Check("audio", False, "cannot open audio device None: Error querying device -1")


def test_state_dir(tmp_path, monkeypatch):
    result = check_state_dir(tmp_path)
    assert result.ok and result.detail.startswith(f"{tmp_path} writable, SQLite opens")
    assert list(tmp_path.iterdir()) == []  # leaves nothing behind
    assert not check_state_dir(tmp_path / "missing").ok
    monkeypatch.setattr(check, "MIN_FREE_BYTES", 1 << 62)
    full = check_state_dir(tmp_path)
    assert not full.ok and "MB free" in full.detail


def test_latch(tmp_path):
    from relaxd.safety.latch import FaultLatch

    assert check.check_latch(tmp_path, SafetySettings()) == Check("latch", True, "nothing latched")
    FaultLatch.in_state_dir(tmp_path).latch("estop", "emergency stop")
    result = check.check_latch(tmp_path, SafetySettings())
    assert not result.ok and result.detail.startswith("latched: emergency stop;")
    assert "reset button (GPIO16) 3 s" in result.detail and "e-stop free never" in result.detail


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_read_only_state_dir(tmp_path):
    tmp_path.chmod(0o500)
    try:
        assert not check_state_dir(tmp_path).ok
    finally:
        tmp_path.chmod(0o700)


def test_cli_wires_check(config_file, capsys):
    from relaxd.cli import main

    assert main(["check", "--simulate", "--config", str(config_file)]) == 0
    assert main(["--config", str(config_file), "--simulate", "check"]) == 0
    assert capsys.readouterr().out.count("all checks passed") == 2


@pytest.fixture
def station_config():
    """A chair with the station installed; its control socket in a short folder (unix socket
    paths are at most 107 bytes)."""
    from relaxd.safety.latch import RunMarker
    from relaxd.station.settings import UISettings

    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        config = check.Config()
        config.ui = UISettings(enabled=True, socket=Path(folder) / "control.sock")
        config.state_dir = Path(folder)
        RunMarker.in_state_dir(config.state_dir).begin()  # relaxd runs (this process stands in)
        yield config


def test_station_line_while_relaxd_is_stopped_says_to_check_again_while_it_runs(station_config):
    from relaxd.safety.latch import RunMarker

    RunMarker.in_state_dir(station_config.state_dir).end()
    result = check.check_station(station_config, simulated=False)
    assert result.ok and "relaxd is not running now" in result.detail
    (station_config.state_dir / "running").write_text('{"pid": 999999999}')  # a crashed run
    assert "not running now" in check.check_station(station_config, simulated=False).detail


def test_station_reaching_the_daemon_passes(station_config):
    from relaxd.daemon.server import ControlServer

    server = ControlServer(station_config.ui.socket, stop=lambda by: None)
    try:
        server.publish({"state": "idle"})
        result = check.check_station(station_config, simulated=False)
    finally:
        server.close()
    assert result.ok and "daemon socket answering (chair idle)" in result.detail, result


def _listening_but_silent(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.listen(1)  # connections queue; nobody ever answers
    return sock


def _gone(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()  # the file stays; a connect is refused
    return sock


@pytest.mark.parametrize("daemon, why", [
    (None, "cannot be reached (No such file or directory)"),
    (_gone, "cannot be reached (Connection refused)"),
    (_listening_but_silent, "gave no answer within 2 s"),
], ids=["no socket", "refused", "no answer"])
def test_station_that_cannot_reach_the_daemon_fails_in_one_line(station_config, daemon, why):
    sock = daemon(station_config.ui.socket) if daemon else None
    try:
        result = check.check_station(station_config, simulated=False)
    finally:
        if sock is not None:
            sock.close()
    assert not result.ok
    assert result.detail.startswith(
        f"the station's STOP cannot reach the chair: {station_config.ui.socket} {why}")
    assert "\n" not in result.detail
