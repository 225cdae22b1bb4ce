"""`relaxd --simulate` end to end: the timeline follows the relaxation loop; bad input is one line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from relaxd.cli import main

SCRIPT = """\
- {at: 0, mood: neutral}
- {at: 20, mood: positive}
- {at: 240, mood: neutral}
- {at: 300, mood: negative}
- {at: 330, mood: negative, confidence: 0.95}
- {at: 340, mood: neutral}
- {at: 420, mood: positive}
- {at: 500, press: estop}
"""


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def timeline(tmp_path: Path) -> list[dict]:
    script = tmp_path / "moods.yaml"
    script.write_text(SCRIPT)
    events = tmp_path / "events.jsonl"
    code = main(["--simulate", "--mood-script", str(script), "--speed", "max", "--quiet",
                 "--events", str(events), "--out", str(tmp_path / "out")])
    assert code == 0
    return _events(events)


def _decisions(events: list[dict], start: float, end: float) -> list[str]:
    return [e["action"] for e in events if e["type"] == "decision" and start <= e["t"] < end]


def _levels_at(events: list[dict], t: float) -> dict:
    return [e for e in events if e["type"] == "levels" and e["t"] <= t][-1]


def test_every_event_has_time_and_type(timeline):
    assert all(isinstance(e["t"], (int, float)) and e["type"] for e in timeline)
    # The loop's own events are in time order; the e-stop's record and alert come from the
    # button's worker thread, so they may land a tick later in the file.
    loop = [e["t"] for e in timeline if e["type"] not in ("estop", "alert")]
    assert loop == sorted(loop)
    types = {e["type"] for e in timeline}
    assert {"mood", "decision", "levels", "alert", "estop"} <= types


def test_neutral_holds_and_positive_raises(timeline):
    assert _decisions(timeline, 0, 20) == ["start", "hold"]
    raises = _decisions(timeline, 20, 240)
    assert raises and set(raises) == {"raise"}
    intensities = [e["intensity"] for e in timeline
                   if e["type"] == "decision" and e["action"] == "raise"]
    assert intensities == sorted(intensities) and max(intensities) <= 0.8 + 1e-9
    assert _decisions(timeline, 240, 300) == ["hold"]


def test_negative_reduces_then_halts_with_alert_then_restarts(timeline):
    assert "reduce" in _decisions(timeline, 300, 330)
    assert "halt" in _decisions(timeline, 330, 340)
    assert any(e["type"] == "alert" and e["reason"] == "halt" for e in timeline)
    assert "restart" in _decisions(timeline, 340, 500)
    halted = _levels_at(timeline, 339)
    assert halted["light"] == halted["audio"] == halted["vibration"] == 0


def test_levels_ramp_and_stay_within_unit_range(timeline):
    levels = [e for e in timeline if e["type"] == "levels"]
    for e in levels:
        assert all(0 <= e[k] <= 1 for k in ("light", "audio", "vibration"))
    playing = [e for e in levels if e["t"] < 300]
    assert max(e["light"] for e in playing) > 0.2


def test_estop_zeroes_everything_and_stays_zero(timeline):
    press = next(e for e in timeline if e["type"] == "estop")
    assert press["t"] == pytest.approx(500, abs=0.2)
    assert any(e["type"] == "alert" and e["reason"] == "estop" for e in timeline)
    after = [e for e in timeline if e["type"] == "levels" and e["t"] >= press["t"]]
    assert after and all(e["light"] == e["audio"] == e["vibration"] == 0 for e in after)
    assert timeline[-1]["type"] == "session" and timeline[-1]["state"] == "end"


def test_session_is_recorded_and_audio_rendered(timeline, tmp_path):
    out = tmp_path / "out"
    assert (out / "sessions.sqlite").stat().st_size > 0
    assert (out / "audio.wav").stat().st_size > 44


def test_bundled_demo_runs(tmp_path, capsys):
    events = tmp_path / "e.jsonl"
    assert main(["--simulate", "--speed", "max", "--quiet", "--events", str(events),
                 "--out", str(tmp_path)]) == 0
    kinds = {e["type"] for e in _events(events)}
    assert {"mood", "decision", "levels", "alert", "estop"} <= kinds


@pytest.mark.parametrize("args, needle", [
    (["--mood-script", "{tmp}/missing.yaml"], "missing.yaml"),
    (["--mood-script", "{tmp}/bad.yaml"], "bad.yaml:1:"),
    (["--video", "{tmp}/missing.mp4"], "missing.mp4"),
    (["--video", "{tmp}/bad.yaml"], "bad.yaml"),
    (["--images", "{tmp}/empty"], "empty"),
    (["--scenario", "{tmp}/missing-scenario.yaml"], "missing-scenario.yaml"),
    (["--camera", "63"], "webcam 63"),
    (["--config", "{tmp}/config.yaml", "--video", "{tmp}/bad.yaml"], "config.yaml:1:"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, needle):
    (tmp_path / "bad.yaml").write_text("- {at: 0, mood: happy}\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "config.yaml").write_text("camera: {sorce: webcam}\n")
    argv = ["--simulate", "--quiet", "--out", str(tmp_path / "out")]
    argv += [a.format(tmp=tmp_path) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out" / "audio.wav").exists()  # nothing was started


def test_sigterm_ends_cleanly_with_outputs_off(tmp_path):
    script = tmp_path / "moods.yaml"
    script.write_text("- {at: 0, mood: positive}\n")
    events = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "relaxd", "--simulate", "--mood-script", str(script), "--speed", "5",
         "--quiet", "--events", str(events), "--out", str(tmp_path / "out")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if events.exists() and '"levels"' in events.read_text():
            break
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    timeline = _events(events)
    assert timeline[-1] == {**timeline[-1], "type": "session", "state": "end", "reason": "SIGTERM"}
    last_levels = [e for e in timeline if e["type"] == "levels"][-1]
    assert last_levels["light"] == last_levels["audio"] == last_levels["vibration"] == 0
    assert max(e["light"] for e in timeline if e["type"] == "levels") > 0


def test_video_runs_the_whole_vision_pipeline(tmp_path):
    """Frames -> Haar face -> int8 model -> smoothed mood -> controller -> levels, from a video."""
    pytest.importorskip("skimage")
    import cv2

    from relaxd.commands.bench import builtin_frames

    video = tmp_path / "child.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for frame in builtin_frames(60):
        writer.write(frame)
    writer.release()
    events = tmp_path / "events.jsonl"
    assert main(["--simulate", "--video", str(video), "--speed", "max", "--quiet",
                 "--events", str(events), "--out", str(tmp_path / "out")]) == 0
    timeline = _events(events)
    moods = [e for e in timeline if e["type"] == "mood"]
    assert moods and moods[0]["mood"] in ("negative", "neutral", "positive")
    assert any(e["type"] == "decision" and e["action"] == "start" for e in timeline)
    assert max(e["light"] for e in timeline if e["type"] == "levels") > 0
    assert timeline[-1] == {**timeline[-1], "type": "session", "state": "end",
                            "reason": "input ended"}


FULL_SCENARIO = """\
name: Everything at full
intensity: {start: 1, min: 1, max: 1}
rules: {ramp: {light: 0.5, audio: 0.5, vibration: 0.5}, fade_out: 1}
crossfade: 1
phases:
  - name: pulse
    duration: 40
    light: {colour: "#ffffff", brightness: 1, pulse_period: 2}
    audio: {generator: tone, volume: 1}
    vibration: {pattern: pulse, intensity: 1, period: 1}
  - name: wave
    duration: 20
    light: {colour: "#ffffff", brightness: 1}
    audio: {generator: pink-noise, volume: 1}
    vibration: {pattern: wave, intensity: 1, period: 1}
