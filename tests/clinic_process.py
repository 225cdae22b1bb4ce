"""A real mosquitto with deploy/mosquitto/relaxd.acl, simulated chairs with their bridges, the
overview, and an MQTT watcher, for the clinic's tests and tools/bench_clinic.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ROOT = Path(__file__).resolve().parent.parent
ACL = ROOT / "deploy" / "mosquitto" / "relaxd.acl"
MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists()
                                           else None)
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
OVERVIEW_USER, VIEWER_USER = "overview.desk", "viewer.desk"


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it is true; its value. AssertionError naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """mosquitto on a port of its own, with the deployed ACL and a password a user."""

    def __init__(self, folder: Path, users: list[str]) -> None:
        self.folder, self.port = folder, free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.passwords = {user: f"pw-{user}-{uuid.uuid4().hex[:8]}" for user in users}
        passwd = folder / "passwd"
        passwd.touch(mode=0o600)
        for user, password in self.passwords.items():
            subprocess.run([MOSQUITTO_PASSWD, "-b", str(passwd), user, password], check=True,
                           capture_output=True)
            (folder / f"{user}.pw").write_text(password + "\n")
        user = "root" if os.geteuid() == 0 else ""
        (folder / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous false\n"
            f"password_file {passwd}\nacl_file {ACL}\npersistence false\nlog_dest stderr\n"
            f"log_type error\nlog_type warning\n" + (f"user {user}\n" if user else ""))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def password_file(self, user: str) -> Path:
        return self.folder / f"{user}.pw"

    def start(self) -> None:
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.folder / "mosquitto.conf")],
                                        stdout=subprocess.DEVNULL,
                                        stderr=open(self.folder / "mosquitto.log", "ab"))
        wait_until(self._listening, 10, "mosquitto to listen")

    def _listening(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError("mosquitto exited: " + (self.folder / "mosquitto.log").read_text())
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return True
        except OSError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class Watcher:
    """A paho client on its own thread: every message kept, with the time it came."""

    def __init__(self, broker: Broker, user: str, topics: list[str] | None = None) -> None:
        self.messages: list[tuple[float, str, dict[str, Any] | None, bool]] = []
        self.suback: list[Any] = []
        self._lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}",
                                  protocol=paho.MQTTv5)
        self.client.username_pw_set(user, broker.passwords[user])
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.suback.append(codes)
        connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: connected.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert connected.wait(10), "the watcher did not connect"
        for topic in topics or []:
            self.client.subscribe(topic, qos=1)
        wait_until(lambda: len(self.suback) >= len(topics or []), 10, "the subscriptions")

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            payload = json.loads(message.payload) if message.payload else None
        except ValueError:
            payload = None
        with self._lock:
            self.messages.append((time.monotonic(), message.topic, payload, bool(message.retain)))

    def on(self, topic: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m[2] for m in self.messages if m[1] == topic and m[2] is not None]

    def publish(self, topic: str, message: dict[str, Any], *, retain: bool = False,
                expiry: int | None = 10) -> None:
        properties = Properties(PacketTypes.PUBLISH)
        if expiry is not None:
            properties.MessageExpiryInterval = expiry
        self.client.publish(topic, json.dumps(message), qos=1, retain=retain,
                            properties=properties).wait_for_publish(10)

    def command(self, chair: str, name: str, *, retain: bool = False, expiry: int | None = 10,
                **fields: Any) -> str:
        """A command as the overview sends it (``at`` now unless given; ``at=None``: none)."""
        command_id = uuid.uuid4().hex
        message = {"id": command_id, "by": "test", "at": time.time(), **fields}
        self.publish(f"relaxd/{chair}/cmd/{name}",
                     {k: v for k, v in message.items() if v is not None},
                     retain=retain, expiry=expiry)
        return command_id

    def reply(self, chair: str, command_id: str, timeout: float = 15) -> dict[str, Any]:
        return wait_until(lambda: next((r for r in self.on(f"relaxd/{chair}/reply")
                                        if r.get("id") == command_id), None),
                          timeout, f"chair {chair}'s reply to {command_id}")

    def close(self) -> None:
        """Disconnect first: it wakes the network thread, which then ends at once (a bare
        loop_stop waits out the thread's one-second select)."""
        self.client.disconnect()
        self.client.loop_stop()


class Chair:
    """``relaxd --simulate --ui --bridge URL --chair-id ID`` (its station and bridge too)."""

    def __init__(self, folder: Path, broker: Broker | None, chair_id: str,
                 script: str = "scenarios/moods/station.yaml") -> None:
        """``broker`` None: no bridge beside it (one is started apart, as on the chair)."""
        self.out, self.id = folder / chair_id, chair_id
        bridge = [] if broker is None else [
            "--bridge", broker.url, "--chair-id", chair_id,
            "--bridge-password-file", str(broker.password_file(chair_id))]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "relaxd", "--simulate", "--ui", "--mood-script",
             str(ROOT / script), "--speed", "5", "--out", str(self.out), "--quiet", *bridge],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(folder / f"{chair_id}.log", "ab"))

    def state(self) -> dict[str, Any] | None:
        """The chair's own state, asked over its control socket (None: not up yet)."""
        answer = self._ask({"cmd": "state"})
        return (answer or {}).get("state") or None

    def _ask(self, message: dict[str, Any]) -> dict[str, Any] | None:
        path = self.socket_path()
        if path is None:
            return None
        try:
            answer = ask_socket(path, message, timeout=5)
        except (OSError, ValueError):
            return None
        return answer if isinstance(answer, dict) else None

    def command(self, cmd: str, **args: Any) -> dict[str, Any] | None:
        """One command over the chair's control socket, as its own station sends it; the
        answer (None: the chair cannot be reached)."""
        return self._ask({"cmd": cmd, **args})

    def socket_path(self) -> str | None:
        try:
            return (self.out / "control-socket").read_text().strip() or None
        except OSError:
            return None

    def bridge_pid(self) -> int | None:
        done = subprocess.run(["pgrep", "-f", f"relaxd bridge .*--chair-id {self.id} "],
                              capture_output=True, text=True)
        pids = [int(p) for p in done.stdout.split()]
        mine = [p for p in pids if _parent(p) == self.process.pid]
        return mine[0] if mine else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


