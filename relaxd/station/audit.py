"""The station's own part of the audit log: account changes made from a shell.

``relaxd ui add-user``, ``passwd`` and ``set-pin`` change the station's accounts without the
daemon (which keeps the rest of the audit log with the session records), so each change is
appended here, one JSON object a line, in the station's state directory beside ``users.json``
(mode 0600): when, who (the shell user, the one behind sudo), what, and for whom; never a
secret. The station's Audit page shows these lines with the daemon's ``audit`` events.
"""

from __future__ import annotations

import getpass
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from relaxd.core.errors import RelaxdError

AUDIT_FILE = "audit.jsonl"
KEPT = 200


def shell_user() -> str:
    """The shell user (the one behind sudo, if any), as the audit log names them."""
    return f"{os.environ.get('SUDO_USER') or getpass.getuser()} (shell)"


def record(state_dir: Path, action: str, detail: str, by: str | None = None) -> None:
    """Append one account change (``action``, e.g. ``add user``; ``detail``: whose)."""
    path = Path(state_dir) / AUDIT_FILE
    entry = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "by": by or shell_user(), "action": action, "detail": detail}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(json.dumps(entry) + "\n")
    except OSError as exc:
        raise RelaxdError(f"the change is made, but the audit log cannot be written: "
                          f"{exc.strerror}", path) from None


def entries(state_dir: Path, limit: int = KEPT) -> list[dict[str, Any]]:
    """The latest account changes, newest first, shaped like the daemon's audit events
    (``session`` and ``t`` empty, ``started`` the time of the change)."""
    try:
        lines = (Path(state_dir) / AUDIT_FILE).read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in reversed(lines[-limit:]):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        out.append({"session": None, "started": e.get("at"), "t": None, "type": "audit",
                    "by": e.get("by"), "action": e.get("action"), "detail": e.get("detail")})
    return out


def merged(daemon: list[dict[str, Any]], accounts: list[dict[str, Any]],
           limit: int = KEPT) -> list[dict[str, Any]]:
    """The daemon's audit events and the account changes, newest first."""
    def when(e: dict[str, Any]) -> float:
        try:
            return datetime.fromisoformat(e["started"]).timestamp() + float(e.get("t") or 0)
        except (KeyError, TypeError, ValueError):
            return 0.0

    return sorted(daemon + accounts, key=when, reverse=True)[:limit]
