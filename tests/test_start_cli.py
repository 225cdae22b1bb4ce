"""``relaxd start --child ID --scenario NAME|auto`` against a real ``relaxd --simulate --ui``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from station_process import ROOT, SimulatedChair, wait_for

pytest.importorskip("starlette")

from relaxd.children.store import ChildStore  # noqa: E402
from relaxd.commands.start import ask  # noqa: E402
from relaxd.core.paths import SOCKET_FILE  # noqa: E402

SCRIPT = "- {at: 0, mood: neutral}\n- {at: 30, mood: positive}\n"


def relaxd(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "relaxd", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def test_start_from_a_shell_is_the_stations_start_with_its_checks(tmp_path):
    out = tmp_path / "chair"
    store = ChildStore(out)
    store.consent(store.add("ada", "Ada", real_name=True), "Ada's mother", "camera")
    store.add("bo")  # no consent
    store.close()
    chair = SimulatedChair(out, SCRIPT)
    try:
        where = ["--simulate", "--out", str(out)]
        refused = relaxd("start", *where, "--child", "ada", "--scenario", "auto")
        assert refused.returncode == 2 and refused.stdout == ""
        assert refused.stderr.strip().splitlines() == [
            "relaxd: start refused: a session is running: end it gently or STOP first"]
        sock = (out / SOCKET_FILE).read_text().strip()
        assert ask(sock, {"cmd": "stop", "by": "test"})["ok"]

        no_consent = relaxd("start", *where, "--child", "bo", "--scenario", "gentle-start")
        assert no_consent.returncode == 2 and "no guardian consent" in no_consent.stderr
        assert len(no_consent.stderr.strip().splitlines()) == 1

        started = relaxd("start", *where, "--child", "ada", "--scenario", "auto")
        assert started.returncode == 0, started.stderr
        line = started.stdout.strip()
        assert line.startswith("started ") and " for child ada: " in line
        scenario, why = line.removeprefix("started ").split(" for child ada: ")
        assert why.startswith(scenario + ": ")
        wait_for(lambda: [e for e in chair.read_events()
                          if e["type"] == "session" and e.get("child") == "ada"],
                 "the session start event naming the child")
        event = [e for e in chair.read_events() if e.get("child") == "ada"][-1]
        assert (event["scenario"], event["why"]) == (scenario, why)
        audit = [e for e in chair.read_events() if e["type"] == "audit"]
        assert audit[-1]["action"] == "start" and audit[-1]["by"].endswith("(shell)")
    finally:
        chair.close()
    assert not (out / SOCKET_FILE).exists()
    gone = relaxd("start", "--socket", str(tmp_path / "none.sock"), "--child", "ada")
    assert gone.returncode == 2 and "no chair daemon answers" in gone.stderr
    assert len(gone.stderr.strip().splitlines()) == 1
