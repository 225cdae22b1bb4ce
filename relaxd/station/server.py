"""The caregiver station's web application (Starlette on uvicorn; see ARCHITECTURE.md).

Pages: ``/login``, ``/`` (Now, Alerts, History, Scenarios, Audit: one page, tabs drawn by
``static/station.js``). JSON API under ``/api/``; live state as server-sent events on
``/api/events``. Every ``/api/`` route needs a signed-in session (else 401); every POST also the
page's CSRF token in ``X-CSRF-Token`` and a same-origin request (else 403); scenarios and the
audit log are for therapists (else 403). One exception, STOP on the chair's own display:
``POST /api/stop`` from a loopback address with this station's ``Origin`` and the page's STOP
token (``X-Stop-Token``; every page has one, the sign-in page too) stops the chair with no
sign-in, as the button on the chair does; without them, 403. STOP is the safe direction
(deploy/SAFETY.md, H10). The station never drives the chair itself: it asks the daemon over
the control socket (:mod:`relaxd.station.link`). Body caps, timeouts and connection limits:
:mod:`relaxd.station.guard`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import io
import ipaddress
import json
import logging
import math
import secrets
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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

from relaxd.control.library import find_scenario, scenario_files, scenario_key
from relaxd.station import audit, words
from relaxd.station.auth import Backoff, PinWait, RateLimit, Sessions, SignedIn, UserStore
from relaxd.station.guard import BodyLimit, LoopbackHosts, SecurityHeaders
from relaxd.station.link import ChairLink, ChairUnreachable

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
COOKIE = "relaxd_station"
SSE_MIN_INTERVAL_S = 0.2
#: The events a history plot needs.
PLOTTED = ("mood", "levels", "decision", "estop", "observation", "alert", "vitals", "session")
#: Password and PIN checks (scrypt, 16 MiB each) run at most this many at a time, and at most
#: PENDING_CHECKS wait; beyond that a sign-in is answered 429 at once.
PARALLEL_CHECKS = 2
PENDING_CHECKS = 8
#: The chair's states in which the chair's own display is never signed out.
QUIET_STATES = ("idle", "ended", "offline")
#: A manual step's outcome is read from the chair's state this many states after its answer.
MANUAL_STATES = 2
#: How long the station looks for the alert of a STOP pressed on the chair's own display.
OWN_STOP_WAIT_S = 5.0
EXPIRED = "your sign-in has ended (expired, or signed out): sign in again"

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
    limiter: Backoff = field(default_factory=RateLimit)
    pin_wait: Backoff = field(default_factory=PinWait)
    #: A tablet on the network may Start (ui.network_start); the chair's display always may.
    network_start: bool = False
    #: The secret behind the STOP tokens of pages without a sign-in (kept in ui.key_file).
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    checks: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(PARALLEL_CHECKS, "relaxd-check"))
    #: The tablets' TLS certificate (its fingerprint is on the About page), if any.
    certificate: Path | None = None
    #: The children's names by id (from the daemon), for the station's own pages only.
    names: dict[str, str] = field(default_factory=dict)
    _asked: set[str] = field(default_factory=set)
    _alert_children: dict[int, str | None] = field(default_factory=dict)
    _ending: str | None = None  # the child of a session that is ending or ended ("" none)
    _pending: list[int] = field(default_factory=lambda: [0])
    _pending_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def state_dir(self) -> Path:
        return self.users.path.parent

    def signed_in(self, request: Request) -> SignedIn | None:
        """The request's sign-in; the chair's own display's is renewed while the chair is in
        a session, so it never ends in the middle of one."""
        state = (self.link.state or {}).get("state", "offline")
        keep = is_local(request) and state not in QUIET_STATES
        return self.sessions.get(request.cookies.get(COOKIE), time.time(), keep=keep)

    def sign_in(self, response: Response, user: str, role: str) -> None:
        token, _ = self.sessions.new(user, role, time.time())
        response.set_cookie(COOKIE, token, max_age=int(self.sessions.lifetime), httponly=True,
                            samesite="strict", secure=self.tls, path="/")

    def stop_seq(self) -> int | str:
        """The newest stop's number the chair published ("" before the first state)."""
        seq = (self.link.state or {}).get("stop_seq")
        return seq if isinstance(seq, int) else ""

    def stop_token(self) -> str:
        """A STOP token for a page: a fresh nonce and its HMAC under :attr:`secret`."""
        nonce = secrets.token_urlsafe(12)
        return f"{nonce}.{self._mac(nonce)}"

    def stop_token_ok(self, token: str) -> bool:
        nonce, _, mac = token.partition(".")
        return bool(nonce and mac) and hmac.compare_digest(mac, self._mac(nonce))

    def _mac(self, nonce: str) -> str:
        return hmac.new(self.secret, b"stop:" + nonce.encode(), hashlib.sha256).hexdigest()[:32]

    async def check(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A scrypt check on the bounded pool; None at once if too many wait already."""
        with self._pending_lock:
            if self._pending[0] >= PENDING_CHECKS:
                return None
            self._pending[0] += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.checks, fn, *args)
        finally:
            with self._pending_lock:
                self._pending[0] -= 1

    def view(self) -> dict[str, Any]:
        """The chair's state for a browser, in words (:func:`relaxd.station.words.present`);
        a child not yet known by name is asked for once."""
        view = self._ended(self.link.view())
        child = view.get("child")
        if isinstance(child, str) and child not in self.names and child not in self._asked:
            self._asked.add(child)
            asyncio.get_running_loop().create_task(self.load_names())
        return words.present(view, self.names, self._alert_children)

    def _ended(self, view: dict[str, Any]) -> dict[str, Any]:
        """The chair goes from a session's end straight to waiting for the next Start: while it
        waits, the view says the session ended (``just_ended``) and whose it was."""
        kind = view.get("state")
        if kind in ("fading", "ended"):
            self._ending = view.get("child") or ""
        elif kind != "idle":
            self._ending = None
        if self._ending is None or kind not in ("idle", "ended"):
            return view
        return {**view, "just_ended": True, "child": view.get("child") or self._ending or None}

    async def load_names(self) -> list[dict[str, Any]]:
        """The chair's children (id, name, consent) from the daemon; the names kept.
        ChairUnreachable, or ValueError with the daemon's refusal."""
        answer = await self.link.command("children")
        if not answer.get("ok"):
            raise ValueError(str(answer.get("error", "refused")))
        children = [c for c in answer.get("children", []) if isinstance(c, dict)]
        self.names.update({str(c.get("id")): str(c.get("name")) for c in children})
        return children

    def name_of(self, child: Any) -> str:
        return self.names.get(child, "the child") if isinstance(child, str) else "the child"

    async def ack_own_stop(self, by: str, seq: int, since: float) -> None:
        """A STOP pressed on the chair's own display needs no acknowledgement there: its alert
        is acknowledged for the one who pressed it (who is at the chair), once it appears."""
        seen, deadline = -1, time.monotonic() + OWN_STOP_WAIT_S
        while time.monotonic() < deadline:
            seen = await self.link.changed(seen, 0.5)
            state = self.link.state or {}
            if (state.get("stop_seq") or 0) > seq:
                return  # a newer stop: its alert is for whoever sees it
            for alert in state.get("alerts") or []:
                if (not alert.get("acknowledged") and alert.get("reason") == "estop"
                        and f"station stop by {by})" in str(alert.get("detail"))
                        and float(alert.get("at") or 0) >= since - 2):
                    with contextlib.suppress(ChairUnreachable):
                        await self.link.command("ack", alert=alert["id"],
                                                by=f"{by} (pressed STOP at the chair)")
                    return

    def record(self, action: str, detail: str, by: str) -> None:
        """One line in the station's audit log (the Audit page shows it)."""
        try:
            audit.record(self.state_dir, action, detail, by=by)
        except Exception as exc:  # noqa: BLE001 - never in the way of what it records
            log.warning("audit: %s %s by %s not recorded: %s", action, detail, by, exc)


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def same_origin(request: Request, origin_only: bool = False) -> bool:
    """The request comes from a page of this station (Origin, else Referer unless
    ``origin_only``)."""
    origin = request.headers.get("origin")
    if not origin and not origin_only:
        origin = request.headers.get("referer")
    if not origin:
        return False
    got, ours = urlsplit(origin), request.url
    return (got.scheme, got.netloc) == (ours.scheme, ours.netloc)


def _unauthorised(request: Request) -> JSONResponse:
    """401: a plain "sign in first", or that the browser's sign-in has ended."""
    if request.cookies.get(COOKIE):
        return _error(401, EXPIRED, expired=True)
    return _error(401, "sign in first")


def _csrf_ok(request: Request, signed: SignedIn) -> bool:
    sent = request.headers.get("x-csrf-token", "")
    return bool(sent) and hmac.compare_digest(sent, signed.csrf) and same_origin(request)


def guarded(role: str | None = None, change: bool = False) -> Callable[[Handler], Handler]:
    """Sign-in (401), CSRF and same origin for changes (403), role (403), for a route."""
    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            station: Station = request.app.state.station
            signed = station.signed_in(request)
            if signed is None:
                if request.url.path.startswith("/api/"):
                    return _unauthorised(request)
                return RedirectResponse("/login", status_code=303)
            if change and not _csrf_ok(request, signed):
                return _error(403, "missing or wrong CSRF token, or not from this station")
            if role is not None and signed.role != role:
                return _error(403, f"only a {role} may do this")
            request.state.user = signed
            return await handler(request)
        return endpoint
    return wrap


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object (its size capped by guard.BodyLimit); ValueError with a
    one-line reason."""
    body = await request.body()
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


async def login_page(request: Request, error: str = "", status: int = 200,
                     wait: float = 0.0) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    station: Station = request.app.state.station
    local = is_local(request)
    response = templates.TemplateResponse(request, "login.html", {
        "error": error, "pin": local, "stop_token": station.stop_token() if local else "",
        "stop_seq": station.stop_seq(), "wait": math.ceil(wait)}, status_code=status)
    if wait:
        response.headers["Retry-After"] = str(math.ceil(wait))
    return response


def _too_many(wait: float) -> str:
    return f"Too many tries: wait {math.ceil(wait)} s, then try again."


async def login(request: Request) -> Response:
    """Sign in with the PIN (from the chair itself) or a user name and password. Every try
    counts (as a failure until it succeeds) before the check, so tries sent in parallel are
    held back too; each wait grows (429 with how long). An empty PIN, name or password is
    refused (400) without a check, and not counted."""
    station: Station = request.app.state.station
    address = request.client.host if request.client else "?"
    if not same_origin(request):
        return await login_page(request, "Sign in from the station's own page.", 403)
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace"),
                                          keep_blank_values=True).items()}
    pin = form.get("pin") if is_local(request) else None
    if pin == "" or ("pin" not in form and not (form.get("username") and form.get("password"))):
        return await login_page(request, "Type the PIN, or a name and password, first.", 400)
    limiter = station.pin_wait if pin else station.limiter
    wait = limiter.begin(address)
    if wait:
        return await login_page(request, _too_many(wait), 429, wait)
    role, user = None, form.get("username", "")
    if pin:
        role, user = ("caregiver" if await station.check(station.users.check_pin, pin)
                      else None), "kiosk"
    elif user:
        role = await station.check(station.users.check_password, user, form.get("password", ""))
    if role is None:
        return await login_page(request, "Wrong PIN, name or password.", 401)
    limiter.succeeded(address)
    response = RedirectResponse("/", status_code=303)
    station.sign_in(response, user, role)
    return response


async def logout(request: Request) -> Response:
    """Sign out: only from this station's own page (another website's request changes
    nothing, the cookie included)."""
    station: Station = request.app.state.station
    if not same_origin(request):
        return PlainTextResponse("Sign out from the station's own page.", status_code=403)
    station.sessions.drop(request.cookies.get(COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


async def index(request: Request) -> Response:
    """The station (signed in), the sign-in link (``?token=``), or the sign-in page."""
    station: Station = request.app.state.station
    token = request.query_params.get("token")
    if token is not None:
        return await _link_sign_in(request, station, token)
    signed = station.signed_in(request)
    if signed is None:
        return RedirectResponse("/login", status_code=303)
    templates: Jinja2Templates = request.app.state.templates
    scenarios = _scenario_list(station) if signed.role == "therapist" else []
    return templates.TemplateResponse(request, "index.html", {
        "user": signed, "scenarios": scenarios, "stop_token": station.stop_token(),
        "stop_seq": station.stop_seq(), "kiosk": is_local(request)})


async def _link_sign_in(request: Request, station: Station, token: str) -> Response:
    address = request.client.host if request.client else "?"
    wait = station.limiter.begin(address)
    if wait:
        return await login_page(request, _too_many(wait), 429, wait)
    if station.token and hmac.compare_digest(token, station.token):
        station.limiter.succeeded(address)
        response = RedirectResponse("/", status_code=303)
        station.sign_in(response, "technician", "therapist")
        return response
    return await login_page(request, "That sign-in link is not valid.", 401)


async def _off_loop(fn: Callable[..., Any], *args: Any) -> Any:
    """Blocking work (files, the session records) in a thread, so live updates go on."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


