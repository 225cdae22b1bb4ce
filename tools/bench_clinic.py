"""The clinic's figures (kept out of the test suite): alert latency from a chair to the overview
(median, p95), and with N chairs on one broker: messages a second at the broker, the
overview's memory and each bridge's memory.

    python tools/bench_clinic.py                 # 30 chairs, 60 s
    python tools/bench_clinic.py --chairs 4 --seconds 20

Each chair is the real daemon's control socket (relaxd.daemon.server.ControlServer) fed a
state at the loop's 10 Hz with an alert now and then, in one process for all chairs (a whole
simulated chair each would measure the chairs, not the clinic); each has its real bridge
process; the overview is the real ``relaxd overview``; the broker is mosquitto with the
deployed ACL. Latency: from the moment the alert is put in the chair's state to the moment
the overview's own store has it (read over its /api/overview).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from clinic_process import OVERVIEW_USER, Broker, OverviewProcess, Watcher, wait_until  # noqa: E402

from relaxd.daemon.server import ControlServer  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class FakeChairs:
    """N control sockets with a state at 10 Hz each; ``alert(i)`` adds one to chair i."""

    def __init__(self, folder: Path, n: int) -> None:
        self.servers = [ControlServer(folder / f"c{i}.sock", lambda by: 0) for i in range(n)]
        self.alerts: list[list[dict]] = [[] for _ in range(n)]
        self.raised: dict[tuple[int, int], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True)
        self._thread.start()

    def _state(self, i: int, t: float) -> dict:
        return {"t": t, "at": time.time(), "state": "running", "scenario": "Calm blue waves",
                "phase": "settle", "intensity": 0.5 + 0.1 * ((t * 10) % 3),
                "levels": {"light": 0.3, "audio": 0.2, "vibration": 0.1}, "estop": False,
                "latch_causes": [], "stop_seq": 0, "child": f"child{i}",
                "alerts": list(self.alerts[i])}

    def _tick(self) -> None:
        start = time.monotonic()
        while not self._stop.wait(0.1):
            t = time.monotonic() - start
            for i, server in enumerate(self.servers):
                server.publish(self._state(i, t))

    def alert(self, i: int) -> int:
        alert_id = len(self.alerts[i]) + 1
        self.raised[(i, alert_id)] = time.monotonic()
        self.alerts[i].append({"id": alert_id, "t": 0, "at": time.time(), "reason": "halt",
                               "detail": "bench", "acknowledged": False})
        return alert_id

    def close(self) -> None:
        self._stop.set()
        for server in self.servers:
            server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chairs", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-clinic-"))
    ids = [f"c{i}" for i in range(args.chairs)]
    broker = Broker(folder / "broker", ids + [OVERVIEW_USER])
    broker.start()
    chairs = FakeChairs(folder, args.chairs)
    bridges = [subprocess.Popen(
        [sys.executable, "-m", "relaxd", "bridge", "--broker", broker.url, "--chair-id", cid,
         "--room", f"room {cid}", "--password-file", str(broker.password_file(cid)),
         "--socket", str(folder / f"{cid}.sock"), "--state-dir", str(folder / cid)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL) for cid in ids]
    overview = OverviewProcess(folder, broker)
    counter = Watcher(broker, OVERVIEW_USER, ["relaxd/#"])
    try:
        wait_until(lambda: len(overview.view()["chairs"]) == args.chairs, 120, "every chair")
        latencies = measure(chairs, overview, counter, args)
        report(latencies, counter, overview, bridges, args)
    finally:
        counter.close()
        overview.stop()
        for bridge in bridges:
            bridge.terminate()
        chairs.close()
        broker.kill()
    return 0


def measure(chairs: FakeChairs, overview: OverviewProcess, counter: Watcher,
            args: argparse.Namespace) -> list[float]:
    """Alerts one at a time, round-robin over the chairs, for ``args.seconds``."""
    latencies: list[float] = []
    counter.messages.clear()
    end, i = time.monotonic() + args.seconds, 0
    counter.started = time.monotonic()  # type: ignore[attr-defined]
    while time.monotonic() < end:
        chair = i % args.chairs
        alert_id = chairs.alert(chair)
        raised = chairs.raised[(chair, alert_id)]
        wait_until(lambda c=chair, n=alert_id: any(a["chair"] == f"c{c}" and a["id"] == n
                                                   for a in overview.view()["alerts"]),
                   20, "the alert")
        latencies.append((time.monotonic() - raised) * 1000)
        i += 1
    counter.elapsed = time.monotonic() - counter.started  # type: ignore[attr-defined]
    return latencies


def report(latencies: list[float], counter: Watcher, overview: OverviewProcess,
           bridges: list[subprocess.Popen], args: argparse.Namespace) -> None:
    """Latency includes up to the overview page's poll (this tool polls /api/overview)."""
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
    rate = len(counter.messages) / counter.elapsed  # type: ignore[attr-defined]
    bridge_mb = [rss_mb(b.pid) for b in bridges]
    print(f"chairs: {args.chairs}; alerts: {len(latencies)}")
    print(f"alert latency chair -> overview: median {statistics.median(latencies):.0f} ms, "
          f"p95 {p95:.0f} ms")
    print(f"messages a second at the broker (all of relaxd/#, as one subscriber sees them): "
          f"{rate:.1f}")
    print(f"overview memory: {rss_mb(overview.process.pid):.1f} MB resident")
    print(f"bridge memory: median {statistics.median(bridge_mb):.1f} MB, max {max(bridge_mb):.1f} MB")


if __name__ == "__main__":
    sys.exit(main())
