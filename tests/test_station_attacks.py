# ruff: noqa: F811 - the fixtures of test_station, imported
"""A stranger on the clinic network against the caregiver station: body caps, slow
connections, headers, the certificate, CSV formulas, bundled scenarios, Start from the
network. The process tests run the real ``relaxd ui serve`` (uvicorn, both listeners)
beside a stand-in daemon."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
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
from test_station_breaker import cheap_hash  # noqa: E402

from relaxd.cli import main  # noqa: E402
from relaxd.core.paths import resource_dir  # noqa: E402
from relaxd.records.sessions import write_csv  # noqa: E402
from relaxd.station import cert  # noqa: E402
from relaxd.station.auth import RateLimit  # noqa: E402
from relaxd.station.guard import ConnectionLimit, address_key  # noqa: E402
from relaxd.station.health import certificate_report  # noqa: E402
from relaxd.station.settings import UISettings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def test_pages_with_tokens_are_never_stored_and_hsts_only_over_tls(station):
    with client(station) as c:
        assert c.get("/login").headers["cache-control"] == "no-store"
        assert "strict-transport-security" not in c.get("/login").headers
        assert "no-store" not in c.get("/static/station.js").headers.get("cache-control", "")
    c, _ = signed_in(station)
    with c:
        assert c.get("/").headers["cache-control"] == "no-store"
    from starlette.testclient import TestClient

    from relaxd.station.server import create_app
    with TestClient(create_app(station), base_url="https://testserver") as tls:
        assert tls.get("/login").headers["strict-transport-security"].startswith("max-age=")


def test_a_body_without_a_length_is_cut_at_the_cap(station):
    def chunks():
        for _ in range(64):
            yield b"x" * 1024

    with client(station) as c:
        r = c.post("/login", content=chunks(), headers={"Origin": ORIGIN})
        assert r.status_code == 413 and "KiB" in r.json()["error"]


def test_start_from_a_tablet_only_with_network_start(station, daemon):
    c, csrf = signed_in(station, "bob", "192.0.2.60")
    with c:
        r = post(c, "/api/start", csrf, {"scenario": "calm-blue-waves"})
        assert r.status_code == 403 and "ui.network_start" in r.json()["error"]
        assert "\n" not in r.json()["error"] and not daemon.commands
        assert post(c, "/api/stop", csrf).status_code == 200  # STOP always
        station.network_start = True
        assert post(c, "/api/start", csrf, {"scenario": "calm-blue-waves"}).status_code == 200
    kiosk, csrf = signed_in(station, "bob")
    station.network_start = False
    with kiosk:
        assert post(kiosk, "/api/start", csrf, {"scenario": "calm-blue-waves"}).status_code == 200


def test_an_upload_replaces_a_bundled_scenario_only_when_confirmed_and_can_be_removed(
        station, daemon, place):
    c, csrf = signed_in(station)
    text = (resource_dir("scenarios") / "calm-blue-waves.yaml").read_text()
    body = {"filename": "calm-blue-waves.yaml", "text": text, "install": True}
    with c:
        r = post(c, "/api/scenarios", csrf, body)
        assert r.status_code == 409 and r.json()["replaces"] == "calm-blue-waves"
        assert not (place / "ui" / "scenarios" / "calm-blue-waves.yaml").exists()
        renamed = {**body, "filename": "my-waves.yaml"}  # same scenario name, other file
        assert post(c, "/api/scenarios", csrf, renamed).status_code == 409
        r = post(c, "/api/scenarios", csrf, {**body, "replace": True})
        assert r.status_code == 200 and r.json()["replaced"] == "calm-blue-waves"
        audits = [m for m in daemon.commands if m["cmd"] == "audit"]
        assert audits[-1]["action"] == "replace bundled scenario"
        r = c.request("DELETE", "/api/scenarios/calm-blue-waves",
                      headers={"X-CSRF-Token": csrf, "Origin": ORIGIN})
        assert r.status_code == 200 and not (place / "ui" / "scenarios" /
                                             "calm-blue-waves.yaml").exists()
        assert [m for m in daemon.commands if m["cmd"] == "audit"][-1]["action"] == \
            "remove scenario"
        r = c.request("DELETE", "/api/scenarios/gentle-start",
                      headers={"X-CSRF-Token": csrf, "Origin": ORIGIN})
        assert r.status_code == 404 and (resource_dir("scenarios") / "gentle-start.yaml").exists()


def test_an_upload_whose_title_differs_only_in_case_needs_the_replacement_confirmed(station):
    """The chair finds scenarios by file stem or title, case-insensitively: a title "calm blue
    WAVES" in my-waves.yaml answers to "Calm blue waves" first (uploads come first)."""
    text = (resource_dir("scenarios") / "calm-blue-waves.yaml").read_text()
    text = re.sub(r"(?m)^name: .*$", "name: calm blue WAVES", text)
    body = {"filename": "my-waves.yaml", "text": text, "install": True}
    c, csrf = signed_in(station)
    with c:
        r = post(c, "/api/scenarios", csrf, body)
        assert r.status_code == 409 and r.json()["replaces"] == "calm-blue-waves", r.text
        assert post(c, "/api/scenarios", csrf, {**body, "replace": True}).status_code == 200


