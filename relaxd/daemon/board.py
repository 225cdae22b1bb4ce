"""The caregiver's alerts until acknowledged, for the station's state."""

from __future__ import annotations

import threading
import time
from typing import Any

from relaxd.station.protocol import CommandRefused

#: How many alerts the board keeps (the newest).
KEPT_ALERTS = 50


class AlertBoard:
    """The caregiver's alerts until acknowledged.

    An :class:`relaxd.records.events.EventLog` sink: it sees every ``alert`` event as the alerter
    records it (on its thread; it only appends, under a lock).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._alerts: list[dict[str, Any]] = []
        self._next_id = 1

    def write(self, event: dict[str, Any]) -> None:
        if event["type"] == "alert":
            with self._lock:
                self._alerts.append({"id": self._next_id, "t": event["t"], "at": time.time(),
                                     "reason": event.get("reason", ""),
                                     "detail": event.get("detail", ""), "acknowledged": False})
                self._next_id += 1
                del self._alerts[:-KEPT_ALERTS]

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def ack(self, alert_id: int) -> bool:
        """Acknowledge one alert; True when none is left unacknowledged."""
        with self._lock:
            found = [a for a in self._alerts if a["id"] == alert_id]
            if not found:
                raise CommandRefused(f"no alert {alert_id}")
            found[0]["acknowledged"] = True
            return not any(not a["acknowledged"] for a in self._alerts)

    def listing(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(a) for a in self._alerts]
