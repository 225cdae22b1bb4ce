"""The station as its own process: a killed or hung station never stops the loop or the e-stop;
the link signs in; live updates arrive as server-sent events."""

from __future__ import annotations

import http.cookiejar
import json
import os
import signal
import time
import urllib.request

import pytest
from station_process import SimulatedChair, wait_for

pytest.importorskip("starlette")

#: At 20x: the child settles, the caregiver's hand presses the e-stop at 240 s (12 s real).
SCRIPT = """
- {at: 0, mood: neutral}
- {at: 20, mood: positive}
- {at: 240, press: estop}
"""


def test_a_killed_or_hung_station_leaves_the_loop_running_and_the_estop_working(tmp_path):
    chair = SimulatedChair(tmp_path, SCRIPT)
    try:
        station = chair.station_pid()
        os.kill(station, signal.SIGSTOP)  # hung: it answers nothing and reads nothing
        hung_at = len(chair.read_events())
        wait_for(lambda: any(e["type"] == "estop" for e in chair.read_events()),
                 "the e-stop press with the station hung", timeout=60)
        assert len(chair.read_events()) > hung_at  # the loop went on recording
        os.kill(station, signal.SIGKILL)  # and killed: the chair stays up
        time.sleep(1)
        assert chair.proc.poll() is None
    finally:
        code = chair.close()
    assert code == 0  # a clean exit: every output off, the records closed
    events = chair.read_events()
    press = next(e["t"] for e in events if e["type"] == "estop")
    on = [e for e in events if e["type"] == "levels" and e["t"] < press]
    off = [e for e in events if e["type"] == "levels" and e["t"] >= press]
    assert max(e["light"] for e in on) > 0
    assert all((e["light"], e["audio"], e["vibration"]) == (0, 0, 0) for e in off) and off
    assert events[-1]["type"] == "session" and events[-1]["t"] > press + 1  # it kept ticking


def test_the_link_signs_in_and_live_state_arrives_as_server_sent_events(tmp_path):
    chair = SimulatedChair(tmp_path, "- {at: 0, mood: neutral}\n- {at: 20, mood: positive}\n")
    try:
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        opener.open(chair.link, timeout=10).read()  # redirected to the station, signed in
        assert any(c.name == "relaxd_station" for c in jar)
        base = f"http://127.0.0.1:{chair.port}"
        state = json.loads(opener.open(f"{base}/api/state", timeout=10).read())
        for key in ("state", "scenario", "phase", "intensity", "mood", "levels", "estop",
                    "alerts"):
            assert key in state
        with opener.open(f"{base}/api/events", timeout=10) as stream:
            seen = []
            for line in stream:
                if line.startswith(b"data: "):
                    seen.append(json.loads(line[6:]))
                if len(seen) >= 3:
                    break
        assert seen[0]["connected"] and seen[-1]["t"] > seen[0]["t"]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/api/state", timeout=10)
        assert refused.value.code == 401
    finally:
        chair.close()
