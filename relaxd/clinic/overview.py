"""The overview's view of the clinic: every chair, every alert, the session summaries.

:class:`Overview` follows ``relaxd/+/...`` on the broker (a session the broker keeps for it, so
what came while it was away still arrives), keeps each chair's status, state and alerts in
memory, stores the session summaries and the alerts in its own SQLite file, and sends the
commands from afar, each waiting for the chair's reply. It never shows a child's name: the
chairs send ids only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relaxd.clinic import mqtt, topics
from relaxd.clinic.settings import BrokerAddress, Credentials, Timing

log = logging.getLogger(__name__)

DB_NAME = "overview.sqlite"
#: How long the overview waits for a chair's reply to a command (the bridge waits up to 8 s
#: for its daemon).
REPLY_WAIT_S = 12.0
RECENT_ALERTS = 200
#: The largest alert id stored (SQLite's INTEGER is 64-bit).
LARGEST_ID = 2 ** 63 - 1
#: Why an overview whose broker account may not publish commands (a viewer's) sends none.
READ_ONLY = ("this overview signs in to the broker as a read-only viewer: it sends no "
             "commands (go to the chair, or use the desk's overview)")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, chair TEXT NOT NULL, received REAL NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    chair TEXT NOT NULL, alert INTEGER, at REAL, received REAL NOT NULL, data TEXT NOT NULL,
    UNIQUE (chair, alert, at));
"""


@dataclass
class Chair:
    """One chair as last heard: ``heard`` is when its state came (this machine's clock)."""

    status: dict[str, Any] | None = None
    state: dict[str, Any] | None = None
    heard: float | None = None
    alerts: list[dict[str, Any]] | None = None