def test_csv_cells_that_would_be_formulas_are_text_and_numbers_stay_numbers():
    events = [{"t": 1.5, "type": "session", "scenario": '=HYPERLINK("http://x","y")',
               "detail": "+1", "by": "@ana", "note": "-2", "level": -0.25}]
    out = io.StringIO()
    write_csv(events, out)
    row = dict(zip(*csv.reader(io.StringIO(out.getvalue()))))
    assert row["scenario"] == "'=HYPERLINK(\"http://x\",\"y\")"
    assert (row["detail"], row["by"], row["note"]) == ("'+1", "'@ana", "'-2")
    assert row["level"] == "-0.25" and row["t"] == "1.5"


def test_renew_cert_names_the_chair_and_check_warns_a_month_ahead(place, capsys):
    crt, key = place / "ui.crt", place / "ui.key"
    assert main(["ui", "renew-cert", "--cert", str(crt), "--key", str(key),
                 "--config", str(ROOT / "deploy" / "config.yaml")]) == 0
    printed = capsys.readouterr().out
    info = cert.read(crt)
    host = socket.gethostname().split(".")[0]
    assert f"DNS:{host}" in info.names and f"DNS:{host}.local" in info.names
    assert any(n.startswith("IP") for n in info.names)
    assert info.fingerprint in printed and oct(os.stat(key).st_mode & 0o777) == "0o600"
    now = datetime.now(timezone.utc)
    assert 396 <= info.days_left(now) <= 397
    ui = UISettings(enabled=True, listen="192.168.1.20", certificate=crt, key=key)
    ok, detail, warn = certificate_report(ui, now)
    assert ok and not warn and info.fingerprint in detail
    ok, detail, warn = certificate_report(ui, info.not_after - timedelta(days=20))
    assert ok and warn and "expires in 20 days" in detail and "renew-cert" in detail
    assert certificate_report(ui, info.not_after + timedelta(days=1))[0] is False
    assert main(["ui", "renew-cert", "--cert", str(crt), "--key", str(key), "--days", "3650",
                 "--config", str(ROOT / "deploy" / "config.yaml")]) == 2


# --- the real server ---------------------------------------------------------------------------

@pytest.fixture
def served(place, daemon):
    """``relaxd ui serve``: loopback (HTTP) and a network listener (TLS) on 127.0.0.2."""
    crt, key = place / "ui.crt", place / "ui.key"
    cert.make(crt, key, ["DNS:localhost", "IP:127.0.0.2"], days=30)
    config = place / "config.yaml"
    config.write_text(f"ui:\n  enabled: true\n  listen: 127.0.0.2\n  certificate: {crt}\n"
                      f"  key: {key}\n  socket: {place / 'ctl.sock'}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RELAXD_UI_TOKEN": "tok"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "relaxd", "ui", "serve", "--config", str(config), "--records",
         str(place / "records"), "--state-dir", str(place / "ui"), "--port", "0",
         "--tls-port", "0", "--link"], stdout=subprocess.PIPE, text=True, env=env)
    local = re.search(r":(\d+)/", proc.stdout.readline()).group(1)
    network = re.search(r":(\d+)/", proc.stdout.readline()).group(1)
    yield int(local), int(network), proc
    proc.terminate()
    proc.wait(20)