# --- the chair ---------------------------------------------------------------------------------

@guarded()
async def api_state(request: Request) -> Response:
    return JSONResponse(request.app.state.station.view())


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
            yield f"data: {json.dumps(station.view(), separators=(',', ':'))}\n\n"
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


async def api_stop(request: Request) -> Response:
    """STOP: signed in (CSRF, same origin), or on the chair's own display without a sign-in
    (loopback, this station's ``Origin`` and the page's STOP token; else 403). ``for_stop``:
    a retry of a STOP pressed when stop number N was the newest; the chair answers it
    ``already`` only while a newer stop still holds the chair, and carries it out otherwise
    (a session started since is stopped: in doubt, stop). Every STOP
    is in the audit log, carried out or not."""
    station: Station = request.app.state.station
    signed = station.signed_in(request)
    if signed is not None and _csrf_ok(request, signed):
        by = signed.user
    elif is_local(request):
        if not (same_origin(request, origin_only=True)
                and station.stop_token_ok(request.headers.get("x-stop-token", ""))):
            return _error(403, "STOP from the chair's display needs its page's token and origin")
        by = "chair display"
    elif signed is None:
        return _unauthorised(request)
    else:
        return _error(403, "missing or wrong CSRF token, or not from this station")
    try:
        body = await json_body(request)
    except ValueError as exc:
        return _error(400, str(exc))
    for_stop = body.get("for_stop")
    args = {"for_stop": for_stop} if isinstance(for_stop, int) and for_stop >= 0 else {}
    return await _stop(station, by, args, at_chair=is_local(request))


