"""Real signals to a real ``relaxd --simulate --keep-latch`` process: SIGTERM is a clean stop
with every output at 0 and the next start runs normally; after SIGKILL (as after a segfault,
the watchdog's SIGABRT, an OOM kill or a power cut) the next start comes up latched, alerting,
with every output at 0, and ``relaxd safe-off`` latches too. ``relaxd reset`` is refused unless
the configuration allows a reset away from the chair."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from relaxd.outputs.pins import SAVED_PINS
from relaxd.safety.latch import FaultLatch, RunMarker

#: Neutral for good: the session plays on until a signal comes.
FOREVER = "- {at: 0, mood: neutral}\n"
#: A short session that ends on a pressed (and kept down) e-stop.
SHORT = "- {at: 0, mood: neutral}\n- {at: 120, press: estop}\n"


def relaxd(*args: str) -> list[str]:
    return [sys.executable, "-m", "relaxd", *args]


def start(out: Path, script: Path, speed: str, events: Path) -> subprocess.Popen:
    return subprocess.Popen(
        relaxd("--simulate", "--keep-latch", "--out", str(out), "--mood-script", str(script),
               "--speed", speed, "--quiet", "--events", str(events)),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def lit(events: list[dict]) -> bool:
    return any(e["type"] == "levels" and max(e["light"], e["audio"], e["vibration"]) > 0.05
               for e in events)


def wait_until_lit(proc: subprocess.Popen, events: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not lit(read_events(events)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the chair never lit up"
        time.sleep(0.1)


def run_short(out: Path, tmp_path: Path, name: str) -> list[dict]:
    script = tmp_path / "short.yaml"
    script.write_text(SHORT)
    events = tmp_path / f"{name}.jsonl"
    proc = start(out, script, "max", events)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return read_events(events)


@pytest.fixture
def forever(tmp_path):
    script = tmp_path / "forever.yaml"
    script.write_text(FOREVER)
    return script


def test_sigterm_stops_cleanly_and_the_next_start_runs(tmp_path, forever):
    out, events = tmp_path / "chair", tmp_path / "first.jsonl"
    proc = start(out, forever, "20", events)
    wait_until_lit(proc, events)
    assert RunMarker.in_state_dir(out).present
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    first = read_events(events)
    last_levels = [e for e in first if e["type"] == "levels"][-1]
    assert (last_levels["light"], last_levels["audio"], last_levels["vibration"]) == (0, 0, 0)
    assert first[-1] == {**first[-1], "type": "session", "state": "end", "reason": "SIGTERM"}
    assert not RunMarker.in_state_dir(out).present
    assert FaultLatch.in_state_dir(out).reason is None

    second = run_short(out, tmp_path, "second")
    assert lit(second)  # ran normally: not latched by the clean stop
    assert [e["source"] for e in second if e["type"] == "estop"] == ["button"]


def test_sigkill_comes_back_latched_alerting_and_dark(tmp_path, forever):
    out, events = tmp_path / "chair", tmp_path / "first.jsonl"
    proc = start(out, forever, "20", events)
    wait_until_lit(proc, events)
    proc.kill()
    proc.wait(10)
    assert RunMarker.in_state_dir(out).present  # nothing could clean up

    safe_off = subprocess.run(relaxd("safe-off", "--simulate", "--out", str(out)),
                              capture_output=True, text=True, timeout=60)
    assert safe_off.returncode == 0, safe_off.stderr
    # the pins the killed run drove, as it saved them at its start
    assert f"pins from the copy saved at last start ({out / SAVED_PINS})" in safe_off.stdout
    assert "latched: the previous run ended uncleanly" in safe_off.stdout
    assert "uncleanly" in FaultLatch.in_state_dir(out).reason

    second = run_short(out, tmp_path, "second")
    assert not lit(second)  # every output stayed at 0
    alerts = [e for e in second if e["type"] == "alert"]
    assert "still latched" in alerts[0]["detail"] and "ended uncleanly" in alerts[0]["detail"]
    assert "crash" in FaultLatch.in_state_dir(out).causes  # until the reset button


def test_a_clean_exit_then_safe_off_latches_nothing(tmp_path):
    out = tmp_path / "chair"
    run_short(out, tmp_path, "first")
    latch = FaultLatch.in_state_dir(out)
    latch.clear("chair", latch.stop_seq)  # the short session ended on a kept-down e-stop
    done = subprocess.run(relaxd("safe-off", "--simulate", "--out", str(out)),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "latched" not in done.stdout
    assert not FaultLatch.in_state_dir(out).latched


def test_relaxd_reset_is_refused_unless_remote_reset_is_allowed(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    FaultLatch.in_state_dir(state).latch("estop")
    config = tmp_path / "config.yaml"
    config.write_text(f"state_dir: {state}\n")
    env = {**os.environ, "RELAXD_CONFIG": str(config)}
    refused = subprocess.run(relaxd("reset"), capture_output=True, text=True, env=env,
                             timeout=60)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "holds its reset button (GPIO16) for 3 s" in refused.stderr
    assert not FaultLatch.in_state_dir(state).request.exists()
    config.write_text(f"state_dir: {state}\nsafety:\n  remote_reset: true\n")
    allowed = subprocess.run(relaxd("reset"), capture_output=True, text=True, env=env,
                             timeout=60)
    assert allowed.returncode == 0 and "valid for 60 s" in allowed.stdout
    assert "idle with every output at 0" in allowed.stdout
    assert FaultLatch.in_state_dir(state).take_reset_request() == 1
