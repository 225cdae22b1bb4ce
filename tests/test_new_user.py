"""What a new user tripped over: each mistake is one true line on standard error and exit
status 2, never a traceback or a page of warnings; the shipped configuration checks in
simulation; a video replays the same every time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def relaxd(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPIOZERO_")}
    return subprocess.run([sys.executable, "-m", "relaxd", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd, input=stdin, env=env)


@pytest.mark.parametrize("args, line", [
    (["ui", "set-pin", "--state-dir", "ui"], "relaxd: no terminal to type the PIN at"),
    (["ui", "set-pin", "--state-dir", "ui", "--password-stdin"],
     "relaxd: no PIN on standard input"),
    (["--keep-latch", "--config", "none.yaml"], "relaxd: --keep-latch needs --simulate"),
    (["--ui", "--config", "none.yaml"], "relaxd: --ui needs --simulate"),
    (["safe-off", "--config", "none.yaml", "--out", "x"], "relaxd: no GPIO on this machine"),
], ids=["set-pin at EOF", "set-pin empty stdin", "keep-latch", "ui", "safe-off on a laptop"])
def test_one_true_line(tmp_path, args, line):
    done = relaxd(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = [x for x in done.stderr.splitlines() if " INFO " not in x and "WARNING" not in x]
    assert len(lines) == 1 and lines[0].startswith(line), done.stderr


def test_check_simulates_with_the_shipped_configuration(tmp_path):
    """``relaxd check --simulate --config deploy/config.yaml`` from the source tree: its
    scenario path names the installed copy beside the file; the bundled one stands in."""
    done = relaxd("check", "--simulate", "--config", str(ROOT / "deploy" / "config.yaml"),
                  cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout


def test_a_video_played_at_full_speed_gives_the_same_events_every_time(tmp_path):
    """Time comes from the file's frames (a tick is one frame period of virtual time), not from
    how long the machine took: the same clip gave 0 % and 16 % negative in two runs once."""
    clip = ROOT.parent / "shared" / "video" / "short_hamilton_clip.mp4"
    if not clip.is_file():
        pytest.skip(f"no test clip at {clip} (the shared video folder is absent)")
    runs = []
    for i in range(2):
        events = tmp_path / f"e{i}.jsonl"
        done = relaxd("--simulate", "--video", str(clip), "--speed", "max", "--quiet",
                      "--events", str(events), "--out", f"out{i}", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        runs.append(events.read_text())
    assert runs[0] == runs[1]