async def _stop(station: Station, by: str, args: dict[str, Any],
                at_chair: bool = False) -> Response:
    retry = f" (retry of a STOP pressed at stop number {args['for_stop']})" if args else ""
    try:
        answer = await station.link.command("stop", by=by, **args)
    except ChairUnreachable as exc:
        station.record("STOP", f"did NOT reach the chair{retry}: {exc}", f"{by} (station)")
        return _error(503, str(exc))
    if not answer.get("ok"):
        station.record("STOP", f"refused{retry}: {answer.get('error')}", f"{by} (station)")
        return _error(409, str(answer.get("error", "refused")))
    if at_chair and not answer.get("already") and isinstance(answer.get("stop_seq"), int):
        asyncio.get_running_loop().create_task(
            station.ack_own_stop(by, answer["stop_seq"], time.time()))
    done = "already stopped by" if answer.get("already") else "carried out:"
    station.record("STOP", f"{done} stop number {answer.get('stop_seq')}{retry}", f"{by} (station)")
    return JSONResponse({k: v for k, v in answer.items() if k != "id"})


@guarded(change=True)
async def api_start(request: Request) -> Response:
    """Start, from the chair's own display; from a tablet on the network only with
    ``ui.network_start`` (whoever starts a session must be able to see the child)."""
    station: Station = request.app.state.station
    if not is_local(request) and not station.network_start:
        return _error(403, "Start is only at the chair on this installation (ui.network_start "
                           "is off): whoever starts must see the child. STOP works here.")
    try:
        body = await json_body(request)
    except ValueError as exc:
        return _error(400, str(exc))
    args = _start_args(body, request)
    response = await _command(request, "start", **args)
    if response.status_code == 409:
        error = json.loads(bytes(response.body))["error"]
        return _error(409, words.refusal_words(error, args["child"],
                                               station.name_of(args["child"])), detail=error)
    return response


