"""Connecting to the clinic's broker: aiomqtt (on paho-mqtt), MQTT v5, TLS with a pinned CA.

Both the bridge and the overview connect here; each retries with :class:`Backoff` (doubling,
with jitter, so that thirty chairs do not all knock at once when the broker returns).
"""

from __future__ import annotations

import asyncio
import queue
import random
import ssl
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from relaxd.clinic.settings import (
    BROKER_TIMEOUT_S,
    OVERVIEW,
    PREFIX,
    BrokerAddress,
    Credentials,
    Timing,
)
from relaxd.clinic.topics import CMD, dumps

MqttError = aiomqtt.MqttError


def tls_context(credentials: Credentials) -> ssl.SSLContext:
    """Trust the clinic's CA only (no system CAs), check the broker's name, and present the
    client certificate if there is one."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(credentials.ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if credentials.certificate is not None and credentials.key is not None:
        context.load_cert_chain(str(credentials.certificate), str(credentials.key))
    return context


#: How long the broker keeps an overview's subscriptions (and queues what they match) while it
#: is away, so a session summary published meanwhile still reaches it.
OVERVIEW_SESSION_S = 24 * 3600


def client(broker: BrokerAddress, credentials: Credentials, identifier: str,
           will: tuple[str, dict[str, Any]] | None = None,
           keep_session: bool = False, timing: Timing = Timing()) -> aiomqtt.Client:
    """A client for one connection (``async with``). A bridge starts clean, so nothing queued
    for an earlier connection (a stale command) is ever delivered; an overview
    (``keep_session``) finds what came while it was away."""
    properties = None
    if keep_session:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = OVERVIEW_SESSION_S
    return aiomqtt.Client(
        broker.host, broker.port, transport="unix" if broker.transport == "unix" else "tcp",
        username=credentials.username, password=credentials.password(), identifier=identifier,
        protocol=aiomqtt.ProtocolVersion.V5, clean_start=not keep_session,
        properties=properties, keepalive=timing.keepalive_s,
        timeout=timing.broker_timeout_s,
        will=aiomqtt.Will(will[0], dumps(will[1]), qos=1, retain=True) if will else None,
        tls_context=tls_context(credentials) if broker.tls else None)


def command_properties(lifetime: float) -> Properties:
    """A command's MQTT v5 properties: it expires after ``lifetime`` seconds."""
    properties = Properties(PacketTypes.PUBLISH)
    properties.MessageExpiryInterval = max(1, int(lifetime))
    return properties


def expiry_of(message: aiomqtt.Message) -> float | None:
    """The message expiry interval a message still carries (None: none)."""
    value = getattr(message.properties, "MessageExpiryInterval", None)
    return float(value) if isinstance(value, int) else None


class Backoff:
    """Delays between attempts: doubling from ``first`` to ``longest``, each times a random
    factor from 0.5 to 1.5; :meth:`reset` after a connection that worked."""

    def __init__(self, first: float = 0.5, longest: float = 30.0,
                 rng: random.Random | None = None) -> None:
        self.first, self.longest = first, longest
        self._next = first
        self._rng = rng or random.Random()

    def delay(self) -> float:
        base, self._next = self._next, min(self.longest, self._next * 2)
        return base * self._rng.uniform(0.5, 1.5)

    def reset(self) -> None:
        self._next = self.first


#: Where an overview tries a publish to learn whether its account may send commands: a command
#: topic no chair reads (no chair may be named "overview"), outside every overview's presence.
PROBE_TOPIC = f"{PREFIX}/{OVERVIEW}/{CMD}/probe"


def may_publish(broker: BrokerAddress, credentials: Credentials, identifier: str,
                topic: str = PROBE_TOPIC, timeout: float = BROKER_TIMEOUT_S) -> bool | None:
    """Whether this account may publish to ``topic``: one QoS 1 publish on a short connection of
    its own, and the broker's answer (MQTT v5 PUBACK: "Not authorized" means no). None when the
    broker cannot be asked. Blocking: run it in a thread."""
    answer: queue.Queue[bool | None] = queue.Queue()
    probe = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=identifier,
                        protocol=paho.MQTTv5,
                        transport="unix" if broker.transport == "unix" else "tcp")
    probe.username_pw_set(credentials.username, credentials.password())
    if broker.tls:
        probe.tls_set_context(tls_context(credentials))
    probe.on_publish = lambda client, userdata, mid, code, properties: answer.put(
        not code.is_failure)
    probe.on_connect = lambda client, userdata, flags, code, properties: (
        answer.put(None) if code.is_failure else None)
    properties = Properties(PacketTypes.PUBLISH)
    properties.MessageExpiryInterval = 1
    try:
        probe.connect(broker.host, broker.port, keepalive=max(1, round(timeout)))
        probe.loop_start()
        probe.publish(topic, dumps({"probe": True}), qos=1, properties=properties)
        return answer.get(timeout=timeout)
    except (OSError, ssl.SSLError, queue.Empty, ValueError):
        return None
    finally:
        probe.loop_stop()
        probe.disconnect()


async def until_one_fails(*coroutines: Any) -> None:
    """Run ``coroutines`` together on one connection until one of them raises (its error is
    raised here); the others are cancelled then, as when the connection ends."""
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
