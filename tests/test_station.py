"""The caregiver station's web application and its security rules (Starlette's TestClient),
against a stand-in daemon on a real control socket."""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
import threading
from contextlib import redirect_stdout
from pathlib import Path

import pytest

pytest.importorskip("starlette")
from starlette.routing import Route  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from relaxd.cli import main  # noqa: E402
from relaxd.core.paths import resource_dir  # noqa: E402
from relaxd.daemon.server import ControlServer  # noqa: E402
from relaxd.records.sessions import SessionSink  # noqa: E402
from relaxd.station.auth import RateLimit, Sessions, UserStore, verify_secret  # noqa: E402
from relaxd.station.link import ChairLink  # noqa: E402
from relaxd.station.server import Station, create_app  # noqa: E402

PASSWORD = "correct horse battery"
PIN = "4321"
ORIGIN = "http://testserver"
EVIL = "<script>alert(1)</script>"


class StandInDaemon:
    """A control socket whose 'loop' answers each command at once and records it."""

    def __init__(self, path: Path) -> None:
        self.stops: list[str] = []
        self.commands: list[dict] = []
        self.server = ControlServer(path, stop=self._stop, direct={
            "children": lambda m: {"ok": True, "children": [
                {"id": "ada", "name": "Ada", "consent": "camera"}]},
            "recommend": lambda m: {"ok": True, "child": m["child"], "scenario": "Calm blue waves",
                                    "why": "Calm blue waves: calm in 4 of 5 session(s)"}})
        self.server.publish({"state": "running", "scenario": EVIL, "alerts": [
            {"id": 1, "t": 3.0, "at": 0, "reason": "halt", "detail": EVIL, "acknowledged": False}]})
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _stop(self, by: str) -> int:
        self.stops.append(by)
        return len(self.stops)  # the stop's number

    def _loop(self) -> None:
        while not self._done.wait(0.01):
            for command in self.server.take():
                self.commands.append(command.args)
                if command.name == "start" and command.args.get("scenario") == "locked":
                    command.finish({"ok": False, "error": "the e-stop is pressed down"})
                elif command.name == "start" and command.args.get("child"):
                    command.finish({"ok": True, "child": command.args["child"],
                                    "scenario": "Calm blue waves", "why": "chosen by the caregiver"})
                else:
                    command.finish({"ok": True})

    def close(self) -> None:
        self._done.set()
        self.server.close()


