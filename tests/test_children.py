"""Child profiles: consent, retention, limits, erasure, export, the CLI, --child in simulation."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from relaxd.children.store import ChildLimits, ChildStore, check_before_session, child_names, steady_light
from relaxd.cli import main
from relaxd.control.controller import Caps, Levels
from relaxd.control.scenario import load_scenario
from relaxd.core.errors import RelaxdError
from relaxd.core.paths import default_scenario
from relaxd.records.sessions import SessionSink, list_sessions


def test_pseudonym_by_default_and_db_private(tmp_path):
    store = ChildStore(tmp_path)
    child = store.add()
    assert child.id == "c1" and not child.real_name and child.name
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600  # children.sqlite: relaxd alone
    records = tmp_path / "sessions.sqlite"  # the station's group reads the session records
    assert store.path != records and records.exists()
    with pytest.raises(RelaxdError, match="exists"):
        store.add("c1")
    with pytest.raises(RelaxdError, match="child id"):
        store.add("Bad Id!")


def test_limits_bind_like_installation_caps_smallest_wins():
    caps = ChildLimits(light=0.3, vibration=0.9).caps(Caps(Levels(0.8, 0.8, 0.8)))
    assert caps.level == Levels(0.3, 0.8, 0.8)


def test_consent_session_length_and_daily_minutes_checked_before_a_session(tmp_path):
    store = ChildStore(tmp_path)
    child = store.add("ada")
    scenario = load_scenario(default_scenario())
    with pytest.raises(RelaxdError, match="no guardian consent"):
        check_before_session(store, child, scenario, camera=True)
    store.consent(child, "Mum", "manual")
    with pytest.raises(RelaxdError, match="manual mode only"):
        check_before_session(store, child, scenario, camera=True)
    check_before_session(store, child, scenario, camera=False)
    child.limits = ChildLimits(session_min=10)
    with pytest.raises(RelaxdError, match="longest session"):
        check_before_session(store, child, scenario, camera=False)
    child.limits = ChildLimits(daily_min=15)
    with pytest.raises(RelaxdError, match="minutes used today"):
        check_before_session(store, child, scenario, camera=False)


def test_steady_light_removes_every_pulse():
    scenario = steady_light(load_scenario(default_scenario()))
    assert all(p.light.pulse_period is None for p in scenario.phases)


def _session(tmp_path, store, child_id):
    sink = SessionSink(tmp_path, scenario="x")
    sink.write({"t": 1.0, "type": "mood", "mood": "neutral"})
    sink.close()
    store.link(sink.session_id, child_id, "x", "test")
    return sink.session_id


def test_delete_erases_the_child_and_their_sessions_only(tmp_path):
    store = ChildStore(tmp_path)
    store.add("ada"), store.add("bo")
    _session(tmp_path, store, "ada")
    kept = _session(tmp_path, store, "bo")
    assert store.delete("ada") == 1
    assert store.find("ada") is None
    assert [s.id for s in list_sessions(tmp_path)] == [kept]


def test_retention_deletes_old_sessions(tmp_path):
    store = ChildStore(tmp_path)
    store.add("ada", retention_days=30)
    _session(tmp_path, store, "ada")
    later = datetime.now(timezone.utc) + timedelta(days=31)
    assert ChildStore(tmp_path, now=later).session_ids("ada") == []


def test_cli_add_show_rename_export_delete(tmp_path, capsys):
    d = str(tmp_path)
    assert main(["children", "add", "ada", "--state-dir", d, "--consent-by", "Mum",
                 "--max-light", "0.4", "--no-pulse", "--session-min", "25"]) == 0
    assert main(["children", "rename", "ada", "Ada L", "--real-name", "--state-dir", d]) == 0
    assert main(["children", "show", "ada", "--state-dir", d]) == 0
    out = capsys.readouterr().out
    assert "Ada L (real name)" in out and "Mum" in out and "light <= 0.4" in out
    assert "no pulsing light" in out and "365 days" in out
    assert "for camera (the face's mood and the body's breathing, pulse and restlessness" in out
    assert main(["children", "export", "ada", "--out", str(tmp_path / "a.json"),
                 "--state-dir", d]) == 0
    assert json.loads((tmp_path / "a.json").read_text())["child"]["id"] == "ada"
    assert main(["children", "delete", "ada", "--state-dir", d]) == 2  # needs --yes
    assert main(["children", "delete", "ada", "--yes", "--state-dir", d]) == 0
    assert main(["children", "show", "ada", "--state-dir", d]) == 2
    assert main(["children", "add", "x", "--max-audio", "3", "--state-dir", d]) == 2


def test_the_clinics_retention_policy_applies_to_new_children(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("children:\n  retention_days: 90\n")
    d = str(tmp_path)
    assert main(["--config", str(config), "children", "add", "bo", "--state-dir", d]) == 0
    assert main(["--config", str(config), "children", "add", "cy", "--retention-days", "30",
                 "--state-dir", d]) == 0
    store = ChildStore(tmp_path)
    assert (store.get("bo").retention_days, store.get("cy").retention_days) == (90, 30)
    config.write_text("children:\n  retention_days: 0\n")
    assert main(["--config", str(config), "children", "add", "di", "--state-dir", d]) == 2
    assert "retention_days" in capsys.readouterr().err


def test_simulated_child_session_is_linked_and_names_only_the_id(tmp_path):
    vc = tmp_path / "ada.yaml"
    vc.write_text("name: Ada\nresting: neutral\nlikes: {colour: blue}\nseed: 3\n")
    out, ev = tmp_path / "sim", tmp_path / "e.jsonl"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    r = subprocess.run([sys.executable, "-m", "relaxd", "--simulate", "--virtual-child", str(vc),
                        "--scenario", "auto", "--speed", "max", "--quiet", "--out", str(out),
                        "--events", str(ev)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    start = json.loads(ev.read_text().splitlines()[0])
    assert start["child"] == "ada" and start["why"] and start["scenario"]
    assert "Ada" not in ev.read_text() and "Ada" not in r.stderr
    store = ChildStore(out)
    assert store.get("ada").name == "Ada" and len(store.session_ids("ada")) == 1
    assert "consent" not in (store.get("ada").consent_by or "consent")
    # The records name the child by id; what relaxd shows people names them.
    assert [s.child for s in list_sessions(out)] == ["ada"]
    listing = subprocess.run([sys.executable, "-m", "relaxd", "sessions", "--state-dir", str(out)],
                             capture_output=True, text=True, env=env, timeout=60)
    assert listing.returncode == 0 and "Ada" in listing.stdout.splitlines()[1], listing.stdout


def test_child_names_are_read_only_and_empty_without_profiles(tmp_path):
    assert child_names(tmp_path) == {}
    ChildStore(tmp_path).add("bo", "Bo")
    assert child_names(tmp_path) == {"bo": "Bo"}
    os.chmod(tmp_path / "children.sqlite", 0)
    if os.geteuid() != 0:  # root reads any file
        assert child_names(tmp_path) == {}


def test_unknown_child_on_the_chair_and_virtual_child_without_simulate(tmp_path):
    assert main(["--virtual-child", str(tmp_path / "x.yaml")]) == 2
