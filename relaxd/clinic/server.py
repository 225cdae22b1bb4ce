"""The clinic overview's web application (Starlette on uvicorn, as the caregiver station).

One page, ``/``: a tile per chair, every alert with the child's id and the room, the session
summaries, and a software stop per chair (not an emergency stop, and drawn unlike one). The
live view comes as server-sent events on ``/api/events``; when the broker is lost the page is
covered by a warning. Accounts, sign-in sessions, the sign-in rate limit, CSRF and same-origin
checks are the station's (:mod:`relaxd.station.auth`, :func:`relaxd.station.server.guarded`):
a ``nurse`` may send the commands from afar, a ``viewer`` only looks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from relaxd.clinic.overview import READ_ONLY, Overview
from relaxd.clinic.topics import REMOTE_COMMANDS, dumps, is_account_name
from relaxd.station.auth import RateLimit, Sessions, SignedIn, UserStore
from relaxd.station.guard import BodyLimit, SecurityHeaders
from relaxd.station.server import guarded, same_origin

HERE = Path(__file__).resolve().parent
COOKIE = "relaxd_overview"
#: Who may do what on the overview: a nurse sends the commands from afar; a viewer only looks.
ROLES = ("nurse", "viewer")
SSE_MIN_INTERVAL_S = 0.2
PARALLEL_CHECKS = 2


class OverviewUsers(UserStore):
    """The overview's accounts: the station's hashed store, with the overview's roles and
    account names (as the broker's commands name their sender)."""

    roles = ROLES
    add_command = "relaxd overview-user NAME --role nurse|viewer"
    name_ok = staticmethod(is_account_name)


@dataclass
class Desk:
    """Everything the routes share (``app.state.station``, as the station's guards expect)."""

    overview: Overview
    users: UserStore
    sessions: Sessions
    token: str | None = None  # the sign-in link's token (simulation and tests)
    tls: bool = False
    limiter: RateLimit = field(default_factory=RateLimit)
    #: At most this many password checks (scrypt) at once; more are refused at once.
    checking: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(PARALLEL_CHECKS))

    async def check_password(self, user: str, password: str) -> str | None:
        """The user's role if the password is right (None: wrong, or too many checks wait)."""
        if self.checking.locked():
            return None
        async with self.checking:
            return await asyncio.to_thread(self.users.check_password, user, password)

    def signed_in(self, request: Request) -> SignedIn | None:
        return self.sessions.get(request.cookies.get(COOKIE), time.time())

    def sign_in(self, response: Response, user: str, role: str) -> None:
        token, _ = self.sessions.new(user, role, time.time())
        response.set_cookie(COOKIE, token, max_age=int(self.sessions.lifetime), httponly=True,
                            samesite="strict", secure=self.tls, path="/")


async def index(request: Request) -> Response:
    """The overview (signed in), the sign-in link (``?token=``), or the sign-in page."""
    desk: Desk = request.app.state.station
    token = request.query_params.get("token")
    if token is not None:
        address = request.client.host if request.client else "?"
        wait = desk.limiter.begin(address)  # counted before the check
        if wait > 0:
            return await login_page(request, f"Too many attempts: wait {wait:.0f} s.", 429)
        if desk.token and hmac.compare_digest(token, desk.token):
            desk.limiter.succeeded(address)
            response = RedirectResponse("/", status_code=303)
            desk.sign_in(response, "technician", "nurse")
            return response
        return await login_page(request, "That sign-in link is not valid.", 401)
    signed = desk.signed_in(request)
    if signed is None:
        return RedirectResponse("/login", status_code=303)
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, "overview.html", {"user": signed})


async def login_page(request: Request, error: str = "", status: int = 200,
                     wait: float = 0.0) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    response = templates.TemplateResponse(request, "login.html", {"error": error},
                                          status_code=status)
    if wait:
        response.headers["Retry-After"] = str(math.ceil(wait))
    return response


async def login(request: Request) -> Response:
    """Sign in with a name and password. Every try counts (as a failure until it succeeds)
    before the check, so tries sent in parallel are held back too (429 with how long)."""
    desk: Desk = request.app.state.station
    if not same_origin(request):
        return await login_page(request, "Sign in from the overview's own page.", 403)
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace"),
                                          keep_blank_values=True).items()}
    address = request.client.host if request.client else "?"
    wait = desk.limiter.begin(address)
    if wait:
        return await login_page(request, f"Too many tries: wait {math.ceil(wait)} s, then try "
                                         "again.", 429, wait)
    user = form.get("username", "")
    role = await desk.check_password(user, form.get("password", "")) if user else None
    if role is None:
        return await login_page(request, "Wrong name or password.", 401)
    desk.limiter.succeeded(address)
    response = RedirectResponse("/", status_code=303)
    desk.sign_in(response, user, role)
    return response


async def logout(request: Request) -> Response:
    desk: Desk = request.app.state.station
    if not same_origin(request):  # another site cannot sign a browser out
        return Response("cross-origin request refused", status_code=403)
    desk.sessions.drop(request.cookies.get(COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@guarded()
async def api_overview(request: Request) -> Response:
    return JSONResponse(request.app.state.station.overview.view())


@guarded()
async def api_events(request: Request) -> Response:
    """Server-sent events: the view on every change (at most 5 a second), and every 2 s (the
    tiles age into ``stale`` with no message at all)."""
    desk: Desk = request.app.state.station
    token = request.cookies.get(COOKIE)

    async def stream() -> Any:
        seen = -1
        while desk.sessions.get(token, time.time()) is not None:
            seen = await desk.overview.changed(seen, 2.0)
            yield f"data: {dumps(desk.overview.view()).decode()}\n\n"
            await asyncio.sleep(SSE_MIN_INTERVAL_S)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@guarded()
async def api_sessions(request: Request) -> Response:
    chair = request.query_params.get("chair") or None
    return JSONResponse({"sessions": request.app.state.station.overview.sessions(chair)})


@guarded(role="nurse", change=True)
async def api_command(request: Request) -> Response:
    """A command from afar to one chair (only those that lower stimulation); the chair's reply."""
    desk: Desk = request.app.state.station
    chair, name = request.path_params["chair"], request.path_params["command"]
    if name not in REMOTE_COMMANDS:
        return JSONResponse({"error": f"{name!r} is not sent from afar"}, status_code=404)
    if chair not in desk.overview.chairs:
        return JSONResponse({"error": f"no chair {chair!r}"}, status_code=404)
    if desk.overview.may_command is False:
        return JSONResponse({"error": READ_ONLY}, status_code=403)
    reply = await desk.overview.command(chair, name, request.state.user.user)
    if not reply.get("ok"):
        return JSONResponse({"error": str(reply.get("error") or "refused")}, status_code=409)
    return JSONResponse({"ok": True})


def create_app(desk: Desk) -> Starlette:
    post = ["POST"]
    routes = [
        Route("/", index), Route("/login", login_page), Route("/login", login, methods=post),
        Route("/logout", logout, methods=post),
        Route("/api/overview", api_overview), Route("/api/events", api_events),
        Route("/api/sessions", api_sessions),
        Route("/api/chairs/{chair}/{command}", api_command, methods=post),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        desk.overview.start()
        yield
        await desk.overview.stop()

    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(SecurityHeaders), Middleware(BodyLimit)])
    app.state.station = desk
    app.state.templates = Jinja2Templates(directory=str(HERE / "templates"))
    return app
