"""The caregiver station's web application (Starlette on uvicorn; see ARCHITECTURE.md).

Pages: ``/login``, ``/`` (Now, Alerts, History, Scenarios, Audit: one page, tabs drawn by
``static/station.js``). JSON API under ``/api/``; live state as server-sent events on
``/api/events``. Every ``/api/`` route needs a signed-in session (else 401); every POST also the
page's CSRF token in ``X-CSRF-Token`` and a same-origin request (else 403); scenarios and the
audit log are for therapists (else 403). The station never drives the chair itself: it asks the
daemon over the control socket (:mod:`relaxd.station.link`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import io
import ipaddress
import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from relaxd.control.library import find_scenario, scenario_files
from relaxd.station.auth import RateLimit, Sessions, SignedIn, UserStore
from relaxd.station.link import ChairLink, ChairUnreachable

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
COOKIE = "relaxd_station"
MAX_BODY = 256 * 1024
SSE_MIN_INTERVAL_S = 0.2
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
#: The events a history plot needs.
PLOTTED = ("mood", "levels", "decision", "estop", "observation", "alert")

Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class Station:
    """Everything the routes share: the daemon's link, accounts, sessions, folders."""

    link: ChairLink
    users: UserStore
    sessions: Sessions
    records: Path  # the daemon's state directory (sessions.sqlite, read-only)
    scenario_dirs: list[Path]  # the first is where uploads are installed
    token: str | None = None  # the sign-in link's token (relaxd --simulate --ui)
    tls: bool = False
    limiter: RateLimit = field(default_factory=RateLimit)

    def signed_in(self, request: Request) -> SignedIn | None:
        return self.sessions.get(request.cookies.get(COOKIE), time.time())

    def sign_in(self, response: Response, user: str, role: str) -> None:
        token, _ = self.sessions.new(user, role, time.time())
        response.set_cookie(COOKIE, token, max_age=int(self.sessions.lifetime), httponly=True,
                            samesite="strict", secure=self.tls, path="/")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def same_origin(request: Request) -> bool:
    """The request comes from a page of this station (Origin, else Referer)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return False
    got, ours = urlsplit(origin), request.url
    return (got.scheme, got.netloc) == (ours.scheme, ours.netloc)


def guarded(role: str | None = None, change: bool = False) -> Callable[[Handler], Handler]:
    """Sign-in (401), CSRF and same origin for changes (403), role (403), for a route."""
    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            station: Station = request.app.state.station
            signed = station.signed_in(request)
            if signed is None:
                if request.url.path.startswith("/api/"):
                    return _error(401, "sign in first")
                return RedirectResponse("/login", status_code=303)
            if change:
                sent = request.headers.get("x-csrf-token", "")
                if not (sent and hmac.compare_digest(sent, signed.csrf) and same_origin(request)):
                    return _error(403, "missing or wrong CSRF token, or not from this station")
            if role is not None and signed.role != role:
                return _error(403, f"only a {role} may do this")
            request.state.user = signed
            return await handler(request)
        return endpoint
    return wrap


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; ValueError with a one-line reason."""
    if int(request.headers.get("content-length") or 0) > MAX_BODY:
        raise ValueError(f"request larger than {MAX_BODY // 1024} KiB")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ValueError(f"request larger than {MAX_BODY // 1024} KiB")
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise ValueError("the body is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


# --- sign-in ---------------------------------------------------------------------------------

def is_local(request: Request) -> bool:
    if request.client is None:  # no peer address known
        return False
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


async def login_page(request: Request, error: str = "", status: int = 200) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, "login.html", {
        "error": error, "pin": is_local(request)}, status_code=status)


async def login(request: Request) -> Response:
    """Sign in with the PIN (from the chair itself) or a user name and password."""
    station: Station = request.app.state.station
    address = request.client.host if request.client else "?"
    if station.limiter.blocked(address):
        return await login_page(request, "Too many attempts: wait a minute.", 429)
    if not same_origin(request):
        return await login_page(request, "Sign in from the station's own page.", 403)
    form = {k: v[0] for k, v in parse_qs((await request.body())[:4096].decode(errors="replace"),
                                          keep_blank_values=True).items()}
    role, user = None, form.get("username", "")
    if form.get("pin") and is_local(request):
        role = "caregiver" if await _off_loop(station.users.check_pin, form["pin"]) else None
        user = "kiosk"
    elif user:
        role = await _off_loop(station.users.check_password, user, form.get("password", ""))
    if role is None:
        station.limiter.failed(address)
        return await login_page(request, "Wrong PIN, name or password.", 401)
    response = RedirectResponse("/", status_code=303)
    station.sign_in(response, user, role)
    return response


