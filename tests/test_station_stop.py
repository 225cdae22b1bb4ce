# ruff: noqa: F811 - the fixtures of test_station, imported
"""STOP on the caregiver station: from every page, without a sign-in on the chair's own
display, retries that name the stop they mean, and every STOP in the audit log; sign-ins
that survive restarts and end when they should (Starlette's TestClient against a stand-in
daemon on a real control socket)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette")
from test_station import (  # noqa: E402,F401 - fixtures
    ORIGIN,
    PASSWORD,
    PIN,
    client,
    daemon,
    place,
    post,
    signed_in,
    station,
)

from relaxd.cli import main  # noqa: E402
from relaxd.daemon.server import ControlServer  # noqa: E402
from relaxd.station.auth import Backoff, Sessions  # noqa: E402
from relaxd.station.link import SILENT_S, ChairLink  # noqa: E402
from relaxd.station.server import Station  # noqa: E402


def stop_token(page: str) -> str:
    return re.search(r'<meta name="stop-token" content="([^"]+)">', page).group(1)


def kiosk_stop(c, token: str | None, origin: str | None = ORIGIN, **extra):
    headers = dict(extra)
    if token is not None:
        headers["X-Stop-Token"] = token
    if origin is not None:
        headers["Origin"] = origin
    return c.post("/api/stop", json={}, headers=headers)


def test_the_chairs_display_stops_without_a_sign_in_with_its_pages_token_and_origin(
        station, daemon):
    with client(station) as kiosk:
        page = kiosk.get("/login")
        assert page.status_code == 200 and 'class="stop"' in page.text
        token = stop_token(page.text)
        assert kiosk_stop(kiosk, None).status_code == 403
        assert kiosk_stop(kiosk, token, origin=None).status_code == 403
        assert kiosk_stop(kiosk, token, origin=None, Referer=ORIGIN + "/login").status_code == 403
        assert kiosk_stop(kiosk, token, origin="http://evil.example").status_code == 403
        assert kiosk_stop(kiosk, token[:-2] + "xx").status_code == 403
        assert daemon.stops == []
        r = kiosk_stop(kiosk, token)
        assert r.status_code == 200 and r.json()["stop_seq"] == 1
        assert daemon.stops == ["chair display"]
        assert kiosk.get("/api/state").status_code == 401  # nothing else without a sign-in
        assert post(kiosk, "/api/start", None, {"scenario": "calm-blue-waves"}).status_code == 401


def test_over_the_network_stop_needs_a_sign_in_and_the_sign_in_page_has_no_stop(station, daemon):
    with client(station) as kiosk:
        token = stop_token(kiosk.get("/login").text)
    with client(station, "192.0.2.20") as tablet:
        page = tablet.get("/login").text
        assert 'class="stop"' not in page and "stop-token" not in page
        assert kiosk_stop(tablet, token).status_code == 401
    assert daemon.stops == []
    c, csrf = signed_in(station, "bob", "192.0.2.20")
    with c:
        assert 'id="stop"' in c.get("/").text
        assert post(c, "/api/stop", csrf).status_code == 200 and daemon.stops == ["bob"]


def test_every_station_stop_is_on_the_audit_page_reached_or_not(station, daemon, place):
    c, csrf = signed_in(station)
    with c:
        assert post(c, "/api/stop", csrf).status_code == 200
        daemon.close()  # the daemon goes away
        r = post(c, "/api/stop", csrf, {"for_stop": 1})
        assert r.status_code == 503 and "cannot be reached" in r.json()["error"]
        audit = [e for e in c.get("/api/audit").json() if e["action"] == "STOP"]
    assert [(e["by"], e["detail"].split(":")[0]) for e in audit] == [
        ("ana (station)", "did NOT reach the chair (retry of a STOP pressed at stop number 1)"),
        ("ana (station)", "carried out")]
    assert "stop number 1" in audit[1]["detail"]


def test_a_stop_retry_naming_an_older_stop_never_stops_a_later_session(place):
    """The control socket: a retry (``for_stop`` N) is answered ``already`` only while a newer
    stop still holds the chair; once a session has started since, it is carried out."""
    seq, made, latched = [3], [], [False]

    def stop(by: str) -> int:
        made.append(by)
        seq[0] += 1
        latched[0] = True
        return seq[0]

    server = ControlServer(place / "c.sock", stop=stop, stop_seq=lambda: seq[0],
                           latched=lambda: latched[0])
    try:
        def ask(message: dict) -> dict:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(str(place / "c.sock"))
                s.sendall(json.dumps(message).encode() + b"\n")
                return json.loads(s.makefile().readline())

        assert ask({"cmd": "stop", "by": "a", "for_stop": 3}) == {"ok": True, "stop_seq": 4}
        late = ask({"cmd": "stop", "by": "a", "for_stop": 3})  # its first try had reached
        assert late == {"ok": True, "stop_seq": 4, "already": True} and made == ["a"]
        assert ask({"cmd": "stop", "by": "b"})["stop_seq"] == 5  # a plain STOP always stops
        latched[0] = False  # a Start cleared the latch: a session runs after stop 5
        assert ask({"cmd": "stop", "by": "c", "for_stop": 3}) == {"ok": True, "stop_seq": 6}
        assert made == ["a", "b", "c"]
    finally:
        server.close()


def test_sign_ins_survive_a_restart_and_end_with_remove_user_or_a_new_password(
        station, place, monkeypatch):
    c, csrf = signed_in(station, "bob")
    with c:
        assert c.get("/api/state").status_code == 200
    restarted = Station(link=ChairLink(place / "ctl.sock"), users=station.users,
                        sessions=Sessions(3600, place / "ui" / "sessions.json"),
                        records=place / "records", scenario_dirs=station.scenario_dirs)
    again = client(restarted)
    again.cookies = c.cookies
    with again:
        assert again.get("/api/state").status_code == 200  # same cookie, new process
        assert "relaxd_station" not in (place / "ui" / "sessions.json").read_text().replace(
            "sessions", "")  # tokens are kept hashed, not as cookies
        assert c.cookies["relaxd_station"] not in (place / "ui" / "sessions.json").read_text()
        monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + " 2\n"))
        assert main(["ui", "passwd", "bob", "--state-dir", str(place / "ui"),
                     "--password-stdin"]) == 0
        r = again.get("/api/state")
        assert r.status_code == 401 and r.json()["expired"] is True
        assert "sign-in has ended" in r.json()["error"]
    c2, _ = signed_in(station, "ana")
    with c2:
        assert main(["ui", "remove-user", "ana", "--state-dir", str(place / "ui")]) == 0
        assert c2.get("/api/state").status_code == 401
        assert c2.post("/login", data={"username": "ana", "password": PASSWORD},
                       headers={"Origin": ORIGIN}).status_code == 401
    assert main(["ui", "remove-user", "nobody", "--state-dir", str(place / "ui")]) == 2


def test_a_sign_in_expires_after_its_lifetime_but_the_chairs_display_is_kept_during_a_session(
        place):
    sessions = Sessions(100.0, place / "s.json")
    tablet, _ = sessions.new("bob", "caregiver", now=0.0)
    kiosk, _ = sessions.new("kiosk", "caregiver", now=0.0)
    assert sessions.get(tablet, 99.0) is not None and sessions.get(tablet, 100.0) is None
    for now in (60.0, 130.0, 190.0, 250.0):  # the chair in a session all along
        assert sessions.get(kiosk, now, keep=True) is not None
    assert sessions.get(kiosk, 250.0 + 101.0) is None  # the session over: it lapses


def test_another_website_cannot_sign_a_browser_out(station):
    c, _ = signed_in(station)
    with c:
        r = c.post("/logout", headers={"Origin": "http://evil.example"})
        assert r.status_code == 403 and "set-cookie" not in r.headers
        assert c.get("/api/state").status_code == 200
        r = c.post("/logout", headers={"Origin": ORIGIN})
        assert r.status_code == 303 and c.get("/api/state").status_code == 401


def test_the_chairs_display_has_no_sign_out_and_a_tablet_confirms_it(station):
    with client(station) as kiosk:
        assert kiosk.post("/login", data={"pin": "4321"}, headers={"Origin": ORIGIN}
                          ).status_code == 303
        assert 'action="/logout"' not in kiosk.get("/").text
    c, _ = signed_in(station, "bob", "192.0.2.30")
    with c:
        assert 'id="sign-out"' in c.get("/").text


def test_growing_waits_counted_before_the_check_at_most_30_s_on_the_chairs_display():
    pin = Backoff(free=3, base=2.0, cap=30.0)
    waits = []
    now = 0.0
    for _ in range(12):
        left = pin.begin("kiosk", now)
        if left:
            waits.append(round(left))
            now += left
            assert pin.begin("kiosk", now) == 0.0
    assert waits == [2, 4, 8, 16, 30, 30, 30, 30, 30]
    pin.succeeded("kiosk")
    assert pin.begin("kiosk", now) == 0.0


def test_an_empty_pin_or_password_is_refused_without_a_check_and_never_counted(station):
    """A child tapping Sign in with no PIN typed: 400 each time, no wait grows, and the
    caregiver's PIN and password still sign in at once afterwards."""
    with client(station) as kiosk:
        for form in [{"pin": ""}] * 8 + [{"username": "ana", "password": ""}] * 8:
            r = kiosk.post("/login", data=form, headers={"Origin": ORIGIN})
            assert r.status_code == 400 and "first" in r.text, r.status_code
        assert kiosk.post("/login", data={"username": "ana", "password": PASSWORD},
                          headers={"Origin": ORIGIN}).status_code == 303
    with client(station) as kiosk:
        assert kiosk.post("/login", data={"pin": PIN}, headers={"Origin": ORIGIN}
                          ).status_code == 303