@guarded(change=True)
async def api_manual(request: Request) -> Response:
    """Manual mode: one step up or down; at a limit the answer says so ("at Ada's maximum")."""
    station: Station = request.app.state.station
    try:
        body = await json_body(request)
    except ValueError as exc:
        return _error(400, str(exc))
    steps = 1 if body.get("steps") == 1 else -1
    before, seen = (station.link.state or {}).get("intensity"), station.link.version
    response = await _command(request, "nudge", steps=steps)
    if response.status_code != 200:
        return response
    for _ in range(MANUAL_STATES):  # the state after the step (published before the answer)
        seen = await station.link.changed(seen, 0.5)
    state = station.link.state or {}
    after = state.get("intensity")
    return JSONResponse({**json.loads(bytes(response.body)), "intensity": after,
                         "words": words.limit_words(steps, before, after,
                                                    station.name_of(state.get("child")))})


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
        return JSONResponse(await station.load_names())
    except ChairUnreachable as exc:
        return _error(503, str(exc))
    except ValueError as exc:
        return _error(409, str(exc))


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


@guarded(change=True)
async def api_ack_all(request: Request) -> Response:
    """Acknowledge every alert still open (each one as the caregiver would, one by one)."""
    station: Station = request.app.state.station
    open_ids = [a["id"] for a in (station.link.state or {}).get("alerts") or []
                if not a.get("acknowledged")]
    for alert_id in open_ids:
        try:
            answer = await station.link.command("ack", alert=alert_id,
                                                by=request.state.user.user)
        except ChairUnreachable as exc:
            return _error(503, str(exc))
        if not answer.get("ok"):
            return _error(409, str(answer.get("error", "refused")))
    return JSONResponse({"ok": True, "acknowledged": open_ids})