async def _off_loop(fn: Callable[..., Any], *args: Any) -> Any:
    """A scrypt check in a thread, so the live updates go on meanwhile."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def logout(request: Request) -> Response:
    station: Station = request.app.state.station
    if same_origin(request):
        station.sessions.drop(request.cookies.get(COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


async def index(request: Request) -> Response:
    """The station (signed in), the sign-in link (``?token=``), or the sign-in page."""
    station: Station = request.app.state.station
    token = request.query_params.get("token")
    if token is not None:
        address = request.client.host if request.client else "?"
        if station.limiter.blocked(address):
            return await login_page(request, "Too many attempts: wait a minute.", 429)
        if station.token and hmac.compare_digest(token, station.token):
            response = RedirectResponse("/", status_code=303)
            station.sign_in(response, "technician", "therapist")
            return response
        station.limiter.failed(address)
        return await login_page(request, "That sign-in link is not valid.", 401)
    signed = station.signed_in(request)
    if signed is None:
        return RedirectResponse("/login", status_code=303)
    templates: Jinja2Templates = request.app.state.templates
    scenarios = _scenario_list(station) if signed.role == "therapist" else []
    return templates.TemplateResponse(request, "index.html", {
        "user": signed, "scenarios": scenarios})


# --- the chair ---------------------------------------------------------------------------------

@guarded()
async def api_state(request: Request) -> Response:
    return JSONResponse(request.app.state.station.link.view())


@guarded()
async def api_events(request: Request) -> Response:
    """Server-sent events: the state on every change (at most 5 a second), keep-alives."""
    station: Station = request.app.state.station
    token = request.cookies.get(COOKIE)

    async def stream() -> Any:
        seen = -1
        while station.sessions.get(token, time.time()) is not None:
            version = await station.link.changed(seen, 15.0)
            if version == seen:
                yield ": keep-alive\n\n"
                continue
            seen = version
            yield f"data: {json.dumps(station.link.view(), separators=(',', ':'))}\n\n"
            await asyncio.sleep(SSE_MIN_INTERVAL_S)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _command(request: Request, cmd: str, **args: Any) -> Response:
    station: Station = request.app.state.station
    try:
        answer = await station.link.command(cmd, by=request.state.user.user, **args)
    except ChairUnreachable as exc:
        return _error(503, str(exc))
    if not answer.get("ok"):
        return _error(409, str(answer.get("error", "refused")))
    return JSONResponse({k: v for k, v in answer.items() if k != "id"})


def chair_command(cmd: str, role: str | None = None,
                  args: Callable[[dict[str, Any], Request], dict[str, Any]] | None = None
                  ) -> Handler:
    """A POST route that passes one command to the daemon."""
    @guarded(role=role, change=True)
    async def endpoint(request: Request) -> Response:
        try:
            body = await json_body(request)
        except ValueError as exc:
            return _error(400, str(exc))
        return await _command(request, cmd, **(args(body, request) if args else {}))
    return endpoint


def _start_args(body: dict[str, Any], _: Request) -> dict[str, Any]:
    """``{"scenario": NAME | "auto", "child": ID | null, "manual": bool, "after_stop": N}``:
    ``after_stop`` is the newest stop the caregiver's page showed (the chair refuses the Start
    once a newer one exists; the chair checks the number)."""
    child = body.get("child")
    args = {"scenario": str(body.get("scenario") or ""), "manual": bool(body.get("manual")),
            "child": str(child) if child else None}
    if "after_stop" in body:
        args["after_stop"] = body["after_stop"]
    return args


# --- children --------------------------------------------------------------------------------

@guarded()
async def api_children(request: Request) -> Response:
    """The chair's children for the Start screen (id, name, consent), from the daemon: the
    profiles are readable by the daemon's user alone."""
    station: Station = request.app.state.station
    try:
        answer = await station.link.command("children")
    except ChairUnreachable as exc:
        return _error(503, str(exc))
    if not answer.get("ok"):
        return _error(409, str(answer.get("error", "refused")))
    return JSONResponse(answer.get("children", []))


