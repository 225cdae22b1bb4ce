"""A real ``relaxd --simulate --ui`` for the station's process and browser tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"caregiver station: (http://127\.0\.0\.1:(\d+)/\?token=\S+)")


class SimulatedChair:
    """``relaxd --simulate --ui --quiet`` on a mood script; its link, events and station pid."""

    def __init__(self, out: Path, script: str, speed: float = 20.0) -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "moods.yaml").write_text(script)
        self.events = out / "events.jsonl"
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get(
            "PYTHONPATH", "")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "relaxd", "--simulate", "--ui", "--ui-port", "0", "--quiet",
             "--out", str(out), "--mood-script", str(out / "moods.yaml"), "--speed", str(speed),
             "--events", str(self.events)],
            stdout=subprocess.PIPE, stderr=open(out / "stderr.txt", "w"), text=True, env=env,
            cwd=out)
        self.link, self.port = self._read_link()

    def _read_link(self) -> tuple[str, int]:
        found: list[str] = []

        def read() -> None:
            for line in self.proc.stdout:
                found.append(line)
                if LINK.search(line):
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(60)
        for line in found:
            m = LINK.search(line)
            if m:
                return m.group(1), int(m.group(2))
        self.close()
        raise AssertionError(f"no station link printed: {found}")

    def station_pid(self) -> int:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        assert children, "the station's process is not running"
        return int(children[0])

    def read_events(self) -> list[dict]:
        if not self.events.exists():
            return []
        out = []
        for line in self.events.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a line being written
        return out

    def close(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


def wait_for(cond, what: str, timeout: float = 30.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)
