"""Benchmark the caregiver station beside a simulated chair (not a unit test; figures printed).

    python tools/bench_station.py [--seconds 60] [--rate 200]
    python tools/bench_station.py --minutes 60      # memory over time, two browsers connected

Runs ``relaxd --simulate --ui`` at real-time speed and reports: the station's resident memory
(after sign-in and live updates), the page load (the page, its script and stylesheet, and the
first state), the update latency (the daemon's publish -> the browser's server-sent event), and
the loop's tick interval p99 (every state the daemon publishes, straight off the control
socket) quiet and under ``--rate`` requests a second to the station for ``--seconds``.

With ``--attacks``: STOP from the chair's own display (loopback, no sign-in; ten presses,
median and worst) and the station's peak resident memory, with no attack and under each of a
stranger's (from another address, 127.0.0.3): one 300 MB request to ``/login`` (declared, and
chunked without a length), 64 connections that send half a header and then nothing, and 40
wrong passwords sent in parallel. The goal: STOP within 1 s, the station under 100 MB.

With ``--minutes N``: two browsers (each signed in with the link, each with its own cookie)
follow the live updates (server-sent events) for N minutes while the simulated chair plays, a
caregiver starting the next session whenever the chair waits; the station's resident memory is
printed every minute, then at the start and the end, with the growth and its rate per hour
(fitted from the third minute on, after the warm-up).
"""

from __future__ import annotations

import argparse
import contextlib
import http.cookiejar
import json
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from station_process import SimulatedChair  # noqa: E402

SCRIPT = "- {at: 0, mood: neutral}\n- {at: 20, mood: positive}\n"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def tick_intervals(sock_path: str, seconds: float) -> list[float]:
    """Seconds between the daemon's consecutive publishes (one a tick)."""
    ats = []
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(sock_path)
        s.sendall(b'{"cmd": "subscribe"}\n')
        f = s.makefile()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ats.append(json.loads(f.readline())["state"]["at"])
    return [b - a for a, b in zip(ats, ats[1:])]


def p99(values: list[float]) -> float:
    return sorted(values)[int(0.99 * (len(values) - 1))]


def flood(opener, url: str, rate: float, seconds: float, counts: list[int]) -> None:
    end, n = time.monotonic() + seconds, 0
    start = time.monotonic()
    while time.monotonic() < end:
        try:
            opener.open(url, timeout=5).read()
            counts[0] += 1
        except OSError:
            counts[1] += 1
        n += 1
        time.sleep(max(0.0, start + n / rate - time.monotonic()))


# --- memory over time --------------------------------------------------------------------------

class Browser:
    """One browser: its own sign-in (cookie), following /api/events on a thread."""

    def __init__(self, link: str, base: str) -> None:
        jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        page = self.opener.open(link, timeout=10).read().decode()
        self.csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
        self.base, self.events, self.errors = base, 0, 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()

    def _follow(self) -> None:
        while not self.done.is_set():
            try:
                with self.opener.open(self.base + "/api/events", timeout=30) as stream:
                    for line in stream:
                        self.events += line.startswith(b"data: ")
                        if self.done.is_set():
                            return
            except OSError:
                self.errors += 1
                time.sleep(1)

    def start_if_waiting(self) -> None:
        """A caregiver's Start whenever the chair waits (so the chair keeps playing)."""
        state = json.loads(self.opener.open(self.base + "/api/state", timeout=10).read())
        if state.get("waiting") or state.get("state") in ("ended", "estopped"):
            request = urllib.request.Request(
                self.base + "/api/start", method="POST", data=b'{"scenario": "gentle-start"}',
                headers={"Content-Type": "application/json", "X-CSRF-Token": self.csrf,
                         "Origin": self.base})
            try:
                self.opener.open(request, timeout=10).read()
            except OSError:
                pass


