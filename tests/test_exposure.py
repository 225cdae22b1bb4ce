"""The Pi camera's exposure and white-balance lock, decided from time, the face's brightness
and the camera's metadata alone (picamera2 is a thin shell: tests/test_camera.py)."""

from __future__ import annotations

import pytest

from relaxd.config import Config, load_config
from relaxd.vision.exposure import AUTO, SETTLE_S, ExposureLock, lock_controls, pwm_multiple

META = {"ExposureTime": 9000, "AnalogueGain": 2.0, "ColourGains": (1.8, 1.5)}


def run(lock: ExposureLock, frames) -> list[tuple[float, dict]]:
    """(t, controls) for each frame (t, face brightness, metadata) that set any."""
    out = []
    for t, face, meta in frames:
        controls = lock.update(t, face, meta)
        if controls is not None:
            out.append((t, controls))
    return out


def steady(start: float, end: float, face: float | None = 120.0, meta=META, fps: float = 10):
    n = int(round((end - start) * fps))
    return [(start + i / fps, face, meta) for i in range(n)]


@pytest.mark.parametrize("exposure, hz, want", [(9000, 400, 10000), (11200, 400, 10000),
                                                (1000, 400, 2500), (16000, 120, 16667),
                                                (20000, 1000, 20000)])
def test_the_locked_exposure_is_whole_pwm_periods(exposure, hz, want):
    assert pwm_multiple(exposure, hz) == want
    assert abs(want * hz / 1e6 - round(want * hz / 1e6)) < 1e-3


def test_the_gain_makes_up_for_the_rounding_within_its_range():
    c = lock_controls(META, 400)
    assert c["ExposureTime"] == 10000 and c["AnalogueGain"] == pytest.approx(1.8)
    assert c["AeEnable"] is False and c["AwbEnable"] is False and c["ColourGains"] == (1.8, 1.5)
    bright = lock_controls({**META, "ExposureTime": 1000, "AnalogueGain": 1.0}, 400)
    assert bright["ExposureTime"] == 2500 and bright["AnalogueGain"] == 1.0  # never below 1


def test_locked_once_settled_on_a_well_exposed_face():
    moving = [(i / 10, 120.0, {**META, "ExposureTime": 4000 + 500 * i}) for i in range(10)]
    got = run(ExposureLock(400), moving + steady(1.0, 3.0))
    assert len(got) == 1 and got[0][0] == pytest.approx(1.0 + SETTLE_S)
    assert got[0][1]["ExposureTime"] == 10000


def test_not_locked_without_a_face_or_on_a_badly_exposed_one():
    assert run(ExposureLock(), steady(0, 5, face=None)) == []
    assert run(ExposureLock(), steady(0, 5, face=30.0)) == []  # too dark to lock on


def test_a_badly_exposed_face_lets_it_settle_again_and_locks_afresh():
    lock = ExposureLock(400)
    got = run(lock, steady(0, 2) + steady(2, 2.5, face=240.0) + steady(2.5, 4, face=240.0)
              + steady(4, 6, meta={**META, "ExposureTime": 5000}))
    assert [c["AeEnable"] for _, c in got] == [False, True, False]
    assert got[1][0] == pytest.approx(3.0)  # RESETTLE_AFTER_S of a badly exposed face
    assert got[2][1]["ExposureTime"] == 5000
    assert got[1][1] == AUTO


def test_a_moment_of_bad_exposure_or_a_lost_face_keeps_the_lock():
    got = run(ExposureLock(), steady(0, 2) + steady(2, 2.5, face=240.0) + steady(2.5, 5)
              + steady(5, 8, face=None))
    assert [c["AeEnable"] for _, c in got] == [False]


def test_a_new_session_settles_afresh():
    lock = ExposureLock()
    got = run(lock, steady(0, 3) + steady(0, 3))
    assert [c["AeEnable"] for _, c in got] == [False, True, False]


def test_the_configuration_gives_the_camera_the_leds_pwm_frequency(tmp_path):
    assert Config().camera.light_pwm_hz == 400
    path = tmp_path / "config.yaml"
    path.write_text("actuators:\n  light_frequency: 1000\n")
    config = load_config(path)
    assert config.camera.light_pwm_hz == 1000
