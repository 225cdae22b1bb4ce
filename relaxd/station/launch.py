"""Starting the station beside a simulated chair (``relaxd --simulate --ui``)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

#: The sign-in token ``relaxd ui serve --link`` reads (and forgets) from its environment.
TOKEN_ENV = "RELAXD_UI_TOKEN"


def spawn(socket_path: Path, records: Path, port: int, token: str,
          quiet_errors: bool = False) -> subprocess.Popen:
    """``relaxd --simulate --ui``: the station in a process of its own, printing its link."""
    env = {**os.environ, TOKEN_ENV: token, "RELAXD_UI_STATE_DIR": str(records / "station")}
    cmd = [sys.executable, "-m", "relaxd", "ui", "serve", "--socket", str(socket_path),
           "--records", str(records), "--state-dir", str(records / "station"),
           "--listen", "127.0.0.1", "--port", str(port), "--link"]
    return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)


def new_token() -> str:
    return secrets.token_urlsafe(24)
