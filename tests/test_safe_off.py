"""``relaxd safe-off`` switches the actuator pins off and latches after a crash whatever else is
wrong: the configuration's pins when they can be read (a mistake elsewhere does not matter),
else the copy saved at the last start, else the documented defaults; one line says which. The
pins stay claimed as outputs at their off level until the process ends.

Subprocesses run the chair's path (no ``--simulate``) on gpiozero's mock pins
(``GPIOZERO_PIN_FACTORY=mock``); in-process runs use the MockFactory of ``mock_factory``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import failing_pin
from gpiozero import Device

from relaxd.cli import main
from relaxd.config import Config, load_config
from relaxd.core.yamlspec import SpecError
from relaxd.daemon import hardware
from relaxd.daemon.hardware import ChairHardware, SimulatedHardware
from relaxd.outputs.pins import SAVED_PINS, ActuatorPins, read_saved_pins
from relaxd.safety.latch import UNCLEAN_REASON, FaultLatch, RunMarker

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PINS = (17, 27, 22, 23)


def safe_off(*args: str | Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("RELAXD_CONFIG", "RELAXD_STATE_DIR", "STATE_DIRECTORY")}
    return subprocess.run([sys.executable, "-m", "relaxd", "safe-off", *map(str, args)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**clean, "GPIOZERO_PIN_FACTORY": "mock", **env})


@pytest.fixture
def crashed(tmp_path) -> Path:
    """A state directory whose run never ended cleanly (the run marker is there)."""
    state = tmp_path / "state"
    state.mkdir()
    RunMarker.in_state_dir(state).begin()
    return state


def saved_copy(state: Path, tmp_path: Path, text: str) -> None:
    """The copy the chair's hardware saves at a start with the configuration ``text``."""
    good = tmp_path / "good.yaml"
    good.write_text(f"state_dir: {state}\n{text}")
    ChairHardware(load_config(good)).fault_latch()


def assert_latched(done: subprocess.CompletedProcess, state: Path) -> None:
    assert "Traceback" not in done.stderr
    assert f"latched: {UNCLEAN_REASON}" in done.stdout
    assert FaultLatch.in_state_dir(state).reason == UNCLEAN_REASON


def test_a_mistake_elsewhere_in_the_config_still_switches_off_and_latches(tmp_path, crashed):
    config = tmp_path / "config.yaml"
    config.write_text(f"state_dir: {crashed}\ncamera:\n  fps: 500\nactuators:\n  red_pin: 12\n"
                      "  light_frequency: 5\nalerts:\n  timeout: 1000\n")
    with pytest.raises(SpecError, match="outside"):  # the daemon refuses this file
        load_config(config)
    done = safe_off("--config", config)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == \
        f"relaxd safe-off: pins from config {config}: GPIO12,27,22,23 (active-high)"
    assert_latched(done, crashed)


BROKEN_PINS = {
    "YAML syntax": "actuators: [\n",
    "pin out of range": "actuators:\n  red_pin: 40\n",
    "polarity not a bool": "actuators:\n  active_high: 'no'\n",
    "a pin twice": "actuators:\n  red_pin: 22\n",
    "a key twice": "actuators:\n  red_pin: 12\n  red_pin: 13\n",
    "merged from elsewhere": "pins: &p {red_pin: 12}\nactuators:\n  <<: *p\n",
}


@pytest.mark.parametrize("broken", BROKEN_PINS.values(), ids=BROKEN_PINS.keys())
def test_pins_that_cannot_be_read_come_from_the_copy_saved_at_the_last_start(
        tmp_path, crashed, broken):
    saved_copy(crashed, tmp_path, "actuators:\n  red_pin: 12\n  active_high: false\n")
    config = tmp_path / "config.yaml"
    config.write_text(broken)
    done = safe_off("--config", config, RELAXD_STATE_DIR=str(crashed))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == (
        f"relaxd safe-off: pins from the copy saved at last start ({crashed / SAVED_PINS}): "
        "GPIO12,27,22,23 (active-low)")
    assert f"the pins in {config} cannot be read: {config}:" in done.stderr
    assert_latched(done, crashed)