def memory_over_time(chair: SimulatedChair, minutes: float) -> None:
    base = f"http://127.0.0.1:{chair.port}"
    browsers = [Browser(chair.link, base) for _ in range(2)]
    pid = chair.station_pid()
    samples = [(0.0, rss_mb(pid))]
    print(f"two browsers connected; station RSS {samples[0][1]:.1f} MB", flush=True)
    began = time.monotonic()
    while (elapsed := time.monotonic() - began) < minutes * 60:
        time.sleep(min(60.0, minutes * 60 - elapsed))
        browsers[0].start_if_waiting()
        samples.append(((time.monotonic() - began) / 60, rss_mb(pid)))
        print(f"  {samples[-1][0]:5.1f} min  {samples[-1][1]:6.1f} MB  "
              f"({sum(b.events for b in browsers)} events)", flush=True)
    for b in browsers:
        b.done.set()
    settled = [(m, r) for m, r in samples if m >= 2] or samples
    slope = _slope(settled) * 60
    print(f"station RSS over {minutes:g} min with two browsers: start {samples[0][1]:.1f} MB, "
          f"end {samples[-1][1]:.1f} MB, growth {samples[-1][1] - samples[0][1]:+.2f} MB; "
          f"from minute 2: {settled[0][1]:.1f} -> {settled[-1][1]:.1f} MB, "
          f"{slope:+.2f} MB/hour fitted; {sum(b.events for b in browsers)} events, "
          f"{sum(b.errors for b in browsers)} reconnects")


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares MB per minute."""
    if len(points) < 2:
        return 0.0
    mx = statistics.fmean(m for m, _ in points)
    my = statistics.fmean(r for _, r in points)
    den = sum((m - mx) ** 2 for m, _ in points)
    return sum((m - mx) * (r - my) for m, r in points) / den if den else 0.0


class PeakRSS:
    """The station's largest resident memory while it is watched (sampled every 20 ms)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._on = pid, rss_mb(pid), True
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while self._on:
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.02)

    def stop(self) -> float:
        self._on = False
        self._thread.join()
        return self.peak


def kiosk_stops(port: int, presses: int = 10) -> list[float]:
    """Milliseconds for each STOP from the chair's own display (its sign-in page's token)."""
    base = f"http://127.0.0.1:{port}"
    page = urllib.request.urlopen(base + "/login", timeout=10).read().decode()
    token = re.search(r'name="stop-token" content="([^"]+)"', page).group(1)
    took = []
    for _ in range(presses):
        request = urllib.request.Request(base + "/api/stop", data=b"{}", method="POST", headers={
            "Origin": base, "X-Stop-Token": token, "Content-Type": "application/json"})
        begun = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                ok = r.status == 200
        except OSError:
            ok = False
        took.append((time.perf_counter() - begun) * 1000 if ok else float("inf"))
        time.sleep(0.2)
    return took


def _stranger(port: int) -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.3", 0))
    s.settimeout(20)
    s.connect(("127.0.0.1", port))
    return s


def big_bodies(port: int, done: threading.Event) -> None:
    """300 MB to /login: declared, then chunked with no length (1 MB chunks)."""
    with _stranger(port) as s:
        s.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 300000000\r\n\r\n")
        with contextlib.suppress(OSError):
            for _ in range(300):
                s.sendall(b"x" * 0x100000)
    with _stranger(port) as s:
        s.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        with contextlib.suppress(OSError):
            for _ in range(300):
                s.sendall(b"100000\r\n" + b"x" * 0x100000 + b"\r\n")
    done.wait()


def slow_headers(port: int, done: threading.Event) -> None:
    """64 connections that send half a header, then nothing, until ``done``."""
    held = []
    for _ in range(64):
        with contextlib.suppress(OSError):
            s = _stranger(port)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            held.append(s)
    done.wait()
    for s in held:
        s.close()


