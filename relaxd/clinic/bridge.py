"""One chair's bridge to the clinic's broker (``relaxd bridge``, relaxd-bridge.service).

It follows the daemon over the control socket (:class:`relaxd.station.link.ChairLink`, as the
station does) and publishes the chair's status, state, alerts and session summaries under
``relaxd/<chair>/`` (:mod:`relaxd.clinic.topics`); it takes the commands from afar that only
lower stimulation and answers each on ``reply``. The daemon never waits on it: the socket
drops a client that stops reading, and a dead bridge, or a dead broker, changes nothing at the
chair. While the broker is away the bridge retries with backoff and jitter and keeps only the
latest state; session summaries not yet sent go out later, read again from the chair's records.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

from relaxd.clinic import mqtt, topics
from relaxd.clinic.settings import BrokerAddress, Credentials, Timing, check_chair_id
from relaxd.core.durable import write_durably
from relaxd.records.sessions import list_sessions
from relaxd.station.link import ChairLink, ChairUnreachable

log = logging.getLogger(__name__)

#: How often the chair's records are read for finished sessions not yet sent (and at once after
#: any discrete change of state: a session may just have ended).
SESSION_POLL_S = 10.0
#: The summaries sent again when an overview comes online (it stores each once, by id).
RESEND_SESSIONS = 20
SENT_FILE = "sent-sessions.json"


class Bridge:
    """The chair ``chair_id`` in ``room``, its daemon at ``link``, its records in ``records``
    (None: no summaries), the bridge's own state in ``state_dir``."""

    def __init__(self, link: ChairLink, broker: BrokerAddress, credentials: Credentials, *,
                 chair_id: str, room: str = "", records: Path | None = None,
                 state_dir: Path | None = None, timing: Timing | None = None) -> None:
        self.link, self.broker, self.credentials = link, broker, credentials
        self.timing = timing or Timing()
        self.chair, self.room = check_chair_id(chair_id), room
        self.records, self.state_dir = records, state_dir
        self.seen = topics.SeenIds()
        self.limit = topics.RateLimit()
        self.clocks = topics.DeskClocks()
        self._desks_online: dict[str, bool] = {}
        self.backoff = mqtt.Backoff()
        self._seq = 0
        self._sent = _read_sent(state_dir)
        self._alert_top: int | None = None  # the newest alert told (None: none read yet)
        self._republish = asyncio.Event()
        self.connected = False

    # --- the broker connection ---------------------------------------------------------------

    async def run(self) -> None:
        """Forever: connect, publish and obey; after any broker failure, wait and connect again."""
        self.link.start()
        while True:
            try:
                await self._connected_session()
            except mqtt.MqttError as exc:
                log.warning("broker %s: %s", self.broker, exc)
            except Exception:  # noqa: BLE001 - the bridge keeps trying; the chair is not touched
                log.exception("bridge to %s failed", self.broker)
            self.connected = False
            await asyncio.sleep(self.backoff.delay())

    async def _connected_session(self) -> None:
        will = (topics.topic(self.chair, topics.STATUS), self._status(online=False))
        async with mqtt.client(self.broker, self.credentials, f"relaxd-{self.chair}",
                               will, timing=self.timing) as client:
            await client.subscribe(topics.topic(self.chair, f"{topics.CMD}/+"),
                                   options=_as_published(), timeout=self.timing.broker_timeout_s)
            await client.subscribe(topics.OVERVIEW_STATUS_FILTER, qos=1,
                                   timeout=self.timing.broker_timeout_s)
            # what this bridge knew of the desks came over the last connection: a desk online
            # before a broker restart is coming online again now, and missed what was sent
            self._desks_online.clear()
            self.connected = True
            self.backoff.reset()
            log.info("connected to %s as %s", self.broker, self.chair)
            self._republish.set()
            await mqtt.until_one_fails(self._publishing(client), self._listening(client))

    # --- publishing ----------------------------------------------------------------------------

    async def _publishing(self, client: Any) -> None:
        """Publish what changed, at most every second of continuous change, and a heartbeat;
        everything again when an overview comes online, at most every few seconds."""
        published: dict[str, Any] = {"daemon": None, "discrete": None, "state": None,
                                     "at": 0.0, "alerts": None, "sessions": 0.0}
        seen, republished = -1, -topics.REPUBLISH_MIN_S
        while True:
            if self._republish.is_set() \
                    and time.monotonic() - republished >= topics.REPUBLISH_MIN_S:
                self._republish.clear()
                republished = time.monotonic()
                published = {**published, "daemon": None, "discrete": None, "alerts": None,
                             "sessions": 0.0, "resend": True}
            await self._publish_changes(client, published)
            seen = await self.link.changed(seen, topics.CONTINUOUS_MIN_S)

    async def _publish_changes(self, client: Any, published: dict[str, Any]) -> None:
        snapshot = self.link.state
        if (snapshot is not None) != published["daemon"]:
            published["daemon"] = snapshot is not None
            await self._publish(client, topics.STATUS, self._status(online=True), retain=True)
        now = time.monotonic()
        if snapshot is not None:
            if topics.discrete(snapshot) != published["discrete"]:
                published["sessions"] = 0.0  # a session may just have ended: look at once
            await self._publish_state(client, snapshot, published, now)
            await self._publish_alerts(client, snapshot, published)
        if now - published["sessions"] >= SESSION_POLL_S:
            published["sessions"] = now
            await self._publish_sessions(client, resend=bool(published.pop("resend", False)))

    async def _publish_state(self, client: Any, snapshot: dict[str, Any],
                             published: dict[str, Any], now: float) -> None:
        discrete = topics.discrete(snapshot)
        fields = json.dumps([snapshot.get(k) for k in topics.STATE_FIELDS], default=str)
        due = (discrete != published["discrete"]
               or now - published["at"] >= self.timing.heartbeat_s
               or (fields != published["state"] and now - published["at"] >= topics.CONTINUOUS_MIN_S))
        if not due:
            return
        self._seq += 1
        await self._publish(client, topics.STATE,
                            topics.chair_state(snapshot, self._seq, self.room), retain=True)
        published.update(discrete=discrete, state=fields, at=now)

    async def _publish_alerts(self, client: Any, snapshot: dict[str, Any],
                              published: dict[str, Any]) -> None:
        alerts = snapshot.get("alerts") or []
        newest = max((a["id"] for a in alerts if isinstance(a.get("id"), int)), default=0)
        if self._alert_top is None:
            self._alert_top = newest  # told before this bridge began: in the retained list
        elif newest < self._alert_top:
            self._alert_top = 0  # a new daemon run numbers its alerts from 1 again
        child = snapshot.get("child")
        for alert in alerts:
            if isinstance(alert.get("id"), int) and alert["id"] > self._alert_top \
                    and not alert.get("acknowledged"):
                await self._publish(client, topics.ALERT,
                                    topics.alert_message(alert, self.chair, self.room, child))
        self._alert_top = max(self._alert_top, newest)
        current = [topics.alert_message(a, self.chair, self.room, child)
                   for a in topics.unacknowledged(snapshot)]
        if current != published["alerts"]:
            await self._publish(client, topics.ALERTS, {"alerts": current}, retain=True)
            published["alerts"] = current

    async def _publish_sessions(self, client: Any, resend: bool) -> None:
        """Finished sessions from the chair's records not yet sent (and, for an overview that
        just came online, the latest few again)."""
        if self.records is None:
            return
        try:
            finished = [s for s in await asyncio.to_thread(list_sessions, self.records)
                        if s.ended is not None]
        except Exception as exc:  # noqa: BLE001 - the records are the daemon's: try later
            log.warning("cannot read the chair's records: %s", exc)
            return
        for info in finished[-RESEND_SESSIONS:] if resend else finished:
            key = f"{self.chair}:{info.started}:{info.id}"
            if key in self._sent and not resend:
                continue
            await self._publish(client, topics.SESSION, {
                "id": key, "chair": self.chair, "room": self.room, "session": info.id,
                "started": info.started, "ended": info.ended, "scenario": info.scenario,
                "duration": round(info.duration, 1), "alerts": info.alerts,
                "estops": info.estops, "child": info.child})
            self._sent.add(key)
            _write_sent(self.state_dir, self._sent)

    async def _publish(self, client: Any, leaf: str, message: dict[str, Any],
                       retain: bool = False) -> None:
        await client.publish(topics.topic(self.chair, leaf), topics.dumps(message), qos=1,
                             retain=retain, timeout=self.timing.broker_timeout_s)

    def _status(self, online: bool) -> dict[str, Any]:
        return {"online": online, "daemon": online and self.link.state is not None,
                "room": self.room, "at": time.time()}

    # --- commands from afar ------------------------------------------------------------------

    async def _listening(self, client: Any) -> None:
        async for message in client.messages:
            try:
                self._heard(client, message)
            except Exception:  # noqa: BLE001 - one message never ends the listening
                log.exception("a message on %s dropped", message.topic)

    def _heard(self, client: Any, message: Any) -> None:
        name = str(message.topic)
        if name.startswith(f"{topics.PREFIX}/{topics.OVERVIEW}/"):
            self._presence(name.split("/")[2], topics.loads(message.payload) or {})
            return
        asyncio.create_task(self._obey(client, name.rsplit("/", 1)[-1], message))

    def _presence(self, desk: str, message: dict[str, Any]) -> None:
        """An overview's presence (its birth, heartbeat or last will): learn its clock, and
        republish everything when it comes online (within a second, at most every few)."""
        self.clocks.heard(desk, message, time.time())
        online = message.get("online") is True
        if online and not self._desks_online.get(desk):
            self._republish.set()
        self._desks_online[desk] = online
        while len(self._desks_online) > 256:  # names are the broker accounts': a few
            self._desks_online.pop(next(iter(self._desks_online)))

    async def _obey(self, client: Any, name: str, message: Any) -> None:
        """Vet, carry out and answer one command; every command with an id gets a reply, and
        one without a usable id a reply naming none (within the rate limit)."""
        try:
            answer, command_id = await self._answer(name, message)
        except Exception as exc:  # noqa: BLE001 - a command's failure is its reply, never the end
            log.exception("command %s failed", name)
            answer = {"ok": False, "error": f"the bridge failed: {type(exc).__name__}"}
            command_id = _id_of(message)
        if answer is None:
            return
        reply = {"id": command_id, "command": name, "ok": bool(answer.get("ok")),
                 "error": None if answer.get("ok") else str(answer.get("error"))[:200]}
        try:
            await self._publish(client, topics.REPLY, reply)
        except mqtt.MqttError as exc:
            log.warning("reply to %s not sent: %s", command_id, exc)

    async def _answer(self, name: str, message: Any) -> tuple[dict[str, Any] | None, str | None]:
        """The answer to one command and its id (answer None: no reply, a repeat or a payload
        that is no command at all)."""
        vetted = topics.vet_command(name, bytes(message.payload or b""),
                                    retained=bool(message.retain),
                                    expiry=mqtt.expiry_of(message), now=time.time(),
                                    clocks=self.clocks, lifetime=self.timing.command_lifetime_s)
        if vetted.id is None:
            log.warning("command %s without a usable id: %s", name, vetted.refusal)
            if topics.loads(message.payload) is None or not self.limit.allow(time.monotonic()):
                return None, None
            return {"ok": False, "error": vetted.refusal}, None
        if self.seen.repeat(vetted.id):
            return None, None
        refusal = vetted.refusal
        if refusal is None and name != "stop" and not self.limit.allow(time.monotonic()):
            refusal = "too many commands for this chair: wait a few seconds"
        answer = {"ok": False, "error": refusal} if refusal else await self._carry_out(
            name, vetted.by)
        log.info("command %s %s by %s: %s", name, vetted.id, vetted.by,
                 "done" if answer.get("ok") else answer.get("error"))
        return answer, vetted.id

    async def _carry_out(self, name: str, by: str) -> dict[str, Any]:
        command, args = topics.REMOTE_COMMANDS[name]
        try:
            return await self.link.command(command, by=f"clinic:{by}", **args)
        except ChairUnreachable as exc:
            return {"ok": False, "error": str(exc)}


def _id_of(message: Any) -> str | None:
    """A command's id if it is a usable one (for the reply when vetting itself failed)."""
    command_id = (topics.loads(message.payload) or {}).get("id")
    return command_id if isinstance(command_id, str) and topics.COMMAND_ID.fullmatch(
        command_id) else None


def _as_published() -> Any:
    """Subscription options that keep the retain flag as published, so a retained command is
    recognised (and refused) even when it arrives live."""
    from paho.mqtt.subscribeoptions import SubscribeOptions

    return SubscribeOptions(qos=1, retainAsPublished=True)


def _read_sent(state_dir: Path | None) -> set[str]:
    if state_dir is None:
        return set()
    try:
        return set(json.loads((state_dir / SENT_FILE).read_text()).get("sent", []))
    except (OSError, ValueError, AttributeError):
        return set()


def _write_sent(state_dir: Path | None, sent: set[str]) -> None:
    if state_dir is None:
        return
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        write_durably(state_dir / SENT_FILE, json.dumps({"sent": sorted(sent)}))
    except OSError as exc:
        log.warning("cannot record the sent summaries: %s", exc)