def raw(port: int, request: bytes, host: str = "127.0.0.1", source: str | None = None,
        tls: bool = False) -> socket.socket:
    s = socket.socket()
    if source:
        s.bind((source, 0))
    s.settimeout(10)
    s.connect((host, port))
    if tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        s = context.wrap_socket(s)
    s.sendall(request)
    return s


def answer(s: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except (OSError, ssl.SSLError):
        pass
    return data


def kiosk_stop_ms(port: int) -> tuple[int, float]:
    import urllib.request

    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5).read().decode()
    token = re.search(r'name="stop-token" content="([^"]+)"', page).group(1)
    begun = time.monotonic()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/stop", data=b"{}", method="POST", headers={
            "Origin": f"http://127.0.0.1:{port}", "X-Stop-Token": token,
            "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as r:
        return r.status, (time.monotonic() - begun) * 1000


def test_a_300_mb_declared_or_unending_body_is_refused_before_it_is_read(served):
    local, _, proc = served
    s = raw(local, b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 300000000\r\n\r\n")
    assert answer(s).startswith(b"HTTP/1.1 413")
    s = raw(local, b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    sent = 0
    try:
        for _ in range(300):  # up to 300 MB, 1 MB a chunk
            s.sendall(b"100000\r\n" + b"x" * 0x100000 + b"\r\n")
            sent += 1
    except OSError:
        pass  # the station hung up
    assert sent < 300
    rss = int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{proc.pid}/status").read_text()).group(1))
    assert rss < 150 * 1024, f"{rss} kB"


def test_the_chair_displays_listener_answers_to_its_own_names_only(served):
    """Loopback: 127.0.0.1, localhost or [::1] with its port (any case), else 421 (a DNS
    rebinding); the network listener (TLS, which a browser refuses under another name) keeps
    answering a tablet that uses an address its certificate lacks."""
    local, network, _ = served
    for host, status in ((f"127.0.0.1:{local}", b"200"), (f"LocalHost:{local}", b"200"),
                         (f"[::1]:{local}", b"200"), (f"rebind.example:{local}", b"421"),
                         ("127.0.0.1", b"421"), (f"127.0.0.1:{local + 1}", b"421"), ("", b"4")):
        s = raw(local, f"GET /login HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                .encode())
        got = answer(s)
        assert got[9:9 + len(status)] == status and (status != b"421" or b"stop-token" not in
                                                     got), (host, got[:200])
    s = raw(network, b"GET /login HTTP/1.1\r\nHost: 10.9.9.9\r\nConnection: close\r\n\r\n",
            "127.0.0.2", tls=True)
    assert answer(s).startswith(b"HTTP/1.1 200")


def tls_in_one_flight(port: int, request: bytes) -> bytes:
    """A TLS client whose last handshake message and first request go out in one segment (as
    TLS 1.3 clients often send them); the whole answer."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing)
    with socket.create_connection(("127.0.0.2", port), timeout=10) as s:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                s.sendall(outgoing.read())
                incoming.write(s.recv(65536))
        tls.write(request)
        s.sendall(outgoing.read())  # the handshake's end and the request together
        answer = b""
        while not whole(answer) and (chunk := s.recv(65536)):
            incoming.write(chunk)
            try:
                while part := tls.read(65536):
                    answer += part
            except ssl.SSLWantReadError:
                continue
        return answer


def whole(answer: bytes) -> bool:
    """An HTTP answer's header and as much body as its Content-Length says have come."""
    head, found, body = answer.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)content-length: *(\d+)", head)
    return bool(found and length and len(body) >= int(length.group(1)))


def test_a_request_sent_with_the_handshakes_last_flight_is_answered(served):
    _, network, _ = served
    got = tls_in_one_flight(network, b"GET /login HTTP/1.1\r\nHost: 127.0.0.2\r\n"
                                     b"Connection: close\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 200"), got[:100]


def test_64_slow_connections_from_one_address_leave_stop_to_everyone_else(served, daemon):
    local, network, _ = served
    half = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "
    slow = [raw(network, half, "127.0.0.2", "127.0.0.3", tls=True) for _ in range(64)]
    time.sleep(0.5)
    closed = 0
    for s in slow:
        s.settimeout(0.05)
        try:
            closed += s.recv(1) == b""
        except (TimeoutError, socket.timeout, ssl.SSLError):
            pass
        except OSError:
            closed += 1
    assert closed >= 64 - 8, closed  # at most 8 from one address are kept
    status, ms = kiosk_stop_ms(local)
    assert status == 200 and ms < 1000 and daemon.stops == ["chair display"]
    other = raw(network, b"GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                "127.0.0.2", "127.0.0.4", tls=True)
    assert answer(other).startswith(b"HTTP/1.1 200")  # another tablet is served
    for s in slow:
        s.close()


def test_limits_count_an_ipv6_host_by_its_64_and_a_mapped_ipv4_as_itself():
    assert address_key("2001:db8::1") == address_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert address_key("2001:db8:0:1::1") != address_key("2001:db8::1")
    assert address_key("::ffff:192.168.1.7") == "192.168.1.7" == address_key("192.168.1.7")
    assert address_key("192.168.1.8") != address_key("192.168.1.7")


def test_wrong_passwords_from_many_addresses_meet_a_budget_in_all_and_the_pin_still_works(
        station):
    """One wrong password from each of many IPv4 addresses: past RateLimit.TOTAL failures a
    minute every password sign-in waits (429, with how long); the chair's own PIN has a limit
    of its own, so the caregiver at the chair still signs in."""
    users = json.loads(station.users.path.read_text())
    users["users"]["ana"]["hash"] = cheap_hash(PASSWORD)  # the check's cost is not the point
    station.users.path.write_text(json.dumps(users))
    answers = []
    for n in range(RateLimit.TOTAL + 3):
        with client(station, f"10.1.{n}.1") as c:
            r = c.post("/login", data={"username": "ana", "password": "guess"},
                       headers={"Origin": ORIGIN})
            answers.append((r.status_code, r.headers.get("retry-after")))
    assert [a for a, _ in answers[:RateLimit.TOTAL]] == [401] * RateLimit.TOTAL
    assert all(a == 429 and int(w) > 0 for a, w in answers[RateLimit.TOTAL:]), answers
    with client(station) as kiosk:
        r = kiosk.post("/login", data={"pin": PIN}, headers={"Origin": ORIGIN})
        assert r.status_code == 303, r.text


class Held:
    """A connection for ConnectionLimit: waiting for its header, or with a request running."""

    def __init__(self, waiting: bool) -> None:
        self.waits, self.dropped = waiting, False

    def waiting(self) -> bool:
        return self.waits

    def drop(self) -> None:
        self.dropped = True


def test_a_full_listener_drops_the_oldest_waiting_connection_its_own_address_first():
    limit = ConnectionLimit(per_address=2, total=4)
    a1, a2, b1, c1 = Held(True), Held(False), Held(True), Held(False)
    for conn, address in ((a1, "10.0.0.1"), (a2, "10.0.0.1"), (b1, "10.0.0.2"),
                          (c1, "10.0.0.3")):
        assert limit.admit(conn, address)
    a3 = Held(True)
    assert limit.admit(a3, "10.0.0.1") and a1.dropped and not b1.dropped  # its own oldest
    d1 = Held(False)
    assert limit.admit(d1, "10.0.0.4") and b1.dropped  # full: the oldest waiting anywhere
    a3.waits = False
    assert not limit.admit(Held(True), "10.0.0.5")  # every one has a request running
    assert not limit.admit(Held(True), "10.0.0.1")
    limit.release(c1)
    assert limit.admit(Held(True), "10.0.0.5") and limit.count("10.0.0.1") == 2
