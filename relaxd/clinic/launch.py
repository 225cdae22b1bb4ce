"""Starting the bridge beside a simulated chair (``relaxd --simulate --ui --bridge URL``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from relaxd.clinic.settings import check_chair_id, parse_broker
from relaxd.core.errors import RelaxdError
from relaxd.core.options import RunOptions


def spawn(broker: str, chair_id: str, socket_path: Path, records: Path,
          password_file: Path | None = None) -> subprocess.Popen:
    """The chair's bridge in a process of its own, signed in with ``password_file`` (None: the
    bridge's own fallback, ``$RELAXD_BRIDGE_PASSWORD_FILE``); its state in ``records/bridge``."""
    cmd = [sys.executable, "-m", "relaxd", "bridge", "--broker", broker, "--chair-id", chair_id,
           "--room", f"simulated {chair_id}", "--socket", str(socket_path),
           "--records", str(records), "--state-dir", str(records / "bridge")]
    if password_file is not None:
        cmd += ["--password-file", str(password_file.resolve())]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL)


def end(process: subprocess.Popen) -> None:
    """Stop it (SIGTERM, then SIGKILL after 5 s)."""
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def check(options: RunOptions) -> None:
    """``--bridge`` and ``--chair-id``, refused before anything opens: a bridge needs the
    simulated chair's control socket (``--simulate --ui``), a broker URL and a valid id."""
    if options.bridge is None:
        if options.chair_id is not None or options.bridge_password_file is not None:
            raise RelaxdError("--chair-id and --bridge-password-file go with --bridge URL")
        return
    if not options.ui:  # RunOptions refuses it without --simulate
        raise RelaxdError("--bridge needs --simulate --ui (on the chair: relaxd-bridge.service)")
    try:
        parse_broker(options.bridge)
        check_chair_id(options.chair_id or "")
    except ValueError as exc:
        raise RelaxdError(f"--bridge: {exc}") from None
    password = options.bridge_password_file
    if password is not None and not password.is_file():
        raise RelaxdError(f"--bridge-password-file: no such file: {password}")
