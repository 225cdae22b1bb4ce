"""The SQLite session record: storage, listing, export, and at most 1 s lost to SIGKILL."""

from __future__ import annotations

import argparse
import csv
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from relaxd.commands.sessions import configure, run
from relaxd.core.errors import RelaxdError
from relaxd.records.events import EventLog
from relaxd.records.sessions import DB_NAME, SessionSink, list_sessions, load_events

ROOT = Path(__file__).resolve().parent.parent


def record(state_dir: Path, seconds: int = 5, scenario: str = "Calm blue waves") -> int:
    sink = SessionSink(state_dir, scenario=scenario, source="test.mp4")
    log = EventLog([sink])
    log.emit(0.0, "session", state="start")
    for k in range(seconds * 10):
        t = k / 10
        log.emit(t, "mood", mood=["neutral", "positive", "negative", "no_face"][k // 13 % 4],
                 confidence=0.7)
        log.emit(t, "levels", light=t / seconds, audio=0.5, vibration=0.2)
    log.emit(2.0, "decision", action="halt", reason="test", alert="tell")
    log.emit(3.0, "estop", action="press", source="button")
    log.emit(seconds, "session", state="end", reason="scenario ended")
    log.close()
    return sink.session_id


def args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure(parser)
    return parser.parse_args(argv)


def test_events_round_trip_and_sessions_are_listed(tmp_path):
    first, second = record(tmp_path), record(tmp_path, 2, "Gentle start")
    assert second == first + 1
    sessions = list_sessions(tmp_path)
    assert [(s.id, s.scenario, s.source) for s in sessions] == [
        (first, "Calm blue waves", "test.mp4"), (second, "Gentle start", "test.mp4")]
    assert sessions[0].ended and sessions[0].duration == 5.0 and sessions[0].events == 104
    assert (sessions[0].alerts, sessions[0].estops) == (0, 1)
    events = load_events(tmp_path, first)
    assert events[0] == {"t": 0.0, "type": "session", "state": "start"}
    assert {"t": 3.0, "type": "estop", "action": "press", "source": "button"} in events
    assert [e["t"] for e in events] == sorted(e["t"] for e in events)


def test_database_is_wal_with_normal_sync(tmp_path):
    sink = SessionSink(tmp_path)
    assert sink._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert sink._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    sink.close()
    sink.close()


def test_commits_at_least_every_second_of_session_time(tmp_path):
    sink = SessionSink(tmp_path)
    reader = sqlite3.connect(tmp_path / DB_NAME)

    def stored() -> int:
        return reader.execute("SELECT COUNT(*) FROM events").fetchone()[0]

    for k in range(9):
        sink.write({"t": k / 10, "type": "mood", "mood": "neutral"})
    assert stored() == 0  # batched: not yet a second
    sink.write({"t": 1.0, "type": "levels", "light": 0.1})
    assert stored() == 10
    sink.write({"t": 1.1, "type": "alert", "reason": "halt"})  # urgent: at once
    assert stored() == 11
    sink.close()


def test_killed_writer_loses_at_most_the_last_second(tmp_path):
    code = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from relaxd.records.sessions import SessionSink
sink = SessionSink({str(tmp_path)!r})
k = 0
while True:
    t = k * 0.05
    sink.write({{"t": t, "type": "levels", "light": 0.5}})
    print(t, flush=True)
    k += 1
    time.sleep(0.002)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    last = 0.0
    for line in proc.stdout:
        last = float(line)
        if last >= 3.2:
            break
    proc.send_signal(signal.SIGKILL)
    rest = proc.stdout.read().split()
    proc.wait()
    last = float(rest[-1]) if rest else last
    (session,) = list_sessions(tmp_path)
    assert session.ended is None  # interrupted
    assert last - 1.0 <= session.duration <= last
    assert sqlite3.connect(tmp_path / DB_NAME).execute("PRAGMA integrity_check").fetchone() == \
        ("ok",)


def test_list_command(tmp_path, capsys):
    assert run(args(["--state-dir", str(tmp_path)])) == 0
    assert f"no sessions recorded in {tmp_path}" in capsys.readouterr().out
    record(tmp_path)
    assert run(args(["--state-dir", str(tmp_path)])) == 0
    out = capsys.readouterr().out
    assert "Calm blue waves" in out and "0:05" in out and "104" in out and "ended" in out


def test_export_csv_and_plot(tmp_path, capsys):
    sid = record(tmp_path)
    out_csv, png = tmp_path / "s.csv", tmp_path / "s.png"
    argv = ["--state-dir", str(tmp_path), "export", str(sid), "--csv", str(out_csv)]
    if pytest.importorskip("matplotlib"):
        argv += ["--plot", str(png)]
    assert run(args(argv)) == 0
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 104 and rows[0]["type"] == "session"
    assert {"t", "type", "mood", "light", "action", "reason"} <= set(rows[0])
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "104 events written" in capsys.readouterr().out


def test_a_state_dir_that_does_not_exist_is_an_error(tmp_path):
    with pytest.raises(RelaxdError, match="no such state directory") as err:
        run(args(["--state-dir", str(tmp_path / "typo")]))
    assert err.value.exit_code == 2


def test_export_errors(tmp_path):
    with pytest.raises(RelaxdError, match="no session 3"):
        run(args(["--state-dir", str(tmp_path), "export", "3", "--csv", str(tmp_path / "x")]))
    record(tmp_path)
    with pytest.raises(RelaxdError, match="no session 9"):
        run(args(["--state-dir", str(tmp_path), "export", "9", "--csv", str(tmp_path / "x")]))
    with pytest.raises(RelaxdError, match="--csv"):
        run(args(["--state-dir", str(tmp_path), "export", "1"]))
    with pytest.raises(RelaxdError, match="cannot write CSV"):
        run(args(["--state-dir", str(tmp_path), "export", "1", "--csv",
                  str(tmp_path / "no" / "x.csv")]))


def test_unusable_state_dir(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(RelaxdError, match="cannot create the state directory"):
        SessionSink(tmp_path / "file" / "sub")


def test_default_state_dir(monkeypatch, tmp_path):
    from relaxd.config import default_state_dir

    monkeypatch.setenv("RELAXD_STATE_DIR", str(tmp_path))
    assert default_state_dir() == tmp_path
    monkeypatch.delenv("RELAXD_STATE_DIR")
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/relaxd:/var/lib/other")
    assert default_state_dir() == Path("/var/lib/relaxd")


def test_a_damaged_record_is_a_clear_error(tmp_path):
    (tmp_path / DB_NAME).write_bytes(b"this is not a database" * 100)
    with pytest.raises(RelaxdError, match="session record"):
        list_sessions(tmp_path)
    with pytest.raises(RelaxdError, match="session record"):
        load_events(tmp_path, 1)


def test_the_plot_draws_the_vitals_beside_the_chairs_tempo(tmp_path):
    """With ``vitals`` events the plot gains the breathing panel (the child's rate, the chair's
    tempo, the calm rate) and the pulse and restlessness panel, below mood and levels."""
    pytest.importorskip("matplotlib")
    from PIL import Image

    from relaxd.records.sessions import plot_events

    events = [{"t": 0.0, "type": "session", "state": "start", "calm_breathing": 21.0},
              {"t": 0.0, "type": "mood", "mood": "neutral"},
              {"t": 0.0, "type": "levels", "light": 0.5, "audio": 0.0, "vibration": 0.0}]
    plain = tmp_path / "plain.png"
    plot_events(events, plain)
    events += [{"t": 30.0 + 5 * i, "type": "vitals", "breathing": 12.0 - 0.2 * i,
                "pulse": 90.0, "movement": 0.1, "quality": {"breathing": 0.8, "pulse": 0.7},
                "tempo": 8.0} for i in range(20)]
    both = tmp_path / "vitals.png"
    plot_events(events, both)
    small, tall = Image.open(plain).convert("RGB"), Image.open(both).convert("RGB")
    assert tall.height > small.height * 1.4
    lower = np.asarray(tall)[int(tall.height * 0.6):]
    blue = np.all(np.abs(lower.astype(int) - (31, 119, 180)) < 30, axis=-1).sum()
    red = np.all(np.abs(lower.astype(int) - (214, 39, 40)) < 40, axis=-1).sum()
    assert blue > 100 and red > 50, (blue, red)