def test_wrong_pins_on_the_chair_slow_down_with_429_and_how_long(station):
    with client(station) as kiosk:
        for _ in range(3):
            r = kiosk.post("/login", data={"pin": "0000"}, headers={"Origin": ORIGIN})
            assert r.status_code == 401
        r = kiosk.post("/login", data={"pin": "4321"}, headers={"Origin": ORIGIN})
        assert r.status_code == 429 and r.headers["retry-after"] == "2"
        assert "wait 2 s" in r.text and 'class="stop"' in r.text  # STOP stays on the page
        time.sleep(2.1)
        assert kiosk.post("/login", data={"pin": "4321"}, headers={"Origin": ORIGIN}
                          ).status_code == 303


def test_parallel_wrong_passwords_are_counted_before_the_check(station):
    import threading

    checked = []
    real = station.users.check_password

    def counting(name: str, password: str):
        checked.append(name)
        return real(name, password)

    station.users.check_password = counting
    answers = []
    with client(station, "192.0.2.40") as c:
        def attempt() -> None:
            answers.append(c.post("/login", data={"username": "ana", "password": "wrong"},
                                  headers={"Origin": ORIGIN}).status_code)

        threads = [threading.Thread(target=attempt) for _ in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(checked) == 5 and sorted(answers) == [401] * 5 + [429] * 35


def test_a_chair_whose_states_stop_coming_is_shown_not_answering_until_they_come_again(place):
    """The station's link: no new state for SILENT_S (the daemon publishes every tick) turns
    the view to "not answering" by itself (so the live page is told), and a fresh state turns
    it back."""
    server = ControlServer(place / "c.sock", stop=lambda by: 1)
    server.publish({"state": "running", "at": time.time() - 1.0})

    async def watch() -> list[dict]:
        link = ChairLink(place / "c.sock")
        link.start()
        try:
            seen = await link.changed(0, 5.0)
            views = [link.view()]
            begun = time.monotonic()
            seen = await link.changed(seen, SILENT_S + 2.0)  # nothing published meanwhile
            views.append({**link.view(), "waited": time.monotonic() - begun})
            server.publish({"state": "running", "at": time.time()})
            await link.changed(seen, 5.0)
            return views + [link.view()]
        finally:
            await link.stop()

    try:
        fresh, silent, again = asyncio.run(watch())
    finally:
        server.close()
    assert fresh["connected"] and fresh["state"] == "running"
    assert silent["connected"] is False and silent["answering"] is False, silent
    assert silent["silent_s"] > SILENT_S and silent["waited"] < SILENT_S + 1.0
    assert again["connected"] is True and "answering" not in again


WRITER = """
import sys, time
from pathlib import Path
from relaxd.station.auth import Sessions
path, stop = Path(sys.argv[1]), Path(sys.argv[2])
print("ready", flush=True)
while not stop.exists():
    sessions = Sessions(3600, path)  # as the station: read, change, write back
    token, _ = sessions.new("bob", "caregiver", time.time())
    sessions.drop(token)
"""


def test_a_sign_in_ended_by_another_process_is_never_written_back(place):
    """``relaxd ui remove-user`` ends sign-ins while the station keeps changing the same file
    (here a second process signing in and out without a pause): every sign-in ended stays
    ended."""
    path, stop = place / "ui" / "sessions.json", place / "stop-writer"
    path.parent.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(stop)], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
        for n in range(150):
            Sessions(3600, path).new(f"ana{n}", "caregiver", time.time())
            assert Sessions(3600, path).drop_user(f"ana{n}") == 1
    finally:
        stop.touch()
        writer.wait(20)
    left = {s["user"] for s in json.loads(path.read_text())["sessions"].values()}
    assert not [u for u in left if u.startswith("ana")], sorted(left)
