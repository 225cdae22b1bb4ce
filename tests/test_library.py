"""The one scenario library: every caller finds a scenario by file stem or by name, in the same
folders, and an unknown name is refused at once with the installed ones listed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from relaxd.control.library import (
    UnknownScenario,
    bundled_folders,
    find_scenario,
    installed_scenarios,
    load_named,
)
from relaxd.core.paths import default_scenario

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["gentle-start", "Gentle start", "GENTLE START",
                                  "gentle-start.yaml"])
def test_a_scenario_is_found_by_stem_or_name_whatever_the_case(name):
    assert load_named(name, bundled_folders()).name == "Gentle start"


def test_an_earlier_folder_wins_and_an_unknown_name_lists_the_installed(tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "gentle-start.yaml").write_text(
        default_scenario().read_text().replace("name: Calm blue waves", "name: Mine"))
    assert find_scenario("gentle-start", [uploads, *bundled_folders()]).parent == uploads
    with pytest.raises(UnknownScenario, match="no scenario 'nope'; installed: calm-blue-waves, "
                       "gentle-start, warm-evening"):
        find_scenario("nope", bundled_folders())


def test_installed_scenarios_put_the_default_first():
    assert installed_scenarios(bundled_folders())[0].name == "Calm blue waves"


def relaxd(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "relaxd", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def test_the_command_line_and_a_childs_session_play_the_scenario_named(tmp_path):
    """``--simulate --child ada --scenario gentle-start`` played Calm blue waves once; any
    misspelt name did too."""
    added = relaxd("children", "add", "ada", "--consent-by", "mother", "--state-dir", ".",
                   cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    for extra in ([], ["--child", "ada"]):
        events = tmp_path / "e.jsonl"
        done = relaxd("--simulate", "--out", ".", "--scenario", "gentle-start", "--speed", "max",
                      "--quiet", "--events", str(events), *extra, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert '"scenario":"Gentle start"' in events.read_text().splitlines()[0]
        wrong = relaxd("--simulate", "--out", ".", "--scenario", "gentel-start", "--speed",
                       "max", "--quiet", *extra, cwd=tmp_path)
        assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
        assert wrong.stderr.strip().splitlines()[-1] == ("relaxd: no scenario 'gentel-start'; "
                                                         "installed: calm-blue-waves, "
                                                         "gentle-start, warm-evening")


def test_a_therapists_pin_is_checked_when_it_is_set(tmp_path):
    assert relaxd("children", "add", "ada", "--state-dir", ".", cwd=tmp_path).returncode == 0
    refused = relaxd("children", "set", "ada", "--pin", "nope", "--state-dir", ".", cwd=tmp_path)
    assert refused.returncode == 2 and "no scenario 'nope'" in refused.stderr
    assert relaxd("children", "set", "ada", "--pin", "warm-evening", "--state-dir", ".",
                  cwd=tmp_path).returncode == 0
    shown = relaxd("children", "show", "ada", "--state-dir", ".", cwd=tmp_path).stdout
    assert "pinned: Warm evening" in shown
