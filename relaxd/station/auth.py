"""Accounts, the kiosk's PIN, sign-in sessions and the sign-in rate limit (standard library only).

PIN and passwords are stored only as scrypt hashes (memory-hard: 16 MiB and about 50 ms a try
on a Pi 4), in ``users.json`` (mode 0600) in the station's state directory::

    {"users": {"ana": {"role": "therapist", "hash": "scrypt$16384$8$1$SALT$HASH"}},
     "pin": "scrypt$..."}
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from relaxd.core.errors import RelaxdError
from relaxd.station.guard import address_key

ROLES = ("caregiver", "therapist")
_N, _R, _P = 2 ** 14, 8, 1


def hash_secret(secret: str) -> str:
    """A memory-hard (scrypt) hash of ``secret`` with a fresh salt, as one string."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return "$".join(["scrypt", str(_N), str(_R), str(_P), _b64(salt), _b64(digest)])


def verify_secret(secret: str, stored: str | None) -> bool:
    """True if ``secret`` matches ``stored`` (constant time; False for anything malformed)."""
    try:
        kind, n, r, p, salt, digest = (stored or "").split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(secret.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(_unb64(digest)))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, _unb64(digest))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)


class UserStore:
    """The station's accounts and the kiosk PIN, hashed, in one JSON file."""

    #: The roles an account may have, and the command that adds one (a subclass's own).
    roles: tuple[str, ...] = ROLES
    add_command = "relaxd ui add-user"

    @staticmethod
    def name_ok(name: str) -> bool:
        """A user name: letters, digits, '.', '-' and '_'."""
        return bool(name) and name.replace("-", "").replace("_", "").replace(".", "").isalnum()

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _load(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"users": {}, "pin": None}
        except (OSError, ValueError) as exc:
            raise RelaxdError(f"cannot read the station's accounts: {exc}", self.path) from None
        return {"users": dict(data.get("users") or {}), "pin": data.get("pin")}

    def _save(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        tmp.replace(self.path)

    def set_user(self, name: str, password: str, role: str | None = None) -> None:
        data = self._load()
        if not self.name_ok(name):
            raise RelaxdError(f"a user name is letters, digits, '.', '-' and '_', got {name!r}")
        old = data["users"].get(name)
        if role is None and old is None:
            raise RelaxdError(f"no user {name!r} (add it with `{self.add_command}`)")
        if role is not None and role not in self.roles:
            raise RelaxdError(f"role must be one of {', '.join(self.roles)}, got {role!r}")
        if len(password) < 8:
            raise RelaxdError("a password needs at least 8 characters")
        data["users"][name] = {"role": role or old["role"], "hash": hash_secret(password)}
        self._save(data)

    def remove_user(self, name: str) -> None:
        data = self._load()
        if data["users"].pop(name, None) is None:
            raise RelaxdError(f"no user {name!r} (the users: {', '.join(data['users']) or 'none'})")
        self._save(data)

    def set_pin(self, pin: str) -> None:
        if not (pin.isdigit() and 4 <= len(pin) <= 8):
            raise RelaxdError("the PIN is 4 to 8 digits")
        data = self._load()
        data["pin"] = hash_secret(pin)
        self._save(data)

    def check_password(self, name: str, password: str) -> str | None:
        """The user's role when the password is right, else None."""
        user = self._load()["users"].get(name)
        if user is None:
            hash_secret(password)  # the same work for an unknown name
            return None
        return user.get("role") if verify_secret(password, user.get("hash")) else None

    def check_pin(self, pin: str) -> bool:
        return verify_secret(pin, self._load()["pin"])

    def names(self) -> dict[str, str]:
        return {name: u.get("role", "") for name, u in self._load()["users"].items()}


@dataclass
class SignedIn:
    user: str
    role: str
    csrf: str
    expires: float


def _digest(token: str) -> str:
    """What the sign-in file keeps of a browser's token: its SHA-256, never the token."""
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    """Sign-in sessions by the random token in the browser's cookie, kept in ``path`` (mode
    0600, tokens hashed) so a restart of the station signs nobody out; read again whenever
    another process (``relaxd ui passwd`` or ``remove-user``) changed it. Every read, change
    and write holds an exclusive lock (flock) on the file's folder, so a sign-in ended by one
    process is never written back by another. No ``path``: in memory only."""

    MAX = 200

    def __init__(self, lifetime: float, path: Path | None = None) -> None:
        self.lifetime = lifetime
        self.path = Path(path) if path is not None else None
        self._by_digest: dict[str, SignedIn] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()
        self._reload()

    def new(self, user: str, role: str, now: float) -> tuple[str, SignedIn]:
        token = secrets.token_urlsafe(32)
        signed = SignedIn(user, role, secrets.token_urlsafe(32), now + self.lifetime)
        with self._locked():
            self._prune(now)
            if len(self._by_digest) >= self.MAX:
                oldest = min(self._by_digest, key=lambda k: self._by_digest[k].expires)
                del self._by_digest[oldest]
            self._by_digest[_digest(token)] = signed
            self._save()
        return token, signed

    def get(self, token: str | None, now: float, keep: bool = False) -> SignedIn | None:
        """The sign-in of ``token``, None when unknown or expired; ``keep``: one that would
        expire within the next lifetime is renewed (the chair's display during a session)."""
        if not token:
            return None
        with self._locked():
            key = _digest(token)
            signed = self._by_digest.get(key)
            if signed is not None and keep and signed.expires < now + self.lifetime / 2:
                signed.expires = now + self.lifetime
                self._save()
            if signed is not None and signed.expires <= now:
                del self._by_digest[key]
                self._save()
                return None
            return signed

    def drop(self, token: str | None) -> None:
        with self._locked():
            if self._by_digest.pop(_digest(token or ""), None) is not None:
                self._save()

    def drop_user(self, user: str) -> int:
        """End every sign-in of ``user``; how many there were."""
        with self._locked():
            gone = [k for k, s in self._by_digest.items() if s.user == user]
            for key in gone:
                del self._by_digest[key]
            if gone:
                self._save()
            return len(gone)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """This process's threads, then other processes (flock on the folder: the station and
        root both may open it, and it never changes), then the file read again if changed."""
        with self._lock:
            folder = None
            if self.path is not None:
                try:
                    folder = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
                    fcntl.flock(folder, fcntl.LOCK_EX)
                except OSError:  # no folder yet, or not ours to lock: nothing to race with
                    pass
            try:
                self._reload()
                yield
            finally:
                if folder is not None:
                    os.close(folder)  # and the lock with it

    def _prune(self, now: float) -> None:
        for key in [k for k, s in self._by_digest.items() if s.expires <= now]:
            del self._by_digest[key]

    def _reload(self) -> None:
        """Read the file again if another process changed it (a missing or bad file: none)."""
        if self.path is None:
            return
        try:
            found = self.path.stat()  # each save is a new file: its inode changes too
            stamp: tuple[int, int, int] | None = (found.st_ino, found.st_mtime_ns, found.st_size)
        except OSError:
            stamp = None
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            data = json.loads(self.path.read_text()) if stamp is not None else {}
            self._by_digest = {k: SignedIn(**v) for k, v in data.get("sessions", {}).items()}
        except (OSError, ValueError, TypeError, AttributeError):
            self._by_digest = {}

    def _save(self) -> None:
        if self.path is None:
            return
        data = {"sessions": {k: s.__dict__ for k, s in self._by_digest.items()}}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(data, f)
            tmp.replace(self.path)
            found = self.path.stat()
            self._stamp = (found.st_ino, found.st_mtime_ns, found.st_size)
        except OSError:  # kept in memory: a restart signs these out
            self._stamp = None


class Backoff:
    """A growing wait between failed sign-ins from one address (IPv6: one /64,
    :func:`address_key`), counted *before* the check: ``free`` failures go unhindered, then
    each waits twice as long (``base`` seconds first, at most ``cap``). Failures are forgotten
    after ``forget`` quiet seconds or on a success. ``total``: at most that many failures a
    minute from all addresses together (a stranger with many addresses); beyond it every
    attempt waits until the oldest of them is a minute old."""

    WINDOW_S = 60.0

    def __init__(self, free: int, base: float, cap: float, forget: float | None = None,
                 total: int | None = None) -> None:
        self.free, self.base, self.cap, self.total = free, base, cap, total
        self.forget = 2 * cap if forget is None else forget
        self._seen: dict[str, tuple[int, float]] = {}  # address -> failures, the last one's time
        self._recent: deque[float] = deque()  # when each failure of the last minute began

    def delay(self, failures: int) -> float:
        """How long to wait after ``failures`` failures in a row."""
        if failures < self.free:
            return 0.0
        return min(self.cap, self.base * 2 ** (failures - self.free))

    def wait(self, address: str, now: float | None = None) -> float:
        """Seconds before ``address`` may try again (0: now)."""
        now = time.monotonic() if now is None else now
        key = address_key(address)
        failures, last = self._seen.get(key, (0, now))
        if now - last >= self.forget:
            self._seen.pop(key, None)
            failures = 0
        return max(0.0, last + self.delay(failures) - now, self._wait_in_all(now))

    def _wait_in_all(self, now: float) -> float:
        """Seconds before the failures of the last minute, from all addresses, leave room."""
        while self._recent and now - self._recent[0] >= self.WINDOW_S:
            self._recent.popleft()
        if self.total is None or len(self._recent) < self.total:
            return 0.0
        return self._recent[0] + self.WINDOW_S - now

    def begin(self, address: str, now: float | None = None) -> float:
        """An attempt from ``address``: the wait left (0: go ahead, already counted as a
        failure until :meth:`succeeded` says otherwise)."""
        now = time.monotonic() if now is None else now
        left = self.wait(address, now)
        if left > 0:
            return left
        key = address_key(address)
        if len(self._seen) > 10_000:  # a flood of addresses: forget the oldest
            self._seen.pop(next(iter(self._seen)))
        failures = self._seen.get(key, (0, now))[0]
        self._seen[key] = (failures + 1, now)
        self._recent.append(now)
        return 0.0

    def succeeded(self, address: str) -> None:
        self._seen.pop(address_key(address), None)
        if self._recent:
            self._recent.pop()  # not a failure after all


class RateLimit(Backoff):
    """Sign-ins with a password: five tries from an address, then a minute, two, four ... (at
    most 15); at most :attr:`TOTAL` failures a minute from all addresses together."""

    TOTAL = 30

    def __init__(self) -> None:
        super().__init__(free=5, base=60.0, cap=900.0, total=self.TOTAL)


class PinWait(Backoff):
    """The PIN on the chair's own display (a child may tap it): three tries, then 2 s, 4 s
    ... at most 30 s; STOP stays on that page all along."""

    def __init__(self) -> None:
        super().__init__(free=3, base=2.0, cap=30.0)