def _ack_args(_: dict[str, Any], request: Request) -> dict[str, Any]:
    return {"alert": request.path_params["alert"]}


# --- history ---------------------------------------------------------------------------------

@guarded()
async def api_sessions(request: Request) -> Response:
    from relaxd.records.sessions import list_sessions

    station: Station = request.app.state.station
    rows = [r.__dict__ for r in reversed(await _off_loop(list_sessions, station.records))]
    state = (station.link.state or {}).get("state")
    playing = state in words.PLAYING
    if rows and not rows[0]["ended"] and state == "idle":
        rows = rows[1:]  # the chair waiting for the next Start: no session yet
    return JSONResponse([{
        **row, "child_name": station.names.get(row["child"]) if row["child"] else None,
        "running": (running := playing and i == 0 and not row["ended"]),
        "outcome": words.session_outcome(row, running)} for i, row in enumerate(rows[:200])])


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
    """Validate an uploaded scenario (``{"filename", "text", "install", "replace"}``):
    FILE:LINE:COL problems (422), or ok; installed when asked and valid. One that would take
    the place of a bundled scenario (same file or same name) is refused (409) unless
    ``replace`` confirms it; both are audited."""
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
    bundled = await _off_loop(_bundled_clash, station, name, title)
    if bundled and not body.get("replace"):
        return _error(409, f"{name} ({title}) would replace the bundled scenario {bundled}: "
                           "confirm the replacement to install it", replaces=bundled)
    target = station.scenario_dirs[0] / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    action = "replace bundled scenario" if bundled else "install scenario"
    await _audit(request, action, f"{name}" + (f" (in place of {bundled})" if bundled else ""))
    return JSONResponse({"ok": True, "name": title, "installed": True, "replaced": bundled})


@guarded(role="therapist", change=True)
async def api_remove_scenario(request: Request) -> Response:
    """Remove a scenario installed from the station (a bundled one cannot be)."""
    station: Station = request.app.state.station
    try:
        name = _upload_name(request.path_params["name"] + ".yaml")
    except ValueError as exc:
        return _error(400, str(exc))
    target = station.scenario_dirs[0] / name
    if not target.is_file():
        return _error(404, f"{name} was not installed from the station (bundled ones stay)")
    target.unlink()
    await _audit(request, "remove scenario", name)
    return JSONResponse({"ok": True, "removed": name})