@guarded()
async def api_recommend(request: Request) -> Response:
    """What ``auto`` would play for the child now, and why in plain words."""
    station: Station = request.app.state.station
    try:
        answer = await station.link.command("recommend", child=request.path_params["child"])
    except ChairUnreachable as exc:
        return _error(503, str(exc))
    if not answer.get("ok"):
        return _error(409, str(answer.get("error", "refused")))
    return JSONResponse({k: answer.get(k) for k in ("child", "scenario", "why")})


def _ack_args(_: dict[str, Any], request: Request) -> dict[str, Any]:
    return {"alert": request.path_params["alert"]}


# --- history ---------------------------------------------------------------------------------

@guarded()
async def api_sessions(request: Request) -> Response:
    from relaxd.records.sessions import list_sessions

    station: Station = request.app.state.station
    rows = await _off_loop(list_sessions, station.records)
    return JSONResponse([r.__dict__ for r in reversed(rows)][:200])


async def _events_of(request: Request) -> list[dict[str, Any]] | Response:
    from relaxd.core.errors import RelaxdError
    from relaxd.records.sessions import load_events

    station: Station = request.app.state.station
    try:
        return await _off_loop(load_events, station.records, request.path_params["id"])
    except RelaxdError as exc:
        return _error(404, str(exc))


@guarded()
async def api_session(request: Request) -> Response:
    events = await _events_of(request)
    if isinstance(events, Response):
        return events
    return JSONResponse({"id": request.path_params["id"],
                         "events": [e for e in events if e["type"] in PLOTTED]})


