"""``relaxd check``'s line about the caregiver station."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from relaxd.station.settings import UISettings

HERE = Path(__file__).resolve().parent


def station_report(ui: UISettings, simulate: bool = False) -> tuple[bool, str]:
    """(ok, detail): the web stack and its files; on the chair also accounts and the socket."""
    try:
        import jinja2  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        return False, f"the station's web stack is missing ({exc.name}): pip install relaxd"
    missing = [p for p in ("templates/index.html", "templates/login.html", "static/station.js",
                           "static/station.css") if not (HERE / p).is_file()]
    if missing:
        return False, f"the station's files are missing: {', '.join(missing)}"
    if simulate:
        return True, "web stack ready (relaxd --simulate --ui runs it)"
    if not ui.enabled:
        return True, "not installed (ui.enabled off): a session starts when a face is seen"
    where = f"{'https' if ui.tls else 'http'}://{ui.listen}:{ui.port}/"
    return True, f"{where}; {_accounts(ui)}; daemon socket {_socket(ui.socket)}"


def _accounts(ui: UISettings) -> str:
    try:
        data = json.loads(ui.users_file.read_text())
    except (OSError, ValueError):
        return "no accounts yet (relaxd ui set-pin, relaxd ui add-user)"
    users = len(data.get("users") or {})
    return f"{users} account{'s' if users != 1 else ''}, PIN {'set' if data.get('pin') else 'not set'}"


def _socket(path: Path) -> str:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(str(path))
            s.sendall(b'{"cmd": "state"}\n')
            state = json.loads(s.makefile().readline()).get("state") or {}
        return f"answering (chair {state.get('state', '?')})"
    except (OSError, ValueError) as exc:
        return f"not answering ({getattr(exc, 'strerror', None) or exc}; is relaxd running?)"
