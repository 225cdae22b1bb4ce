"""The station's defences against a stranger on the clinic network, below the routes.

- :class:`BodyLimit` (ASGI): every request body is capped before it is read, by its declared
  length (413 at once) and by what actually arrives (a body without a length, chunked, is cut
  at the cap); it must arrive within :data:`BODY_TIMEOUT_S`. The routes get the body whole.
- :class:`LoopbackHosts` (ASGI): the chair display's listener answers only requests for itself
  (``Host`` 127.0.0.1, localhost or [::1] with its port; else 421), so a page of another site
  whose name a DNS rebinding points at 127.0.0.1 never reads a STOP token or tries PINs. The
  network listener is TLS: a browser refuses it under another name.
- :class:`SecurityHeaders` (ASGI): the CSP (no inline script) and friends on every response,
  ``Cache-Control: no-store`` on everything but the static files (the pages carry tokens),
  and HSTS over TLS.
- :func:`guarded_protocol`: uvicorn's HTTP/1.1 protocol with connection limits from TCP accept
  (per address, IPv6 per /64, and in all; when full, the oldest connection still waiting for
  its handshake or header makes room), TLS begun after admission with a short handshake
  deadline, and a deadline for each request's header: connections that never start TLS, or
  send half a header and then nothing, neither fill the station nor use up its open files.
  Each listener has its own limits: the chair's display (loopback) never shares them with the
  network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import threading
from collections import Counter
from typing import Any, Protocol

#: Caps on a request's body, by path (the longest matching prefix); anything else: DEFAULT.
BODY_CAPS = {"/login": 4 * 1024, "/logout": 1024, "/api/scenarios": 256 * 1024}
DEFAULT_BODY_CAP = 16 * 1024
#: A request's whole body must arrive within this.
BODY_TIMEOUT_S = 10.0
#: A connection's request header (the first, or the next on a kept-alive one) must be complete
#: within this (the first: from TCP accept).
HEADER_TIMEOUT_S = 10.0
#: A tablet's TLS handshake must be done within this of TCP accept.
TLS_HANDSHAKE_S = 5.0
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
HSTS = b"max-age=31536000"


def address_key(address: str) -> str:
    """Whom a peer's address stands for, in connection and sign-in limits: an IPv4 address
    itself, an IPv6 address by its /64 (one host on a network with SLAAC may take any
    address in its /64), an IPv4-mapped IPv6 address as its IPv4 one."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def body_cap(path: str) -> int:
    for prefix, cap in BODY_CAPS.items():
        if path == prefix or path.startswith(prefix + "/"):
            return cap
    return DEFAULT_BODY_CAP


async def _reply(send: Any, status: int, text: str) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": ('{"error": "%s"}' % text).encode()})


class BodyLimit:
    """ASGI middleware: the body read here, capped and on a deadline, then handed on whole."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        cap = body_cap(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > cap):
            return await _reply(send, 413, f"request larger than {cap // 1024} KiB")
        try:
            body = await asyncio.wait_for(_read(receive, cap), BODY_TIMEOUT_S)
        except asyncio.TimeoutError:
            return await _reply(send, 408, "the request's body came too slowly")
        if body is None:
            return await _reply(send, 413, f"request larger than {cap // 1024} KiB")
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # the disconnect, when it comes

        await self.app(scope, replay, send)


async def _read(receive: Any, cap: int) -> bytes | None:
    """The body, or None as soon as more than ``cap`` bytes arrived."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(parts)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            return None
        parts.append(chunk)
        if not message.get("more_body"):
            return b"".join(parts)


def loopback_hosts(port: int) -> frozenset[str]:
    """The ``Host`` values of the chair display's listener on ``port`` (lower case)."""
    names = ("127.0.0.1", "localhost", "[::1]")
    return frozenset([f"{n}:{port}" for n in names] + (list(names) if port == 80 else []))


