"""``relaxd check``'s line about the caregiver station."""

from __future__ import annotations

import json
import socket
from datetime import datetime, timezone
from pathlib import Path

from relaxd.station.settings import UISettings

HERE = Path(__file__).resolve().parent


def station_report(ui: UISettings, simulated: bool = False,
                   daemon_running: bool = True) -> tuple[bool, str]:
    """(ok, detail): the web stack and its files; on the chair also accounts and, while relaxd
    runs (``daemon_running``), that it answers on its control socket."""
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
    if simulated:
        return True, "web stack ready (relaxd --simulate --ui runs it)"
    if not ui.enabled:
        return True, "not installed (ui.enabled off): a session starts when a face is seen"
    if not daemon_running:
        return True, (f"{_accounts(ui)}; relaxd is not running now: run relaxd check again "
                      "while it runs to test that the station's STOP reaches it")
    reached, answer = daemon_answer(ui.socket)
    if not reached:
        return False, (f"the station's STOP cannot reach the chair: {ui.socket} {answer} "
                       "(relaxd not running, or started without ui.enabled: "
                       "sudo systemctl restart relaxd)")
    where = f"{'https' if ui.tls else 'http'}://{ui.listen}:{ui.port}/"
    return True, f"{where}; {_accounts(ui)}; daemon socket {answer}"


def _accounts(ui: UISettings) -> str:
    try:
        data = json.loads(ui.users_file.read_text())
    except (OSError, ValueError):
        return "no accounts yet (relaxd ui set-pin, relaxd ui add-user)"
    users = len(data.get("users") or {})
    return f"{users} account{'s' if users != 1 else ''}, PIN {'set' if data.get('pin') else 'not set'}"


#: How long ``relaxd check`` waits for the daemon's answer on the control socket.
ANSWER_TIMEOUT_S = 2.0


def daemon_answer(path: Path, timeout: float = ANSWER_TIMEOUT_S) -> tuple[bool, str]:
    """(whether the daemon answered ``{"cmd": "state"}`` on its control socket, what it said
    or why not), within ``timeout`` seconds."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            s.sendall(b'{"cmd": "state"}\n')
            line = s.makefile("rb").readline()
    except TimeoutError:
        return False, f"gave no answer within {timeout:g} s"
    except OSError as exc:
        return False, f"cannot be reached ({exc.strerror or exc})"
    try:
        state = json.loads(line)["state"]
    except (ValueError, KeyError, TypeError):
        return False, f"gave no state ({line[:60]!r})"
    return True, f"answering (chair {state.get('state', '?') if isinstance(state, dict) else '?'})"


def certificate_report(ui: UISettings, now: datetime | None = None) -> tuple[bool, str, bool] | None:
    """(ok, detail, warn) about the tablets' TLS certificate: its fingerprint, names and
    expiry, a warning within a month of it; None when the station serves no network."""
    from relaxd.core.errors import RelaxdError
    from relaxd.station import cert

    if not ui.enabled or not ui.network or ui.certificate is None:
        return None
    now = now or datetime.now(timezone.utc)
    try:
        info = cert.read(ui.certificate)
    except RelaxdError as exc:
        return False, str(exc), False
    left = info.days_left(now)
    about = f"SHA-256 {info.fingerprint}; {', '.join(info.names) or 'no subjectAltName'}"
    if left <= 0:
        return False, f"expired {info.not_after:%Y-%m-%d}: sudo relaxd ui renew-cert; {about}", False
    if not any(n.startswith(("DNS:", "IP")) for n in info.names):
        return True, f"no subjectAltName (browsers reject it): sudo relaxd ui renew-cert; {about}", True
    if left <= cert.WARN_DAYS:
        return True, (f"expires in {left:.0f} days ({info.not_after:%Y-%m-%d}): "
                      f"sudo relaxd ui renew-cert; {about}"), True
    return True, f"valid until {info.not_after:%Y-%m-%d}; {about}", False