@pytest.fixture
def place():
    folder = Path(tempfile.mkdtemp(prefix="st-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def daemon(place):
    d = StandInDaemon(place / "ctl.sock")
    yield d
    d.close()


@pytest.fixture
def station(place, daemon):
    users = UserStore(place / "ui" / "users.json")
    users.set_user("ana", PASSWORD, "therapist")
    users.set_user("bob", PASSWORD, "caregiver")
    users.set_pin(PIN)
    sink = SessionSink(place / "records", scenario="Calm blue waves", source="test")
    sink.write({"t": 1.0, "type": "mood", "mood": "positive", "confidence": 0.8})
    sink.write({"t": 2.0, "type": "levels", "light": 0.3, "audio": 0.2, "vibration": 0.1})
    sink.write({"t": 3.0, "type": "audit", "action": "stop", "by": "ana", "detail": EVIL})
    sink.close()
    return Station(link=ChairLink(place / "ctl.sock"), users=users,
                   sessions=Sessions(3600, place / "ui" / "sessions.json"),
                   records=place / "records",
                   scenario_dirs=[place / "ui" / "scenarios", resource_dir("scenarios")],
                   token="the-link-token", limiter=RateLimit())


def client(station, address: str = "127.0.0.1") -> TestClient:
    return TestClient(create_app(station), client=(address, 50000), follow_redirects=False)


def signed_in(station, user: str = "ana", address: str = "127.0.0.1") -> tuple[TestClient, str]:
    c = client(station, address)
    r = c.post("/login", data={"username": user, "password": PASSWORD},
               headers={"Origin": ORIGIN})
    assert r.status_code == 303, r.text
    page = c.get("/")
    token = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text).group(1)
    return c, token


def post(c: TestClient, path: str, token: str | None, body: dict | None = None,
         origin: str | None = ORIGIN):
    headers = {}
    if token is not None:
        headers["X-CSRF-Token"] = token
    if origin is not None:
        headers["Origin"] = origin
    return c.post(path, json=body or {}, headers=headers)


def api_routes(station) -> list[tuple[str, str]]:
    """Every /api/ route with a concrete path, and its method."""
    out = []
    for route in create_app(station).routes:
        if isinstance(route, Route) and route.path.startswith("/api/") and "rest" not in route.path:
            path = route.path.replace("{alert:int}", "1").replace("{id:int}", "1").replace(
                "{name}", "calm-blue-waves")
            out += [(m, path) for m in route.methods - {"HEAD"}]
    return out


def test_every_api_route_answers_401_without_a_signed_in_session(station):
    """From the network, every route; on the chair itself every route but STOP (which the
    chair's display may send without a sign-in, with its page's token: else 403)."""
    routes = api_routes(station)
    assert len(routes) >= 16
    for address in ("192.0.2.50", "127.0.0.1"):
        with client(station, address) as c:
            for method, path in routes:
                r = c.request(method, path, json={}, headers={"Origin": ORIGIN})
                if address == "127.0.0.1" and path == "/api/stop":
                    assert r.status_code == 403, r.text
                    continue
                assert r.status_code == 401, (address, method, path, r.status_code)
                assert r.json() == {"error": "sign in first"}
            assert c.get("/api/no/such/thing").status_code == 401
            c.cookies.set("relaxd_station", "forged")
            assert c.get("/api/state").status_code == 401
            assert c.get("/api/state").json()["expired"] is True


def test_changes_need_the_pages_csrf_token_and_the_same_origin(station, daemon):
    c, token = signed_in(station)
    with c:
        assert post(c, "/api/stop", None).status_code == 403
        assert post(c, "/api/stop", "wrong" + token).status_code == 403
        assert post(c, "/api/stop", token, origin="http://evil.example").status_code == 403
        assert post(c, "/api/stop", token, origin=None).status_code == 403
        assert not daemon.stops
        r = post(c, "/api/stop", token)
        assert r.status_code == 200 and r.json() == {"ok": True, "stop_seq": 1} and daemon.stops == ["ana"]


def test_start_refused_by_the_chair_is_409_with_its_reason(station, daemon):
    c, token = signed_in(station, "bob")
    with c:
        r = post(c, "/api/start", token, {"scenario": "locked"})
        assert r.status_code == 409 and "pressed down" in r.json()["error"]
        assert post(c, "/api/start", token, {"scenario": "calm-blue-waves"}).status_code == 200
        assert post(c, "/api/alerts/1/ack", token).status_code == 200
        assert post(c, "/api/observe", token, {"what": "upset"}).status_code == 200
        assert [m["cmd"] for m in daemon.commands] == ["start", "start", "ack", "observe"]
        assert all(m["by"] == "bob" for m in daemon.commands)


def test_start_for_a_child_and_the_start_screens_children_and_auto(station, daemon):
    c, token = signed_in(station, "bob")
    with c:
        assert c.get("/api/children").json() == [{"id": "ada", "name": "Ada", "consent": "camera"}]
        auto = c.get("/api/children/ada/auto").json()
        assert auto == {"child": "ada", "scenario": "Calm blue waves",
                        "why": "Calm blue waves: calm in 4 of 5 session(s)"}
        r = post(c, "/api/start", token, {"scenario": "auto", "child": "ada"})
        assert r.status_code == 200 and r.json() == {
            "ok": True, "child": "ada", "scenario": "Calm blue waves",
            "why": "chosen by the caregiver"}
        assert daemon.commands[-1]["child"] == "ada" and daemon.commands[-1]["scenario"] == "auto"


def test_caregivers_may_not_touch_scenarios_or_read_the_audit_log(station):
    c, token = signed_in(station, "bob")
    with c:
        r = post(c, "/api/scenarios", token, {"filename": "a.yaml", "text": "name: a"})
        assert r.status_code == 403
        assert c.get("/api/audit").status_code == 403
        assert "upload-file" not in c.get("/").text
        assert c.get("/api/scenarios").status_code == 200  # watching is fine


def test_five_failed_sign_ins_in_a_minute_from_one_address_then_429(station):
    with client(station, "192.0.2.7") as c:
        for _ in range(5):
            r = c.post("/login", data={"username": "ana", "password": "nope"},
                       headers={"Origin": ORIGIN})
            assert r.status_code == 401
        r = c.post("/login", data={"username": "ana", "password": PASSWORD},
                   headers={"Origin": ORIGIN})
        assert r.status_code == 429
        assert c.get("/?token=guess").status_code == 429
    with client(station, "192.0.2.8") as other:
        r = other.post("/login", data={"username": "ana", "password": PASSWORD},
                       headers={"Origin": ORIGIN})
        assert r.status_code == 303


def test_the_pin_signs_in_only_from_the_chair_itself(station):
    with client(station, "192.0.2.9") as remote:
        assert remote.post("/login", data={"pin": PIN}, headers={"Origin": ORIGIN}
                           ).status_code == 401
        assert 'name="pin"' not in remote.get("/login").text
    with client(station) as kiosk:
        r = kiosk.post("/login", data={"pin": PIN}, headers={"Origin": ORIGIN})
        assert r.status_code == 303
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert 'content="caregiver"' in kiosk.get("/").text


def test_the_sign_in_link_signs_any_browser_in(station):
    for _ in range(2):
        with client(station) as c:
            r = c.get("/?token=the-link-token")
            assert r.status_code == 303 and r.headers["location"] == "/"
            assert c.get("/api/state").status_code == 200
    with client(station) as c:
        assert c.get("/?token=wrong").status_code == 401


def test_pages_have_a_csp_without_inline_script_and_escape_what_users_typed(station):
    c, token = signed_in(station)
    with c:
        bad_name = re.sub(r"^name: .*$", f'name: "{EVIL}"', (
            resource_dir("scenarios") / "gentle-start.yaml").read_text(), count=1, flags=re.M)
        r = post(c, "/api/scenarios", token, {"filename": "evil.yaml", "text": bad_name,
                                               "install": True})
        assert r.status_code == 200 and r.json()["installed"], r.text
        page = c.get("/")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert EVIL not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert re.findall(r"<script(?![^>]*\bsrc=)", page.text) == []
        assert re.findall(r"<script(?![^>]*\bsrc=)", c.get("/login").text) == []
        assert c.get("/api/state").headers["content-type"].startswith("application/json")
        js = c.get("/static/station.js").text
        assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "eval(" not in js


def test_an_upload_with_a_mistake_gets_validates_file_line_col_messages(station, place):
    c, token = signed_in(station)
    bad = (resource_dir("scenarios") / "gentle-start.yaml").read_text().replace(
        "brightness: 0.", "brightness: 7.", 1)
    (place / "bad.yaml").write_text(bad)
    out = io.StringIO()
    with redirect_stdout(out):
        main(["scenario", "validate", str(place / "bad.yaml")])
    expected = out.getvalue().replace(f"{place}/", "").strip().splitlines()
    with c:
        r = post(c, "/api/scenarios", token, {"filename": "bad.yaml", "text": bad,
                                               "install": True})
        assert r.status_code == 422 and r.json()["errors"] == expected
        assert re.match(r"bad\.yaml:\d+:\d+: ", expected[0])
        assert not (place / "ui" / "scenarios" / "bad.yaml").exists()
        r = post(c, "/api/scenarios", token, {"filename": "../../etc/x.sh", "text": "x"})
        assert r.status_code == 400 and "\n" not in r.json()["error"]


def test_history_csv_and_audit(station):
    c, _ = signed_in(station)
    with c:
        sessions = c.get("/api/sessions").json()
        assert sessions[0]["scenario"] == "Calm blue waves"
        sid = sessions[0]["id"]
        events = c.get(f"/api/sessions/{sid}").json()["events"]
        assert {e["type"] for e in events} == {"mood", "levels"}
        csv = c.get(f"/api/sessions/{sid}.csv")
        assert csv.headers["content-type"].startswith("text/csv")
        assert csv.text.splitlines()[0].startswith("t,type,")
        assert c.get("/api/sessions/999").status_code == 404
        audit = c.get("/api/audit").json()
        assert audit[0]["action"] == "stop" and audit[0]["by"] == "ana"
        preview = c.get("/api/scenarios/gentle-start").json()
        assert preview["phases"] and preview["timeline"]


def test_no_password_or_pin_in_plain_text_anywhere_on_disk(place, capsys):
    ui = place / "ui2"
    secret, pin = "my very secret passphrase", "975312"
    import sys
    old_stdin = sys.stdin
    try:
        sys.stdin = io.StringIO(secret + "\n")
        assert main(["ui", "add-user", "cara", "--role", "caregiver", "--state-dir", str(ui),
                     "--password-stdin"]) == 0
        sys.stdin = io.StringIO(pin + "\n")
        assert main(["ui", "set-pin", "--state-dir", str(ui), "--password-stdin"]) == 0
        sys.stdin = io.StringIO("short\n")
        assert main(["ui", "passwd", "cara", "--state-dir", str(ui), "--password-stdin"]) == 2
    finally:
        sys.stdin = old_stdin
    assert "at least 8 characters" in capsys.readouterr().err
    for path in place.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert secret.encode() not in data and pin.encode() not in data, path
    users = ui / "users.json"
    assert oct(os.stat(users).st_mode & 0o777) == "0o600"
    store = UserStore(users)
    assert store.check_password("cara", secret) == "caregiver" and store.check_pin(pin)
    assert "scrypt$" in users.read_text()
    assert not verify_secret("x", "md5$abc") and not verify_secret("x", None)


def test_account_changes_from_a_shell_are_in_the_audit_log(station, place, monkeypatch):
    import sys

    monkeypatch.setenv("SUDO_USER", "tech")
    ui = str(place / "ui")
    for argv, secret in ((["ui", "add-user", "cara", "--role", "caregiver"], "a long password"),
                         (["ui", "passwd", "cara"], "another long password"),
                         (["ui", "set-pin"], "8642")):
        monkeypatch.setattr(sys, "stdin", io.StringIO(secret + "\n"))
        assert main([*argv, "--state-dir", ui, "--password-stdin"]) == 0
    written = (place / "ui" / "audit.jsonl").read_text()
    assert "long password" not in written and "8642" not in written
    assert oct(os.stat(place / "ui" / "audit.jsonl").st_mode & 0o777) == "0o600"
    c, _ = signed_in(station)
    with c:
        audit = c.get("/api/audit").json()
    assert [(e["action"], e["detail"], e["by"]) for e in audit if e["session"] is None] == [
        ("set PIN", "the kiosk's caregiver PIN", "tech (shell)"),
        ("change password", "cara (0 sign-ins ended)", "tech (shell)"),
        ("add user", "cara (caregiver)", "tech (shell)")]  # newest first
    assert [e["action"] for e in audit if e["session"]] == ["stop"]  # with the daemon's
