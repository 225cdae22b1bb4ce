"""The clinic's protocol without a broker: commands from afar, rate limit, tiles, broker URLs,
the overview's store, and the latch's clinic-stop."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from relaxd.clinic import topics
from relaxd.clinic.overview import Overview
from relaxd.clinic.settings import Credentials, parse_broker
from relaxd.safety.latch import FaultLatch, StopRefused

NOW = 1_800_000_000.0


def vet(name: str, retained: bool = False, expiry: float | None = 10, **fields):
    payload = json.dumps({"id": "c1", "by": "ana", **fields}).encode()
    return topics.vet_command(name, payload, retained=retained, expiry=expiry, now=NOW)


@pytest.mark.parametrize("name", ["stop", "calmer", "end-gently", "hold"])
def test_commands_that_lower_stimulation_are_taken(name):
    assert vet(name, at=NOW - 2).refusal is None


@pytest.mark.parametrize("name", ["start", "reset", "nudge", "scenario", "ack", "observe"])
def test_everything_else_is_refused_from_afar(name):
    assert "not taken from afar" in vet(name).refusal


def test_retained_expired_and_unexpiring_commands_are_refused():
    assert "retained" in vet("stop", retained=True).refusal
    assert "expired" in vet("stop", at=NOW - 60).refusal
    assert "expiry" in vet("stop", expiry=None).refusal
    assert "expiry" in vet("stop", expiry=3600).refusal


def test_releasing_a_hold_is_refused_and_a_command_needs_an_id_and_a_sender():
    assert "rise" in vet("hold", on=False).refusal
    assert topics.vet_command("stop", b"[1]", retained=False, expiry=10, now=NOW).id is None
    assert topics.vet_command("stop", b'{"by": "x"}', retained=False, expiry=10, now=NOW).id is None
    assert "by" in topics.vet_command("stop", b'{"id": "x"}', retained=False, expiry=10,
                                      now=NOW).refusal


def test_repeats_are_recognised_by_id_within_a_bounded_memory():
    seen = topics.SeenIds(keep=2)
    assert [seen.repeat(i) for i in ("a", "a", "b", "c", "a")] == [False, True, False, False, False]


def test_rate_limit_allows_a_burst_then_one_every_interval():
    limit = topics.RateLimit(burst=3, every=2.0)
    assert [limit.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert limit.allow(1.0) is False and limit.allow(2.1) is True


@pytest.mark.parametrize("status, state, heard, look", [
    (None, {"state": "running"}, 100.0, "lost"),
    ({"online": False, "daemon": True}, {"state": "running"}, 100.0, "lost"),
    ({"online": True, "daemon": False}, {"state": "running"}, 100.0, "daemon down"),
    ({"online": True, "daemon": True}, {"state": "running"}, 100.0 - 16, "stale"),
    ({"online": True, "daemon": True}, {"state": "running", "latch_causes": ["clinic-stop"]},
     100.0, "stopped"),
    ({"online": True, "daemon": True}, {"state": "halted"}, 100.0, "halted"),
    ({"online": True, "daemon": True}, {"state": "reduced"}, 100.0, "running"),
    ({"online": True, "daemon": True}, {"state": "idle", "waiting": True}, 100.0, "waiting"),
])
def test_tiles(status, state, heard, look):
    assert topics.tile(status, state, heard, now=100.0) == look


def test_the_published_state_carries_the_child_id_and_never_the_tick_fields():
    snapshot = {"state": "running", "child": "ada", "mood": {"mood": "neutral"}, "at": 5.0,
                "scenarios": ["x"], "alerts": [], "why": "Ada's favourite"}
    message = topics.chair_state(snapshot, 7, "room 2")
    assert message["child"] == "ada" and message["seq"] == 7 and message["room"] == "room 2"
    assert not {"mood", "scenarios", "why", "breath"} & set(message)


@pytest.mark.parametrize("url, problem", [
    ("mqtt://10.0.0.5:1883", "plain MQTT only"), ("http://x", "broker URL"),
    ("unix://", "names its socket"), ("mqtts://", "broker URL")])
def test_broker_urls_refused(url, problem):
    with pytest.raises(ValueError, match=problem):
        parse_broker(url)


def test_broker_urls_and_credentials():
    assert str(parse_broker("mqtt://127.0.0.1:1")) == "mqtt://127.0.0.1:1"
    tls = parse_broker("mqtts://broker.clinic")
    assert tls.port == 8883 and tls.tls
    assert parse_broker("unix:///run/mq.sock").transport == "unix"
    problems = " ".join(Credentials("A").problems(tls))
    assert "CA" in problems and "no anonymous" in problems


def test_only_a_start_at_the_chair_or_its_reset_clears_a_clinic_stop(tmp_path):
    latch = FaultLatch(tmp_path / "latch.json")
    seq = latch.latch("clinic-stop", "clinic stop by ana")
    assert latch.station_clearable and latch.reason == "clinic stop by ana"
    latch.check_clear("station", seq)  # the chair's own station may
    latch.stop("estop")
    with pytest.raises(StopRefused):
        latch.check_clear("station", latch.stop_seq)
    assert FaultLatch(tmp_path / "latch.json").causes == {"clinic-stop"}  # kept on disk


def test_the_overview_stores_each_session_once_and_keeps_alerts(tmp_path):
    overview = Overview(parse_broker("mqtt://127.0.0.1:1"), Credentials("overview.desk"), tmp_path)
    summary = topics.dumps({"id": "A:2026:1", "chair": "A", "duration": 60.0})
    for _ in range(2):
        overview.receive("relaxd/A/event/session", summary)
    overview.receive("relaxd/A/alert", topics.dumps({"id": 1, "reason": "halt", "at": NOW,
                                                     "room": "2", "child": "ada"}))
    overview.receive("relaxd/overview/desk/status", b'{"online": true}')
    overview.receive("relaxd/bad.name/state", b'{"state": "running"}')
    assert [s["id"] for s in overview.sessions()] == ["A:2026:1"]
    assert overview.view()["alerts"][0]["child"] == "ada"
    assert list(overview.chairs) == ["A"]
    overview.close()
    again = Overview(parse_broker("mqtt://127.0.0.1:1"), Credentials("overview.desk"), tmp_path)
    assert again.view()["alerts"][0]["reason"] == "halt"  # history from its own SQLite
    again.close()


ROOT = Path(__file__).resolve().parent.parent


def relaxd(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "relaxd", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin",
                                                      "PYTHONPATH": str(ROOT), **env})


@pytest.mark.parametrize("args, env, problem", [
    (["--password-file", "/nonexistent/A.pw"], {}, "cannot read the password file"),
    ([], {"RELAXD_BRIDGE_PASSWORD_FILE": "/nonexistent/env.pw"}, "/nonexistent/env.pw"),
])
def test_the_bridge_password_file_from_the_flag_or_the_environment(args, env, problem):
    done = relaxd("bridge", "--broker", "mqtt://127.0.0.1:1", "--chair-id", "A", *args, **env)
    assert done.returncode == 2 and problem in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, problem", [
    (["--bridge-password-file", "x.pw"], "go with --bridge URL"),
    (["--bridge", "mqtt://127.0.0.1:1", "--chair-id", "A", "--bridge-password-file",
      "/nonexistent/A.pw"], "no such file: /nonexistent/A.pw"),
])
def test_the_simulated_bridge_password_file_is_checked_before_anything_opens(args, problem,
                                                                            tmp_path):
    done = relaxd("--simulate", "--ui", "--mood-script", "scenarios/moods/station.yaml",
                  "--out", str(tmp_path), *args)
    assert done.returncode == 2 and problem in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