"""
CAPS = {"light": 0.7, "audio": 0.5, "vibration": 0.6}
RAMPS = {"light": 0.1, "audio": 0.05, "vibration": 0.5}


def _trace(path: Path) -> list[dict]:
    from relaxd.records.events import read_trace

    return read_trace(path)


def test_installation_caps_and_ramps_hold_through_the_whole_trace(tmp_path):
    """A scenario asking for everything at full, ramps of 0.5 per second and a 1 s pulse: what
    reached the (mock) hardware stays within the installation's caps and ramps, every tick."""
    (tmp_path / "full.yaml").write_text(FULL_SCENARIO)
    (tmp_path / "moods.yaml").write_text("- {at: 0, mood: positive}\n")
    (tmp_path / "config.yaml").write_text(
        f"actuators: {{max_level: {json.dumps(CAPS)}, max_ramp: {json.dumps(RAMPS)}}}\n")
    assert main(["--simulate", "--config", str(tmp_path / "config.yaml"),
                 "--scenario", str(tmp_path / "full.yaml"),
                 "--mood-script", str(tmp_path / "moods.yaml"), "--speed", "max", "--quiet",
                 "--events", str(tmp_path / "e.jsonl"), "--trace", str(tmp_path / "t.csv"),
                 "--out", str(tmp_path / "out")]) == 0
    rows = _trace(tmp_path / "t.csv")
    assert rows[-1]["t"] > 60 and all(rows[-1][k] == 0 for k in CAPS)  # faded out to the end
    for k, cap in CAPS.items():
        assert all(r[k] <= cap + 1e-5 for r in rows), k
        for a, b in zip(rows, rows[1:]):  # values to 5 decimals, times to the millisecond
            assert abs(b[k] - a[k]) <= RAMPS[k] * (b["t"] - a["t"] + 0.001) + 1e-5, (k, a, b)
    assert max(r["light"] for r in rows) == pytest.approx(CAPS["light"], abs=0.01)
    assert max(r["audio"] for r in rows) == pytest.approx(CAPS["audio"], abs=0.01)
    pulse = [r["vibration"] for r in rows if 30 <= r["t"] < 40]
    assert max(pulse) - min(pulse) > 0.2  # the pulse still pulses, with softened edges
    levels = [e for e in _events(tmp_path / "e.jsonl") if e["type"] == "levels"]
    assert all(e[k] <= cap + 1e-9 for e in levels for k, cap in CAPS.items())  # capped record


