"""`relaxd scenario show`: the timeline, and a rehearsal through the simulated session itself."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from relaxd.commands.scenario import configure_show as configure
from relaxd.commands.scenario import run_show as run
from relaxd.core.errors import RelaxdError
from relaxd.core.paths import default_scenario


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure(parser)
    return parser.parse_args(argv)


def _write(folder: Path, text: str, name: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_show_prints_the_timeline(capsys):
    assert run(_args([str(default_scenario())])) == 0
    out = capsys.readouterr().out
    assert "Calm blue waves: 4 phases, 20:00 + 0:30 fade-out" in out
    assert "0:00-3:00" in out and "arrive" in out


def test_show_rehearses_a_mood_script_and_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    script = _write(tmp_path, """\
- {at: 0, mood: positive}
- {at: 200, mood: negative, confidence: 0.95}
- {at: 240, mood: neutral}
- {at: 400, press: estop}
- {at: 410, release: estop}
- {at: 416, press: reset}
- {at: 420, release: reset}
- {at: 430, press: reset}
- {at: 430.5, release: reset}
""", "m.yaml")
    png = tmp_path / "out.png"
    assert run(_args([str(default_scenario()), "--mood-script", str(script),
                      "--plot", str(png)])) == 0
    out = capsys.readouterr().out
    assert "1:30 raise" in out and "3:21 halt" in out and "ALERT    halt: strong negative" in out
    assert "6:40 estop" in out and "7:00 reset    stop reset at the chair" in out
    assert "0:00 start    started by a caregiver" in out  # the second press: a new session
    assert "20:00 fade" in out and "20:30 end" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_show_reports_a_bad_scenario_as_relaxd_error(tmp_path):
    with pytest.raises(RelaxdError):
        run(_args([str(_write(tmp_path, "name: [\n", "bad.yaml"))]))


def test_show_plots_a_neutral_session_without_a_script(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "neutral.png"
    assert run(_args([str(default_scenario()), "--plot", str(png)])) == 0
    out = capsys.readouterr().out
    assert "0:00 hold     mood neutral" in out and "20:00 fade" in out and png.exists()