class Overview:
    """The clinic's chairs through the broker, and a way to send them commands."""

    def __init__(self, broker: BrokerAddress, credentials: Credentials, state_dir: Path,
                 name: str = "desk", timing: Timing | None = None) -> None:
        """``name`` names this overview's connection; its presence is its broker account's
        (``relaxd/overview/<user>/status``, the only one the broker lets it write)."""
        self.broker, self.credentials, self.name = broker, credentials, name
        self.timing = timing or Timing()
        state_dir.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(state_dir / DB_NAME, check_same_thread=False)
        self.db.executescript(_SCHEMA)
        self.chairs: dict[str, Chair] = {}
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_ALERTS)
        self.connected = False
        #: Whether the broker lets this account send commands (None: not known yet).
        self.may_command: bool | None = None
        self.version = 0
        self._changed = asyncio.Event()
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._client: Any = None
        self._task: asyncio.Task | None = None
        self.recent.extend(self._stored_alerts())

    # --- the broker --------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _follow(self) -> None:
        backoff = mqtt.Backoff()
        while True:
            try:
                await self._connected_session(backoff)
            except mqtt.MqttError as exc:
                log.warning("broker %s: %s", self.broker, exc)
            except Exception:  # noqa: BLE001 - the desk must never go blind without warning
                log.exception("following %s failed: connecting again", self.broker)
            self._client = None
            if self.connected:
                self.connected = False
                self._touch()
            await asyncio.sleep(backoff.delay())

    async def _connected_session(self, backoff: mqtt.Backoff) -> None:
        """One connection: its presence and heartbeat (an account that may send commands; a
        viewer's writes nothing), every chair's topics, and each message as it comes."""
        self.may_command = await asyncio.to_thread(
            mqtt.may_publish, self.broker, self.credentials,
            f"relaxd-overview-{self.name}-probe", timeout=self.timing.broker_timeout_s)
        if self.may_command is None:
            raise mqtt.MqttError("the broker did not answer")
        status = topics.overview_status(self.credentials.username or self.name)
        will = (status, {"online": False}) if self.may_command else None
        async with mqtt.client(self.broker, self.credentials, f"relaxd-overview-{self.name}",
                               will, keep_session=True, timing=self.timing) as client:
            for leaf in (topics.STATUS, topics.STATE, topics.ALERTS, topics.ALERT,
                         topics.SESSION, topics.REPLY):
                await client.subscribe(f"{topics.PREFIX}/+/{leaf}", qos=1,
                                       timeout=self.timing.broker_timeout_s)
            self._client, self.connected = client, True
            backoff.reset()
            self._touch()
            log.info("connected to %s", self.broker)
            await mqtt.until_one_fails(self._messages(client),
                                       *([self._presence(client, status)] if will is not None else []))

    async def _messages(self, client: Any) -> None:
        async for message in client.messages:
            self._receive_safely(str(message.topic), bytes(message.payload or b""))

    async def _presence(self, client: Any, status: str) -> None:
        """Online, and the desk's clock, every heartbeat (bridges learn its clock from it)."""
        while True:
            await client.publish(status, topics.dumps({"online": True, "at": time.time()}),
                                 qos=1, retain=True, timeout=self.timing.broker_timeout_s)
            await asyncio.sleep(self.timing.heartbeat_s)

    def _receive_safely(self, name: str, payload: bytes) -> None:
        try:
            self.receive(name, payload)
        except Exception:  # noqa: BLE001 - one chair's message never blinds the desk
            log.exception("a message on %s dropped", name)

    # --- what comes in -------------------------------------------------------------------------

    def receive(self, name: str, payload: bytes, now: float | None = None) -> None:
        """One message from the broker; one that is not what its topic carries is dropped."""
        where = topics.split_topic(name)
        message = topics.loads(payload)
        if where is None or message is None:
            return
        chair_id, leaf = where
        if leaf == topics.REPLY:
            future = self._replies.get(str(message.get("id")))
            if future is not None and not future.done():
                future.set_result(message)
            return
        if leaf not in (topics.STATUS, topics.STATE, topics.ALERTS, topics.ALERT, topics.SESSION):
            return
        chair = self.chairs.setdefault(chair_id, Chair())
        if leaf == topics.STATUS:
            chair.status = message
        elif leaf == topics.STATE:
            chair.state, chair.heard = message, time.monotonic() if now is None else now
        elif leaf == topics.ALERTS:
            listed = message.get("alerts")
            chair.alerts = [a for a in listed if _alert_ok(a)] if isinstance(listed, list) else []
            for alert in chair.alerts:
                self._keep_alert(chair_id, alert)
        elif leaf == topics.ALERT:
            if _alert_ok(message):
                self._keep_alert(chair_id, message)
        else:
            self._keep_session(chair_id, message)
        self._touch()

    def _keep_alert(self, chair: str, alert: dict[str, Any]) -> None:
        alert = {**alert, "chair": chair}
        try:
            cur = self.db.execute(
                "INSERT OR IGNORE INTO alerts (chair, alert, at, received, data) "
                "VALUES (?, ?, ?, ?, ?)", (chair, alert.get("id"), alert.get("at"), time.time(),
                                           json.dumps(alert, allow_nan=False)))
            self.db.commit()
        except (sqlite3.Error, OverflowError, ValueError) as exc:
            log.error("cannot store an alert: %s", exc)
            return
        if cur.rowcount:
            self.recent.appendleft(alert)

    def _keep_session(self, chair: str, summary: dict[str, Any]) -> None:
        """Stored once, by its id."""
        if not isinstance(summary.get("id"), str):
            return
        try:
            self.db.execute("INSERT OR IGNORE INTO sessions (id, chair, received, data) "
                            "VALUES (?, ?, ?, ?)", (summary["id"], chair, time.time(),
                                                    json.dumps(summary)))
            self.db.commit()
        except sqlite3.Error as exc:
            log.error("cannot store a session summary: %s", exc)

    def _stored_alerts(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT data FROM alerts ORDER BY received DESC, rowid DESC "
                               "LIMIT ?", (RECENT_ALERTS,)).fetchall()
        return [json.loads(data) for (data,) in rows]

    def sessions(self, chair: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT data FROM sessions WHERE ? IS NULL OR chair = ? ORDER BY received DESC "
            "LIMIT ?", (chair, chair, limit)).fetchall()
        return [json.loads(data) for (data,) in rows]

    def _touch(self) -> None:
        self.version += 1
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def changed(self, seen: int, timeout: float) -> int:
        """Wait (up to ``timeout``) for a view newer than version ``seen``; the version."""
        if self.version == seen:
            try:
                await asyncio.wait_for(self._changed.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        return self.version

    # --- what the screen shows -----------------------------------------------------------------

    def view(self, now: float | None = None) -> dict[str, Any]:
        now = time.monotonic() if now is None else now
        chairs = []
        for chair_id in sorted(self.chairs):
            chair = self.chairs[chair_id]
            state, status = chair.state or {}, chair.status or {}
            chairs.append({"chair": chair_id, "room": status.get("room") or state.get("room"),
                           "tile": topics.tile(chair.status, chair.state, chair.heard, now,
                                               self.timing.heartbeat_s),
                           "state": state, "alerts": chair.alerts or []})
        return {"broker": self.connected, "commands": self.may_command is not False,
                "chairs": chairs, "alerts": list(self.recent)[:50]}

    # --- commands ------------------------------------------------------------------------------

    async def command(self, chair: str, name: str, by: str) -> dict[str, Any]:
        """Send ``name`` to ``chair`` and wait for its reply; ``ok`` False with a reason if it
        cannot be sent or no reply comes."""
        client = self._client
        if self.may_command is False:
            return {"ok": False, "error": READ_ONLY}
        if client is None:
            return {"ok": False, "error": "the broker cannot be reached: the command was not sent"}
        command_id = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[command_id] = future
        try:
            await client.publish(topics.topic(chair, f"{topics.CMD}/{name}"), topics.dumps(
                {"id": command_id, "by": by, "at": time.time(),
                 "desk": self.credentials.username}), qos=1,
                properties=mqtt.command_properties(self.timing.command_lifetime_s),
                timeout=self.timing.broker_timeout_s)
            return await asyncio.wait_for(future, REPLY_WAIT_S)
        except mqtt.MqttError as exc:
            return {"ok": False, "error": f"not sent: {exc}"}
        except asyncio.TimeoutError:
            return {"ok": False, "error": f"no reply from chair {chair} within "
                                          f"{REPLY_WAIT_S:.0f} s: look at the chair"}
        finally:
            self._replies.pop(command_id, None)

    def close(self) -> None:
        self.db.close()


def _alert_ok(alert: Any) -> bool:
    """An alert the overview can store and show: an object whose id is a whole number SQLite
    holds (or none) and whose ``at`` is a number (or none)."""
    if not isinstance(alert, dict):
        return False
    alert_id, at = alert.get("id"), alert.get("at")
    return (alert_id is None or (isinstance(alert_id, int) and not isinstance(alert_id, bool)
                                 and -LARGEST_ID <= alert_id <= LARGEST_ID)) \
        and (at is None or (isinstance(at, (int, float)) and not isinstance(at, bool)
                            and abs(at) <= topics.LATEST_AT))