def _bundled_clash(station: Station, filename: str, title: str) -> str | None:
    """The bundled scenario an upload would take the place of: one that answers to the same
    name as the upload's file or title, compared as the chair looks scenarios up
    (:func:`scenario_key`: case-insensitive)."""
    from relaxd.control.scenario import load_scenario
    from relaxd.core.errors import RelaxdError

    ours = {scenario_key(filename), scenario_key(title)} - {""}
    for folder in station.scenario_dirs[1:]:
        for stem, path in scenario_files([folder]).items():
            try:
                theirs = {scenario_key(stem), scenario_key(load_scenario(path).name)}
            except RelaxdError:
                theirs = {scenario_key(stem)}
            if ours & theirs:
                return stem
    return None


async def _audit(request: Request, action: str, detail: str) -> None:
    """A therapist's change in the daemon's audit log (the station's own if it is away)."""
    station: Station = request.app.state.station
    by = request.state.user.user
    try:
        await station.link.command("audit", action=action, detail=detail, by=by)
    except ChairUnreachable:
        station.record(action, detail, f"{by} (station)")


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
async def api_about(request: Request) -> Response:
    """The station's certificate for tablets (SHA-256 fingerprint, names, expiry), to check
    a tablet's certificate warning against; none where the station has no network listener."""
    from relaxd.core.errors import RelaxdError
    from relaxd.station import cert

    station: Station = request.app.state.station
    if station.certificate is None:
        return JSONResponse({"certificate": None})
    try:
        info = await _off_loop(cert.read, station.certificate)
    except RelaxdError as exc:
        return JSONResponse({"certificate": None, "error": str(exc)})
    return JSONResponse({"certificate": {
        "fingerprint": info.fingerprint, "names": list(info.names),
        "expires": info.not_after.isoformat(timespec="seconds")}})


@guarded()
async def api_unknown(request: Request) -> Response:
    return _error(404, "no such route")


# --- the application -------------------------------------------------------------------------

def create_app(station: Station, loopback_port: int | None = None) -> Starlette:
    """The station's application; ``loopback_port``: the chair display's listener, which
    answers only to its own names (:class:`relaxd.station.guard.LoopbackHosts`)."""
    post = ["POST"]
    routes = [
        Route("/", index), Route("/login", login_page), Route("/login", login, methods=post),
        Route("/logout", logout, methods=post),
        Route("/api/state", api_state), Route("/api/events", api_events),
        Route("/api/stop", api_stop, methods=post),
        Route("/api/start", api_start, methods=post),
        Route("/api/alerts/ack-all", api_ack_all, methods=post),
        Route("/api/alerts/{alert:int}/ack", chair_command("ack", args=_ack_args), methods=post),
        Route("/api/calmer", chair_command("calmer"), methods=post),
        Route("/api/hold", chair_command("hold", args=lambda b, _: {"on": bool(b.get("on"))}),
              methods=post),
        Route("/api/end-gently", chair_command("end_gently"), methods=post),
        Route("/api/manual", api_manual, methods=post),
        Route("/api/about", api_about),
        Route("/api/observe", chair_command(
            "observe", args=lambda b, _: {"what": str(b.get("what") or "")}), methods=post),
        Route("/api/children", api_children),
        Route("/api/children/{child}/auto", api_recommend),
        Route("/api/sessions", api_sessions),
        Route("/api/sessions/{id:int}", api_session),
        Route("/api/sessions/{id:int}.csv", api_session_csv),
        Route("/api/scenarios", api_scenarios), Route("/api/scenarios", api_upload, methods=post),
        Route("/api/scenarios/{name}", api_scenario),
        Route("/api/scenarios/{name}", api_remove_scenario, methods=["DELETE"]),
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
                    middleware=[Middleware(SecurityHeaders), Middleware(BodyLimit),
                                Middleware(LoopbackHosts, port=loopback_port)])
    app.state.station = station
    app.state.templates = Jinja2Templates(directory=str(HERE / "templates"))
    return app
