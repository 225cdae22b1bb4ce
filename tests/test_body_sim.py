"""The body in simulation, end to end through ``relaxd --simulate``: a mood script's breathing and
movement tracks give vitals events (pulse null unless given), read against the child's own calm
rate (their age's); a virtual child's caregiver marks halts as the station's observations are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from relaxd.children.store import ChildStore
from relaxd.control.scenario import ScenarioError, load_mood_script
from relaxd.daemon.loop import SIMULATED_CAREGIVER

ENV = {**os.environ, "PYTHONPATH": os.getcwd()}


def relaxd(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "relaxd", *argv], capture_output=True,
                          text=True, env=ENV, timeout=timeout)


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_mood_scripts_body_tracks_are_checked_with_file_line_col(tmp_path):
    script = tmp_path / "s.yaml"
    script.write_text("- {at: 0, mood: neutral, breathing: 18}\n- {at: 5, breathing: 2}\n"
                      "- {at: 6, movement: 0.5, press: estop}\n- {at: 7, pulse: 80}\n")
    with pytest.raises(ScenarioError) as err:
        load_mood_script(script)
    text = str(err.value)
    assert f"{script}:2:22: 'breathing' is 2.0, outside 4..60" in text
    assert f"{script}:3:3: give exactly one of 'mood', 'press' or 'release'" in text
    script.write_text("- {at: 0, mood: neutral, breathing: 18}\n- {at: 7, pulse: 80}\n")
    assert load_mood_script(script)[1].pulse == 80


def test_a_scripted_racing_breath_under_a_calm_face_is_read_against_the_childs_age(tmp_path):
    """Ada, born 2018: calm 21 a minute (Fleming et al.); 30 a minute is 1.4x that and more,
    so her neutral face is reduced, then halted, the alert saying what was seen. The vitals are
    recorded every 5 s from the tracks, pulse null."""
    out, ev, script = tmp_path / "out", tmp_path / "e.jsonl", tmp_path / "s.yaml"
    assert relaxd("children", "add", "ada", "--birth-year", "2018", "--consent-by", "Mum",
                  "--state-dir", str(out)).returncode == 0
    script.write_text("- {at: 0, mood: neutral, breathing: 18, movement: 0.1}\n"
                      "- {at: 60, breathing: 30}\n- {at: 200, mood: no_face}\n")
    r = relaxd("--simulate", "--child", "ada", "--mood-script", str(script), "--speed", "max",
               "--quiet", "--out", str(out), "--events", str(ev), "--scenario", "gentle-start")
    assert r.returncode == 0, r.stderr
    got = events(ev)
    start = got[0]
    assert start["calm_breathing"] == 21.0
    vitals = [e for e in got if e["type"] == "vitals"]
    assert vitals and all(e["pulse"] is None for e in vitals)
    gaps = [b["t"] - a["t"] for a, b in zip(vitals, vitals[1:])]
    assert max(gaps) <= 5.2 and vitals[-1]["t"] < 200  # while the child is seen
    assert {e["breathing"] for e in vitals} == {18.0, 30.0}
    halt = next(e for e in got if e["type"] == "decision" and e["action"] == "halt")
    assert 60 + 5 < halt["t"] < 60 + 5 + 20, halt  # for_s, then the scenario's halt_after
    assert "breathing fast (30 / min, calm 21); face calm" in halt["reason"]
    store = ChildStore(out)  # 30 a minute while a halt came: nothing learned
    assert "calm_breathing" not in store.get("ada").learned
    store.close()


def test_a_virtual_childs_caregiver_marks_halts_as_the_station_does(tmp_path):
    """A child who dislikes what plays is halted; the file's caregiver (marks: 1.0) marks
    each halt "upset", recorded as the station's observation is."""
    vc, out, ev = tmp_path / "kid.yaml", tmp_path / "out", tmp_path / "e.jsonl"
    vc.write_text("name: Kid\nresting: neutral\ndislikes: {audio: pink-noise}\n"
                  "caregiver: {marks: 1.0}\nseed: 4\n")
    r = relaxd("--simulate", "--virtual-child", str(vc), "--scenario", "gentle-start",
               "--speed", "max", "--quiet", "--out", str(out), "--events", str(ev))
    assert r.returncode == 0, r.stderr
    got = events(ev)
    halts = [e for e in got if e["type"] == "decision" and e["action"] == "halt"]
    marked = [e for e in got if e["type"] == "observation"]
    assert halts and len(marked) == len(halts)
    assert {(e["what"], e["by"]) for e in marked} == {("upset", SIMULATED_CAREGIVER)}
    assert any(e["type"] == "vitals" and e["breathing"] for e in got)
    vc.write_text(vc.read_text().replace("marks: 1.0", "marks: 0.0"))
    r = relaxd("--simulate", "--virtual-child", str(vc), "--scenario", "gentle-start",
               "--speed", "max", "--quiet", "--out", str(tmp_path / "o2"), "--events",
               str(tmp_path / "e2.jsonl"))
    assert r.returncode == 0 and not [e for e in events(tmp_path / "e2.jsonl")
                                      if e["type"] == "observation"]


def test_an_upset_spell_is_timed_to_the_chairs_first_reduction_and_halt():
    from relaxd.sim.study import _Upsets

    spells = _Upsets()
    for t, upset, actions in ((0, False, []), (10, True, []), (20, True, ["reduce"]),
                              (25, True, ["reduce"]), (40, True, ["halt"]), (50, False, []),
                              (60, True, []), (70, False, ["halt"])):
        spells.tick(t, upset, actions)
    assert spells.reduce == [10, None] and spells.halt == [30, None]
    spells.tick(80, True, [], running=False)  # begins while the chair is halted: not timed
    spells.tick(90, True, ["halt"])
    assert spells.halt == [30, None]
    spells.tick(100, False, [])
    spells.tick(110, True, ["reduce"])
    spells.end()  # still upset when the session ended: cut short, not timed
    assert spells.reduce == [10, None] and spells.halt == [30, None]


def test_the_study_reports_the_body_channel_against_the_face_alone(capsys):
    """Flat-affect twins are answered only with the body channel; the children as generated
    alike either way; no halt of a child who was not upset is added."""
    from relaxd.cli import main
    from relaxd.sim.study import body_channel, generate_children, study_scenarios

    scenarios = study_scenarios(None)
    body = body_channel(generate_children(6, scenarios, 1), scenarios, seed=1, sessions=2)
    with_body, face = body["with body"], body["face only"]
    assert with_body["flat_to_reduce_share"] >= 0.9 > face["flat_to_reduce_share"] + 0.3
    assert with_body["flat_to_halt_s"] < 90 and with_body["flat_spells"] >= 4
    assert with_body["to_reduce_s"] <= face["to_reduce_s"]
    assert with_body["false_halts_per_session"] <= face["false_halts_per_session"] + 0.1
    assert main(["children", "study", "--children", "2", "--sessions", "1"]) == 0
    out = capsys.readouterr().out
    assert "body channel: 2 children and their flat-affect twins" in out
    assert "seconds from upset to halt (median)" in out