class OverviewProcess:
    """``relaxd overview --broker URL --port 0 --link``, signed in with its link."""

    def __init__(self, folder: Path, broker: Broker, user: str = OVERVIEW_USER,
                 extra: tuple[str, ...] = (), name: str = "overview") -> None:
        import httpx

        self.state_dir = folder / name
        self.process = subprocess.Popen(
            [sys.executable, "-m", "relaxd", "overview", "--broker", broker.url, "--user", user,
             "--password-file", str(broker.password_file(user)), "--port", "0", "--link",
             "--name", name.replace(".", "-"), "--state-dir", str(self.state_dir), *extra],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=open(folder / f"{name}.log", "ab"), text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        found = re.match(r"clinic overview: (http://\S+?)/\?token=(\S+)", line)
        assert found, line
        self.url = found.group(1)
        self.link = f"{self.url}/?token={found.group(2)}"  # signs a browser in
        self.http = httpx.Client(base_url=self.url, timeout=20)
        self.http.get(f"/?token={found.group(2)}", follow_redirects=True)
        page = self.http.get("/").text
        self.csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)  # type: ignore[union-attr]

    def view(self) -> dict[str, Any]:
        return self.http.get("/api/overview").json()

    def chair(self, chair_id: str) -> dict[str, Any] | None:
        return next((c for c in self.view()["chairs"] if c["chair"] == chair_id), None)

    def send(self, chair_id: str, command: str) -> Any:
        return self.http.post(f"/api/chairs/{chair_id}/{command}", json={},
                              headers={"X-CSRF-Token": self.csrf, "Origin": self.url})

    def stop(self) -> None:
        """SIGTERM, as systemd stops it: it must be gone well inside the unit's TimeoutStopSec
        (10 s), even with a browser's live view open."""
        self.http.close()
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("the overview did not stop within 5 s of SIGTERM") from None


def ask_socket(path: str, message: dict[str, Any], timeout: float) -> Any:
    """One line to a control socket and its one-line answer, decoded (OSError, ValueError)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)
