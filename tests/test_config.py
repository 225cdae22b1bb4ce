"""The configuration file: defaults, which file is read, and FILE:LINE:COL problems."""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import pytest

from relaxd import config as cfg
from relaxd.config import Config, load_config
from relaxd.core.errors import RelaxdError
from relaxd.core.yamlspec import SpecError
from relaxd.vision.settings import CameraSettings

DEPLOYED = Path(__file__).resolve().parent.parent / "deploy" / "config.yaml"


@pytest.fixture(autouse=True)
def no_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("RELAXD_CONFIG", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setattr(cfg, "DEFAULT_PATH", tmp_path / "etc" / "config.yaml")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_deployed_config_validates_and_states_the_defaults():
    loaded = load_config(DEPLOYED)
    assert loaded.path == DEPLOYED
    # installed beside the file (/etc/relaxd/scenarios); in the source tree, the bundled one
    assert loaded.scenario.name == "calm-blue-waves.yaml" and loaded.scenario.is_file()
    defaults = Config()
    for f in dataclasses.fields(Config):
        if f.name not in ("scenario", "path"):
            assert getattr(loaded, f.name) == getattr(defaults, f.name), f.name


def test_deployed_config_documents_every_field():
    text = DEPLOYED.read_text()

    def names(obj: object) -> list[str]:
        out = []
        for f in dataclasses.fields(obj):
            if f.init and not f.metadata.get("deprecated"):
                value = getattr(obj, f.name)
                out.append(f.name)
                out += names(value) if dataclasses.is_dataclass(value) else []
        return out

    for name in names(Config()):
        # each key is set, or shown as a commented example
        assert re.search(rf"^\s*(# )?{name}:", text, re.M), f"{name} is not in {DEPLOYED.name}"


def test_missing_default_file_means_defaults(caplog):
    with caplog.at_level(logging.INFO, logger="relaxd.config"):
        loaded = load_config()
    assert loaded == Config()
    assert loaded.path is None
    assert "using the default configuration" in caplog.text


def test_default_file_is_read_when_present(tmp_path):
    cfg.DEFAULT_PATH.parent.mkdir()
    cfg.DEFAULT_PATH.write_text("camera:\n  fps: 5\n")
    assert load_config().camera.fps == 5.0


def test_explicit_file_must_exist(tmp_path, monkeypatch):
    with pytest.raises(RelaxdError, match="no such file"):
        load_config(tmp_path / "nope.yaml")
    monkeypatch.setenv("RELAXD_CONFIG", str(tmp_path / "gone.yaml"))
    with pytest.raises(RelaxdError, match="gone.yaml: no such file"):
        load_config()


def test_environment_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("RELAXD_CONFIG", str(write(tmp_path, "model:\n  threads: 2\n")))
    assert load_config().model.threads == 2


def test_pins_must_differ_across_sections(tmp_path):
    path = write(tmp_path, "safety:\n  reset_pin: 17\nalerts:\n  buzzer_pin: 5\n")
    with pytest.raises(SpecError) as err:
        load_config(path)
    text = str(err.value)
    assert "GPIO17 is given to red and reset" in text and "GPIO5 is given to e-stop and buzzer" in text


def test_an_older_configuration_keeps_working_with_warnings(tmp_path, caplog):
    path = write(tmp_path, "safety:\n  estop_pin: 5\n  rearm_after: 1.0\n  buzzer_pin: null\n"
                           "  alert_command: [/usr/bin/notify]\n")
    with caplog.at_level(logging.WARNING, logger="relaxd.config"):
        config = load_config(path)
    assert config.alerts.buzzer_pin is None and config.alerts.command == ["/usr/bin/notify"]
    assert config.alerts.led_pin == 26
    assert f"{path}:4:3: 'safety.buzzer_pin' has moved to 'alerts.buzzer_pin'" in caplog.text
    assert f"{path}:5:3: 'safety.alert_command' has moved to 'alerts.command'" in caplog.text
    assert f"{path}:3:3: 'safety.rearm_after' is no longer used" in caplog.text


def test_empty_file_gives_defaults(tmp_path):
    assert load_config(write(tmp_path, "# nothing set\n")) == Config()


def test_every_problem_is_reported_with_its_position(tmp_path):
    path = write(tmp_path, "camera:\n  source: webcm\n  width: 10\nmodle: {}\nstate_dir: 3\n"
                           "alerts:\n  command: notify\n")
    with pytest.raises(SpecError) as err:
        load_config(path)
    lines = str(err.value).splitlines()
    assert lines[0].startswith(f"{path}:2:11: expected one of picamera, webcam, video, images")
    assert "did you mean 'webcam'" in lines[0]
    assert lines[1] == f"{path}:3:10: 'width' is 10, outside 160..1920"
    assert lines[2] == f"{path}:4:1: unknown key 'modle' (did you mean 'model'?)"
    assert lines[3].startswith(f"{path}:7:12: expected a list")
    assert len(lines) == 4  # state_dir: 3 is a valid (relative) path


@pytest.mark.parametrize("text, where", [
    ("pins: &p {red_pin: 12}\nactuators:\n  <<: *p\n", "3:3"),
    ("actuators:\n  red_pin: !!python/name:os.system 12\n", "2:12"),
], ids=["merge key", "python tag"])
def test_yaml_that_safe_yaml_cannot_build_is_a_problem_with_its_position(tmp_path, text, where):
    path = write(tmp_path, text)
    with pytest.raises(SpecError, match=rf"(?m)^{path}:{where}: YAML: could not determine a "
                                        "constructor for the tag"):
        load_config(path)


def test_mood_limits_are_reported_with_their_position(tmp_path):
    with pytest.raises(SpecError, match=r":2:13: "):
        load_config(write(tmp_path, "mood:\n  window_s: -1\n"))


def test_file_sources_need_a_path(tmp_path):
    with pytest.raises(SpecError, match=r":2:3: source video needs 'path'"):
        load_config(write(tmp_path, "camera:\n  source: video\n"))
    loaded = load_config(write(tmp_path, "camera:\n  source: images\n  path: frames\n"))
    assert loaded.camera.path == tmp_path / "frames"


def test_backoff_limits_are_ordered(tmp_path):
    with pytest.raises(SpecError, match="retry_backoff_max_s must be >= retry_backoff_s"):
        load_config(write(tmp_path, "camera:\n  retry_backoff_s: 5\n  retry_backoff_max_s: 1\n"))


def test_relative_paths_are_relative_to_the_file(tmp_path):
    loaded = load_config(write(tmp_path, "model:\n  path: m.tflite\nscenario: /s.yaml\n"))
    assert loaded.model.path == tmp_path / "m.tflite"
    assert loaded.scenario == Path("/s.yaml")


def test_state_dir_from_systemd(monkeypatch):
    assert Config().state_dir == Path("/var/lib/relaxd")
    monkeypatch.setenv("STATE_DIRECTORY", "/run/state/relaxd:/var/lib/other")
    assert Config().state_dir == Path("/run/state/relaxd")


def test_camera_settings_open_file_sources(tmp_path):
    import cv2
    import numpy as np

    (tmp_path / "frames").mkdir()
    cv2.imwrite(str(tmp_path / "frames" / "a.png"), np.zeros((48, 64), np.uint8))
    source = CameraSettings(source="images", path=tmp_path / "frames").open()
    frame = source.read()
    assert frame is not None and frame.image.shape == (48, 64)
    source.close()