@guarded()
async def api_session_csv(request: Request) -> Response:
    from relaxd.records.sessions import write_csv

    events = await _events_of(request)
    if isinstance(events, Response):
        return events
    out = io.StringIO()
    write_csv(events, out)
    name = f"session-{request.path_params['id']}.csv"
    return PlainTextResponse(out.getvalue(), media_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{name}"'})


@guarded(role="therapist")
async def api_audit(request: Request) -> Response:
    """The daemon's audit events (session records) and the account changes made from a shell
    (the station's own file), newest first."""
    from relaxd.records.sessions import events_of_type
    from relaxd.station import audit

    station: Station = request.app.state.station
    daemon = await _off_loop(events_of_type, station.records, "audit")
    accounts = await _off_loop(audit.entries, station.users.path.parent)
    return JSONResponse(audit.merged(daemon, accounts))


# --- scenarios -------------------------------------------------------------------------------

def _scenario_list(station: Station) -> list[dict[str, Any]]:
    from relaxd.control.scenario import load_scenario, mmss
    from relaxd.core.errors import RelaxdError

    out = []
    for stem, path in sorted(scenario_files(station.scenario_dirs).items()):
        try:
            s = load_scenario(path)
            out.append({"id": stem, "name": s.name, "length": mmss(s.duration),
                        "installed": path.parent == station.scenario_dirs[0]})
        except RelaxdError as exc:
            out.append({"id": stem, "name": f"(invalid: {exc})", "length": "", "installed": False})
    return out


@guarded()
async def api_scenarios(request: Request) -> Response:
    return JSONResponse(await _off_loop(_scenario_list, request.app.state.station))


@guarded()
async def api_scenario(request: Request) -> Response:
    """One scenario's timeline: its phases (for the preview bar) and the text lines."""
    from relaxd.control.scenario import load_scenario, timeline
    from relaxd.core.errors import RelaxdError

    station: Station = request.app.state.station
    try:
        s = load_scenario(find_scenario(request.path_params["name"], station.scenario_dirs))
    except RelaxdError as exc:
        return _error(404, str(exc))
    phases = [{"name": p.name, "duration": p.duration, "colour": p.light.colour.hex(),
               "brightness": p.light.brightness, "volume": p.audio.volume,
               "vibration": p.vibration.intensity} for p in s.phases]
    return JSONResponse({"name": s.name, "phases": phases, "timeline": timeline(s)})


@guarded(role="therapist", change=True)
async def api_upload(request: Request) -> Response:
    """Validate an uploaded scenario (``{"filename", "text", "install"}``): FILE:LINE:COL
    problems (422), or ok; installed when asked and valid."""
    station: Station = request.app.state.station
    try:
        body = await json_body(request)
        name, text = _upload_name(body.get("filename")), str(body.get("text") or "")
    except ValueError as exc:
        return _error(400, str(exc))
    problems, title = await _off_loop(validate_upload, name, text)
    if problems:
        return JSONResponse({"ok": False, "errors": problems}, status_code=422)
    if not body.get("install"):
        return JSONResponse({"ok": True, "name": title, "installed": False})
    target = station.scenario_dirs[0] / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    try:
        await station.link.command("audit", action="install scenario", detail=name,
                                   by=request.state.user.user)
    except ChairUnreachable:
        log.warning("scenario %s installed by %s; the daemon is away, not audited",
                    name, request.state.user.user)
    return JSONResponse({"ok": True, "name": title, "installed": True})


def _upload_name(filename: Any) -> str:
    name = Path(str(filename or "")).name
    if not name.endswith(".yaml") or len(name) > 80 or not name[:-5].replace("-", "").replace(
            "_", "").isalnum():
        raise ValueError("a scenario file is named like calm-sea.yaml (letters, digits, - and _)")
    return name


def validate_upload(name: str, text: str) -> tuple[list[str], str]:
    """``relaxd scenario validate``'s FILE:LINE:COL lines for ``text`` as file ``name``, and
    the scenario's name when it is valid."""
    from relaxd.control.scenario import load_scenario
    from relaxd.core.errors import RelaxdError

    with tempfile.TemporaryDirectory(prefix="relaxd-upload-") as folder:
        path = Path(folder) / name
        path.write_text(text, encoding="utf-8")
        try:
            return [], load_scenario(path).name
        except RelaxdError as exc:
            return str(exc).replace(f"{folder}/", "").splitlines(), ""


@guarded()
async def api_unknown(request: Request) -> Response:
    return _error(404, "no such route")


# --- the application -------------------------------------------------------------------------

class SecurityHeaders:
    """ASGI middleware: the CSP (no inline script) and friends on every response."""

    HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
               (b"referrer-policy", b"same-origin"), (b"x-frame-options", b"DENY")]

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        api = scope["path"].startswith("/api/")

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + self.HEADERS
                if api and not any(k == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(station: Station) -> Starlette:
    post = ["POST"]
    routes = [
        Route("/", index), Route("/login", login_page), Route("/login", login, methods=post),
        Route("/logout", logout, methods=post),
        Route("/api/state", api_state), Route("/api/events", api_events),
        Route("/api/stop", chair_command("stop"), methods=post),
        Route("/api/start", chair_command("start", args=_start_args), methods=post),
        Route("/api/alerts/{alert:int}/ack", chair_command("ack", args=_ack_args), methods=post),
        Route("/api/calmer", chair_command("calmer"), methods=post),
        Route("/api/hold", chair_command("hold", args=lambda b, _: {"on": bool(b.get("on"))}),
              methods=post),
        Route("/api/end-gently", chair_command("end_gently"), methods=post),
        Route("/api/manual", chair_command(
            "nudge", args=lambda b, _: {"steps": 1 if b.get("steps") == 1 else -1}),
              methods=post),
        Route("/api/observe", chair_command(
            "observe", args=lambda b, _: {"what": str(b.get("what") or "")}), methods=post),
        Route("/api/children", api_children),
        Route("/api/children/{child}/auto", api_recommend),
        Route("/api/sessions", api_sessions),
        Route("/api/sessions/{id:int}", api_session),
        Route("/api/sessions/{id:int}.csv", api_session_csv),
        Route("/api/scenarios", api_scenarios), Route("/api/scenarios", api_upload, methods=post),
        Route("/api/scenarios/{name}", api_scenario),
        Route("/api/audit", api_audit),
        Route("/api/{rest:path}", api_unknown, methods=["GET", "POST", "PUT", "DELETE"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        station.link.start()
        yield
        await station.link.stop()

    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(SecurityHeaders)])
    app.state.station = station
    app.state.templates = Jinja2Templates(directory=str(HERE / "templates"))
    return app
