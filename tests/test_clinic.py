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


def vet(name: str, retained: bool = False, expiry: float | None = 10, lifetime: float = 10,
        **fields):
    payload = json.dumps({"id": "c1", "by": "ana", **fields}).encode()
    return topics.vet_command(name, payload, retained=retained, expiry=expiry, now=NOW,
                              lifetime=lifetime)


@pytest.mark.parametrize("name", ["stop", "calmer", "end-gently", "hold"])
def test_commands_that_lower_stimulation_are_taken(name):
    assert vet(name, at=NOW - 2).refusal is None and vet(name, by="ana.m-2_b").refusal in (
        None, "a command other than stop carries the time it was sent (at)")


@pytest.mark.parametrize("name", ["start", "reset", "nudge", "scenario", "ack", "observe"])
def test_everything_else_is_refused_from_afar(name):
    assert "not taken from afar" in vet(name).refusal


def test_retained_expired_and_unexpiring_commands_are_refused():
    assert "retained" in vet("stop", retained=True).refusal
    assert "expired" in vet("calmer", at=NOW - 60).refusal
    assert "expired" in vet("hold", at=NOW + 60).refusal
    assert "expired" in vet("calmer", at=NOW - 3, lifetime=2).refusal
    assert "expiry" in vet("stop", expiry=None).refusal
    assert "expiry" in vet("stop", expiry=3600).refusal


def test_a_stop_is_never_refused_for_its_age_the_others_need_their_sent_time():
    """A stop is the safe direction: late, or from a desk whose clock is off, it is carried
    out; the other commands carry ``at`` and are honoured for their lifetime only."""
    assert vet("stop", at=NOW - 3600).refusal is None and vet("stop").refusal is None
    assert "at" in vet("calmer").refusal and "at" in vet("end-gently").refusal


@pytest.mark.parametrize("at", [10 ** 400, -1, 1e12, "now", True, [1]])
def test_a_sent_time_that_is_no_time_is_refused_even_for_a_stop(at):
    assert "not a time" in vet("stop", at=at).refusal


def test_nan_and_infinity_are_read_as_null():
    assert vet("stop", at=None).refusal is None
    assert topics.loads(b'{"at": NaN, "x": [Infinity, -Infinity, 1e999]}') == {
        "at": None, "x": [None, None, None]}
    assert topics.dumps({"x": float("nan")}) == b'{"x":null}'


def test_json_nested_too_deep_is_no_message():
    assert topics.loads(b"[" * 100_000 + b"]" * 100_000) is None
    assert topics.loads(b'{"a":' * 100_000 + b"1" + b"}" * 100_000) is None
    assert topics.loads(b'{"a":' * (topics.MAX_DEPTH + 1) + b"1" + b"}" * (topics.MAX_DEPTH + 1)) \
        is None
    assert topics.loads(b'{"a": {"b": [1, {"c": 2}]}}') == {"a": {"b": [1, {"c": 2}]}}


@pytest.mark.parametrize("by", ["nurse\n", "ana\x1b[2J", "ana\u202e", "a b", "", "x" * 65, 5])
def test_who_sent_a_command_is_an_account_name(by):
    assert "by" in vet("calmer", by=by, at=NOW).refusal
    stop = vet("stop", by=by)  # carried out all the same, never with those words
    assert stop.refusal is None and stop.by == topics.UNNAMED


@pytest.mark.parametrize("command_id", ["a\x00", "a b", "", "x" * 65, 7, None])
def test_a_command_id_is_plain(command_id):
    assert vet("stop", id=command_id).id is None


def test_each_desks_clock_is_learnt_from_its_heartbeats():
    clocks = topics.DeskClocks(keep=3)
    assert clocks.offset("overview.desk") is None
    for delay in (0.3, 0.1, 4.0):  # the last held up on its way
        clocks.heard("overview.desk", {"online": True, "at": NOW - 60}, NOW + delay)
    assert clocks.offset("overview.desk") == pytest.approx(60.1)
    clocks.heard("overview.desk", {"at": 10 ** 400}, NOW)  # no time: ignored
    assert clocks.offset("overview.desk") == pytest.approx(60.1)
    fresh = dict(retained=False, expiry=10, now=NOW, clocks=clocks)
    late = json.dumps({"id": "c", "by": "ana", "at": NOW - 60, "desk": "overview.desk"})
    assert topics.vet_command("calmer", late.encode(), **fresh).refusal is None
    other = json.dumps({"id": "c", "by": "ana", "at": NOW - 60, "desk": "another.desk"})
    assert "expired" in topics.vet_command("calmer", other.encode(), **fresh).refusal


def test_releasing_a_hold_is_refused_and_a_command_needs_an_id_and_a_sender():
    assert "rise" in vet("hold", on=False).refusal
    assert topics.vet_command("stop", b"[1]", retained=False, expiry=10, now=NOW).id is None
    assert topics.vet_command("stop", b'{"by": "x"}', retained=False, expiry=10, now=NOW).id is None
    assert "by" in topics.vet_command("calmer", b'{"id": "x"}', retained=False, expiry=10,
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
    for poison in (b'{"alerts": 5}', b'{"alerts": [{"id": 100000000000000000000000}]}'):
        overview.receive("relaxd/B/alerts", poison)
    for poison in (b'{"id": 100000000000000000000000, "at": 1}', b'{"id": "x"}',
                   b'{"id": 2, "at": "yesterday"}', b"[" * 100_000 + b"]" * 100_000):
        overview.receive("relaxd/B/alert", poison)
    assert overview.chairs["B"].alerts == []
    assert [s["id"] for s in overview.sessions()] == ["A:2026:1"]
    assert overview.view()["alerts"][0]["child"] == "ada"
    assert list(overview.chairs) == ["A", "B"]
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