def test_a_missing_config_file_also_falls_back_to_the_copy(tmp_path, crashed):
    saved_copy(crashed, tmp_path, "actuators:\n  vibration_pin: 24\n")
    done = safe_off("--config", tmp_path / "gone.yaml", RELAXD_STATE_DIR=str(crashed))
    assert done.returncode == 0, done.stderr
    assert "saved at last start" in done.stdout and "GPIO17,27,22,24" in done.stdout
    assert_latched(done, crashed)


@pytest.mark.parametrize("copy", ["{", '{"red_pin": 12}', '{"red_pin": 99, "green_pin": 27, '
                                  '"blue_pin": 22, "vibration_pin": 23, "active_high": true}'],
                         ids=["not JSON", "pins missing", "pin out of range"])
def test_without_pins_or_a_usable_copy_the_documented_defaults_are_switched_off(
        tmp_path, crashed, copy):
    (crashed / SAVED_PINS).write_text(copy)
    config = tmp_path / "config.yaml"
    config.write_text("actuators: [\n")
    done = safe_off("--config", config, RELAXD_STATE_DIR=str(crashed))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == \
        "relaxd safe-off: pins from the documented defaults: GPIO17,27,22,23 (active-high)"
    assert f"no usable copy of the pins: {crashed / SAVED_PINS}" in done.stderr
    assert_latched(done, crashed)


def test_the_copy_is_saved_when_the_chairs_hardware_is_set_up_for_a_run(tmp_path):
    state = tmp_path / "state"
    config = tmp_path / "config.yaml"
    config.write_text(f"state_dir: {state}\nactuators:\n  blue_pin: 24\n  active_high: false\n")
    ChairHardware(load_config(config)).fault_latch()
    assert read_saved_pins(state) == ActuatorPins(blue_pin=24, active_high=False)
    assert json.loads((state / SAVED_PINS).read_text())["config"] == str(config)
    # a rehearsal keeps it only where it keeps its latch (--keep-latch)
    SimulatedHardware(Config(), tmp_path / "sim").fault_latch()
    assert not (tmp_path / "sim" / SAVED_PINS).exists()
    SimulatedHardware(Config(), tmp_path / "kept", keep_latch=True).fault_latch()
    assert read_saved_pins(tmp_path / "kept") == ActuatorPins()


@pytest.fixture
def chair_pins(mock_factory, monkeypatch):
    """gpiozero's default pin factory, as safe-off finds it on the chair, is mock_factory."""
    monkeypatch.setattr(Device, "pin_factory", mock_factory)
    yield mock_factory
    getattr(hardware, "HELD_UNTIL_EXIT", []).clear()


@pytest.mark.parametrize("active_high", [True, False])
def test_the_pins_stay_claimed_as_outputs_at_their_off_level(tmp_path, chair_pins, active_high):
    config = tmp_path / "config.yaml"
    config.write_text(f"state_dir: {tmp_path}\nactuators:\n  active_high: {active_high}\n")
    for pin in DEFAULT_PINS:  # the crashed run left them on
        chair_pins.pin(pin).function = "output"
        chair_pins.pin(pin).state = active_high
    assert main(["safe-off", "--config", str(config)]) == 0
    off = 0 if active_high else 1
    assert [(chair_pins.pin(p).function, chair_pins.pin(p).state) for p in DEFAULT_PINS] == \
        [("output", off)] * 4


def test_a_pin_that_cannot_be_driven_exits_1_and_the_others_are_held_off(
        tmp_path, chair_pins, crashed, caplog):
    failing_pin(chair_pins, 27)
    config = tmp_path / "config.yaml"
    config.write_text(f"state_dir: {crashed}\n")
    assert main(["safe-off", "--config", str(config)]) == 1
    assert "could not switch off GPIO27: GPIO27: driver not responding" in caplog.text
    assert [(chair_pins.pin(p).function, chair_pins.pin(p).state) for p in (17, 22, 23)] == \
        [("output", 0)] * 3
    assert FaultLatch.in_state_dir(crashed).reason == UNCLEAN_REASON


def test_safe_off_on_the_chair_reads_no_full_configuration(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(f"state_dir: {tmp_path}\n")
    code = ("import sys\nfrom relaxd.cli import main\n"
            f"assert main(['safe-off', '--config', {str(config)!r}]) == 0\n"
            "print(*sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, env={**os.environ, "GPIOZERO_PIN_FACTORY": "mock"})
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.split()
    assert [m for m in ("numpy", "relaxd.config", "relaxd.outputs.audio", "cv2") if m in loaded] == []
