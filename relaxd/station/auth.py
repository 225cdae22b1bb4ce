"""Accounts, the kiosk's PIN, sign-in sessions and the sign-in rate limit (standard library only).

PIN and passwords are stored only as scrypt hashes (memory-hard: 16 MiB and about 50 ms a try
on a Pi 4), in ``users.json`` (mode 0600) in the station's state directory::

    {"users": {"ana": {"role": "therapist", "hash": "scrypt$16384$8$1$SALT$HASH"}},
     "pin": "scrypt$..."}
"""

from __future__ import annotations

import base64
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

from relaxd.core.errors import RelaxdError

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
        if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise RelaxdError(f"a user name is letters, digits, '.', '-' and '_', got {name!r}")
        old = data["users"].get(name)
        if role is None and old is None:
            raise RelaxdError(f"no user {name!r} (add it with `relaxd ui add-user`)")
        if role is not None and role not in ROLES:
            raise RelaxdError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if len(password) < 8:
            raise RelaxdError("a password needs at least 8 characters")
        data["users"][name] = {"role": role or old["role"], "hash": hash_secret(password)}
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


class Sessions:
    """Sign-in sessions in memory, by the random token in the browser's cookie."""

    MAX = 200

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self._by_token: dict[str, SignedIn] = {}
        self._lock = threading.Lock()

    def new(self, user: str, role: str, now: float) -> tuple[str, SignedIn]:
        token = secrets.token_urlsafe(32)
        signed = SignedIn(user, role, secrets.token_urlsafe(32), now + self.lifetime)
        with self._lock:
            self._prune(now)
            if len(self._by_token) >= self.MAX:
                oldest = min(self._by_token, key=lambda k: self._by_token[k].expires)
                del self._by_token[oldest]
            self._by_token[token] = signed
        return token, signed

    def get(self, token: str | None, now: float) -> SignedIn | None:
        with self._lock:
            key = token or ""
            signed = self._by_token.get(key)
            if signed is not None and signed.expires <= now:
                del self._by_token[key]
                return None
            return signed

    def drop(self, token: str | None) -> None:
        with self._lock:
            self._by_token.pop(token or "", None)

    def _prune(self, now: float) -> None:
        for token in [k for k, s in self._by_token.items() if s.expires <= now]:
            del self._by_token[token]


class RateLimit:
    """At most ``limit`` failed sign-ins per ``window`` seconds from one address."""

    def __init__(self, limit: int = 5, window: float = 60.0) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[str, deque[float]] = {}

    def blocked(self, address: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        recent = self._failures.get(address)
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        if not recent:
            if recent is not None:  # every failure has aged out
                del self._failures[address]
            return False
        return len(recent) >= self.limit

    def failed(self, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if len(self._failures) > 10_000:  # a flood of addresses: forget the oldest
            self._failures.pop(next(iter(self._failures)))
        self._failures.setdefault(address, deque(maxlen=self.limit * 2)).append(now)