TEMPO_SCENARIO = """\
name: Slowing breath
intensity: {start: 0.8, min: 0.8, max: 0.8}
rules: {ramp: {light: 0.05, audio: 0.05, vibration: 0.05}, fade_out: 10}
tempo: {start: 12, end: 6}
phases:
  - name: waves
    duration: 120
    light: {colour: "#3060ff", brightness: 0.5, pulse_period: 9}
    audio: {generator: soundscape, volume: 0.5}
    vibration: {pattern: wave, intensity: 0.5, period: 3}
  - name: deeper
    duration: 120
    light: {colour: "#3a30c0", brightness: 0.4}
    audio: {generator: brown-noise, volume: 0.4}
    vibration: {pattern: wave, intensity: 0.4}
"""


def _tempo_at(t: float) -> float:
    """The scenario's tempo (breaths a minute) at t: 12 -> 6 over its 240 s."""
    return 12 - 6 * min(t, 240) / 240


def _peaks(rows: list[dict], key: str, start: float, end: float) -> list[float]:
    """Times of the maxima of ``key`` (one a breath), refined by a parabola through 3 ticks."""
    ts = [r["t"] for r in rows]
    v = [r[key] for r in rows]
    out = []
    for i in range(1, len(v) - 1):
        if start <= ts[i] < end and v[i - 1] < v[i] >= v[i + 1]:
            window = 60 / _tempo_at(ts[i]) / 2  # the highest within half a breath either side
            near = [v[j] for j in range(len(v)) if abs(ts[j] - ts[i]) <= window]
            if v[i] == max(near):
                a, b, c = v[i - 1], v[i], v[i + 1]
                shift = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c else 0.0
                out.append(ts[i] + shift * (ts[i + 1] - ts[i - 1]) / 2)
    return out


@pytest.fixture(scope="module")
def tempo_trace(tmp_path_factory) -> list[dict]:
    tmp = tmp_path_factory.mktemp("tempo")
    (tmp / "tempo.yaml").write_text(TEMPO_SCENARIO)
    (tmp / "moods.yaml").write_text("- {at: 0, mood: neutral}\n")
    assert main(["--simulate", "--scenario", str(tmp / "tempo.yaml"),
                 "--mood-script", str(tmp / "moods.yaml"), "--speed", "max", "--quiet",
                 "--trace", str(tmp / "t.csv"), "--out", str(tmp / "out")]) == 0
    return _trace(tmp / "t.csv")


def test_light_sound_and_vibration_peak_together_over_a_slowing_tempo(tempo_trace):
    light = _peaks(tempo_trace, "light", 15, 245)
    assert len(light) > 25  # about 9 breaths a minute over 4 minutes
    for key in ("vibration", "audio"):
        others = _peaks(tempo_trace, key, 10, 250)
        for t in light:
            breath = 60 / _tempo_at(t)
            nearest = min(others, key=lambda o: abs(o - t))
            assert abs(nearest - t) <= 0.05 * breath, (key, t, nearest, breath)


def test_breaths_per_minute_of_the_light_follow_the_tempo(tempo_trace):
    light = _peaks(tempo_trace, "light", 15, 245)
    for a, b in (light[:2], light[1:3], light[-2:], light[-3:-1]):  # at its start and its end
        assert 60 / (b - a) == pytest.approx(_tempo_at((a + b) / 2), abs=0.2), (a, b)


def test_no_step_when_the_tempo_slows_or_a_phase_begins(tempo_trace):
    ramps = {"light": 0.2, "audio": 0.1, "vibration": 1.5}  # the default installation caps
    steady = {k: 0.0 for k in ramps}
    for a, b in zip(tempo_trace, tempo_trace[1:]):
        for k, r in ramps.items():
            step = abs(b[k] - a[k]) / max(b["t"] - a["t"], 1e-3)
            assert step <= r * 1.02 + 1e-3, (k, a, b)
            if 20 <= a["t"] < 110:
                steady[k] = max(steady[k], step)
    # Around the phase change (120 s: new sound, new levels) nothing moves faster than the
    # breathing itself did at its fastest.
    for a, b in zip(tempo_trace, tempo_trace[1:]):
        if 115 <= a["t"] < 130:
            for k in ramps:
                assert abs(b[k] - a[k]) / (b["t"] - a["t"]) <= steady[k] * 1.1 + 1e-3, (k, a)
