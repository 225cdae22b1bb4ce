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
- :func:`guarded_protocol`: uvicorn's HTTP/1.1 protocol with a per-address connection limit
  and a deadline for each request's header, so a few connections that send half a header and
  then nothing cannot fill the station. Each listener has its own limits: the chair's display
  (loopback) never shares them with the network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from collections import Counter
from typing import Any

#: Caps on a request's body, by path (the longest matching prefix); anything else: DEFAULT.
BODY_CAPS = {"/login": 4 * 1024, "/logout": 1024, "/api/scenarios": 256 * 1024}
DEFAULT_BODY_CAP = 16 * 1024
#: A request's whole body must arrive within this.
BODY_TIMEOUT_S = 10.0
#: A connection's request header (the first, or the next on a kept-alive one) must be complete
#: within this.
HEADER_TIMEOUT_S = 10.0
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


class ConnectionLimit:
    """Open connections by address on one listener: at most ``per_address`` from one, and
    ``total`` in all."""

    def __init__(self, per_address: int, total: int) -> None:
        self.per_address, self.total = per_address, total
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def admit(self, address: str) -> bool:
        with self._lock:
            if self._open[address] >= self.per_address or sum(self._open.values()) >= self.total:
                return False
            self._open[address] += 1
            return True

    def release(self, address: str) -> None:
        with self._lock:
            self._open[address] -= 1
            if self._open[address] <= 0:
                del self._open[address]

    def count(self, address: str) -> int:
        with self._lock:
            return self._open[address]


def guarded_protocol(limit: ConnectionLimit, header_timeout: float = HEADER_TIMEOUT_S) -> type:
    """uvicorn's h11 protocol class, with ``limit`` and a deadline for each request header."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11(H11Protocol):
        _address: str | None = None
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            address = self.client[0] if self.client else "?"
            if not limit.admit(address):
                transport.abort()  # connection_lost follows
                return
            self._address = address
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.cycle is not None and not self.cycle.response_complete:
                self._disarm()  # a whole header came: the request runs
            else:
                self._arm()  # between requests, or a header still incomplete

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._address is not None:
                limit.release(self._address)
                self._address = None
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._header_timer is None and not self.transport.is_closing():
                self._header_timer = self.loop.call_later(header_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _too_slow(self) -> None:
            self._header_timer = None
            if self.cycle is None or self.cycle.response_complete:
                self.transport.close()

    return GuardedH11