def wrong_passwords(port: int, done: threading.Event) -> None:
    """40 wrong passwords at once."""
    body = b"username=ana&password=wrong-guess"
    request = (b"POST /login HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nOrigin: http://127.0.0.1:%d\r\n"
               b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n"
               b"Connection: close\r\n\r\n%s") % (port, port, len(body), body)

    def one() -> None:
        with contextlib.suppress(OSError), _stranger(port) as s:
            s.sendall(request)
            s.recv(4096)

    threads = [threading.Thread(target=one) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.wait()


def attacks(chair: SimulatedChair) -> None:
    """STOP latency and peak memory with no attack and under each attack."""
    pid = chair.station_pid()
    print(f"{'attack':<28} {'STOP median ms':>15} {'STOP worst ms':>14} {'peak RSS MB':>12}")
    for name, attack in (("none", None), ("300 MB body to /login", big_bodies),
                         ("64 slow connections", slow_headers),
                         ("40 parallel wrong passwords", wrong_passwords)):
        done = threading.Event()
        peak = PeakRSS(pid)
        if attack is not None:
            threading.Thread(target=attack, args=(chair.port, done), daemon=True).start()
            time.sleep(1.0)  # under way
        took = kiosk_stops(chair.port)
        done.set()
        time.sleep(0.5)
        print(f"{name:<28} {statistics.median(took):>15.1f} {max(took):>14.1f} "
              f"{peak.stop():>12.1f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--attacks", action="store_true",
                        help="STOP latency and memory under each attack, then exit")
    parser.add_argument("--minutes", type=float, default=None,
                        help="memory over time: two browsers connected this long")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="bench-", dir="/tmp"))
    if args.attacks:
        chair = SimulatedChair(out, SCRIPT, speed=1.0)
        try:
            attacks(chair)
        finally:
            chair.close()
        return 0
    if args.minutes is not None:
        chair = SimulatedChair(out, SCRIPT, speed=1.0)
        try:
            memory_over_time(chair, args.minutes)
        finally:
            chair.close()
        return 0
    chair = SimulatedChair(out, SCRIPT, speed=1.0)
    try:
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        opener.open(chair.link, timeout=10).read()
        base = f"http://127.0.0.1:{chair.port}"
        loads = []
        for _ in range(20):
            t0 = time.perf_counter()
            for path in ("/", "/static/station.js", "/static/station.css", "/api/state"):
                opener.open(base + path, timeout=10).read()
            loads.append(time.perf_counter() - t0)
        latencies = []
        with opener.open(f"{base}/api/events", timeout=10) as stream:
            for line in stream:
                if line.startswith(b"data: "):
                    latencies.append(time.time() - json.loads(line[6:])["at"])
                if len(latencies) >= 50:
                    break
        sock = _socket_of(chair)
        quiet = tick_intervals(sock, min(20.0, args.seconds))
        counts = [0, 0]
        workers = [threading.Thread(target=flood, args=(opener, f"{base}/api/state",
                                                        args.rate / 4, args.seconds, counts))
                   for _ in range(4)]
        for w in workers:
            w.start()
        loaded = tick_intervals(sock, args.seconds - 1)
        for w in workers:
            w.join()
        station_rss = rss_mb(chair.station_pid())
        print(f"station resident memory: {station_rss:.1f} MB")
        print(f"page load (page + script + stylesheet + state, 20 times): median "
              f"{1000 * statistics.median(loads):.1f} ms, max {1000 * max(loads):.1f} ms")
        print(f"update latency (daemon publish -> SSE event, {len(latencies)}): median "
              f"{1000 * statistics.median(latencies):.1f} ms, max {1000 * max(latencies):.1f} ms")
        print(f"tick interval p99: quiet {1000 * p99(quiet):.1f} ms ({len(quiet)} ticks), "
              f"under {counts[0] / args.seconds:.0f} req/s ({counts[1]} failed) "
              f"{1000 * p99(loaded):.1f} ms ({len(loaded)} ticks); "
              f"change {100 * (p99(loaded) / p99(quiet) - 1):+.1f} %")
    finally:
        chair.close()
    return 0


def _socket_of(chair: SimulatedChair) -> str:
    """The control socket the simulated chair passed to its station (on its command line)."""
    argv = Path(f"/proc/{chair.station_pid()}/cmdline").read_bytes().split(b"\0")
    return argv[argv.index(b"--socket") + 1].decode()


if __name__ == "__main__":
    sys.exit(main())