class LoopbackHosts:
    """ASGI middleware: requests that reach the loopback listener on ``port`` must name it in
    ``Host`` (:func:`loopback_hosts`); others are answered 421 at once. Requests to any other
    listener pass."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.app, self.port = app, port
        self.hosts = loopback_hosts(port) if port is not None else frozenset()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.port is not None and self._ours(scope):
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
            if host not in self.hosts:
                return await _reply(send, 421, f"this is 127.0.0.1:{self.port} (localhost): "
                                               "open the station by that name")
        await self.app(scope, receive, send)

    def _ours(self, scope: Any) -> bool:
        server = scope.get("server") or (None, None)
        return server[1] == self.port and _is_loopback(str(server[0]))


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class SecurityHeaders:
    """ASGI middleware: the CSP and friends, no-store, HSTS over TLS (see the module)."""

    HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
               (b"referrer-policy", b"same-origin"), (b"x-frame-options", b"DENY")]

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        static = scope["path"].startswith("/static/")
        tls = scope.get("scheme") == "https"

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + self.HEADERS
                if not static and not any(k == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                if tls:
                    headers.append((b"strict-transport-security", HSTS))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


class Connection(Protocol):
    """What :class:`ConnectionLimit` needs of a connection."""

    def waiting(self) -> bool:
        """Still waiting for its TLS handshake or a request header (a request runs: False)."""

    def drop(self) -> None:
        """End the connection at once."""


class ConnectionLimit:
    """Open connections on one listener, counted from TCP accept (before any TLS handshake)
    by whom they come from (:func:`address_key`): at most ``per_address`` from one and
    ``total`` in all. A connection past either limit takes the place of the oldest one still
    waiting for its handshake or header (from its own address first), so half-open connections
    never shut a tablet out; it is refused only when every connection has a request running."""

    def __init__(self, per_address: int, total: int) -> None:
        self.per_address, self.total = per_address, total
        self._open: dict[Connection, str] = {}  # connection -> its key, oldest first
        self._by_key: Counter[str] = Counter()
        self._lock = threading.Lock()

    def admit(self, conn: Connection, address: str) -> bool:
        key = address_key(address)
        with self._lock:
            victim = None
            if self._by_key[key] >= self.per_address:
                victim = self._oldest_waiting(key)
            elif len(self._open) >= self.total:
                victim = self._oldest_waiting(None)
            if victim is None and (self._by_key[key] >= self.per_address
                                   or len(self._open) >= self.total):
                return False
            if victim is not None:
                self._forget(victim)
            self._open[conn] = key
            self._by_key[key] += 1
        if victim is not None:
            victim.drop()
        return True

    def release(self, conn: Connection) -> None:
        with self._lock:
            if conn in self._open:
                self._forget(conn)

    def count(self, address: str) -> int:
        with self._lock:
            return self._by_key[address_key(address)]

    def _oldest_waiting(self, key: str | None) -> Connection | None:
        for conn, its in self._open.items():
            if (key is None or its == key) and conn.waiting():
                return conn
        return None

    def _forget(self, conn: Connection) -> None:
        key = self._open.pop(conn)
        self._by_key[key] -= 1
        if self._by_key[key] <= 0:
            del self._by_key[key]


#: The base of :class:`GuardedConnection`: uvicorn's H11Protocol comes after it in the class
#: :func:`guarded_protocol` makes (uvicorn is imported only when the station serves).
_ProtocolBase: Any = object


class GuardedConnection(_ProtocolBase):
    """The connection guard mixed in before uvicorn's H11Protocol (see
    :func:`guarded_protocol`, which sets the three class attributes)."""

    guard_limit: ConnectionLimit
    guard_header_s: float
    guard_tls: ssl.SSLContext | None
    _admitted = False
    _header_timer: asyncio.TimerHandle | None = None
    #: The TCP transport while its TLS handshake runs (HTTP has not begun on it).
    _raw: asyncio.Transport | None = None
    _tls_task: asyncio.Task | None = None
    #: What came over TLS in the handshake's last flight, before HTTP began on it.
    _early: list[bytes]

    def connection_made(self, transport: Any) -> None:
        peer = transport.get_extra_info("peername")
        if not self.guard_limit.admit(self, str(peer[0]) if peer else "?"):
            transport.abort()
            return
        self._admitted = True
        if self.guard_tls is None:
            super().connection_made(transport)
        else:
            transport.pause_reading()  # nothing is read before the handshake takes over
            self._raw, self._early = transport, []
            self._tls_task = self.loop.create_task(self._handshake(transport, self.guard_tls))
        self._arm()

    async def _handshake(self, raw: Any, context: ssl.SSLContext) -> None:
        secure = None
        if not raw.is_closing():  # not dropped before its turn came
            try:
                secure = await self.loop.start_tls(raw, self, context, server_side=True,
                                                   ssl_handshake_timeout=TLS_HANDSHAKE_S)
            except Exception:  # noqa: BLE001 - any failed handshake ends the connection
                secure = None
        self._raw = None
        if secure is None or secure.is_closing() or not self._admitted:  # failed, or gone
            (secure or raw).abort()
            self._end()
            return
        super().connection_made(secure)
        early, self._early = b"".join(self._early), []
        if early:
            self.data_received(early)

    def waiting(self) -> bool:
        return self._header_timer is not None

    def drop(self) -> None:
        link = self._raw or self.transport
        if link is not None:
            link.abort()

    def data_received(self, data: bytes) -> None:
        if self.transport is None:  # TLS is up, and its first data came before HTTP began
            self._early.append(data)
            return
        super().data_received(data)
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm()  # a whole header came: the request runs
        else:
            self._arm()  # between requests, or a header still incomplete

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()
        if self.transport is not None:  # HTTP had begun (after TLS, if any)
            super().connection_lost(exc)

    def _end(self) -> None:
        self._disarm()
        if self._admitted:
            self.guard_limit.release(self)
            self._admitted = False

    def _arm(self) -> None:
        link = self._raw or self.transport
        if self._header_timer is None and link is not None and not link.is_closing():
            self._header_timer = self.loop.call_later(self.guard_header_s, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if self.cycle is None or self.cycle.response_complete:
            self.drop()


def guarded_protocol(limit: ConnectionLimit, header_timeout: float = HEADER_TIMEOUT_S,
                     tls: ssl.SSLContext | None = None) -> type:
    """uvicorn's h11 protocol class with ``limit`` applied at TCP accept, a deadline for each
    request header (from accept, so a TLS handshake counts in it), and, with ``tls``, TLS
    begun here after admission with its own deadline (:data:`TLS_HANDSHAKE_S`)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    return type("GuardedH11", (GuardedConnection, H11Protocol), {
        "guard_limit": limit, "guard_header_s": header_timeout, "guard_tls": tls})
