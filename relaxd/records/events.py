"""The session's event stream: every mood, decision, level change, alert and e-stop, timestamped.

``EventLog.emit(t, type, **fields)`` hands one event (a dict with ``t`` in seconds since session
start and ``type``) to each sink. Sinks are small objects with ``write(event)``, ``flush()`` and
``close()``; a failing sink is reported once and dropped so recording can never stop the loop.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from relaxd.core.errors import RelaxdError

if TYPE_CHECKING:
    from relaxd.control.controller import Levels

log = logging.getLogger(__name__)

Event = dict[str, Any]


class Sink(Protocol):
    def write(self, event: Event) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class JsonLinesSink:
    """One JSON object a line, flushed at least every ``flush_every`` seconds of session time."""

    def __init__(self, path: str | Path, flush_every: float = 1.0) -> None:
        self.path = Path(path)
        try:
            self._file: TextIO = open(self.path, "w", encoding="utf-8")
        except OSError as exc:
            raise RelaxdError(f"cannot write events: {exc.strerror}", self.path) from None
        self._flush_every = flush_every
        self._last_flush = float("-inf")

    def write(self, event: Event) -> None:
        self._file.write(json.dumps(event, separators=(",", ":")) + "\n")
        if event["t"] - self._last_flush >= self._flush_every or event["type"] in ("alert", "estop"):
            self.flush()
            self._last_flush = event["t"]

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


class TraceWriter:
    """``--trace FILE.csv``: one row ``t,light,vibration,audio`` a tick, each output as driven
    (light before gamma, the motor's duty, the volume 0..1 of the cap), patterns included."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._file: TextIO = open(self.path, "w", encoding="utf-8")
        except OSError as exc:
            raise RelaxdError(f"cannot write the trace: {exc.strerror}", self.path) from None
        self._file.write("t,light,vibration,audio\n")

    def write(self, t: float, driven: Levels) -> None:
        self._file.write(f"{t:.3f},{driven.light:.5f},{driven.vibration:.5f},"
                         f"{driven.audio:.5f}\n")

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def read_trace(path: str | Path) -> list[dict[str, float]]:
    """The rows of a ``--trace`` file: ``{"t", "light", "vibration", "audio"}`` floats."""
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


class MemorySink:
    """Keeps events in a list (for the status line and tests)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def write(self, event: Event) -> None:
        self.events.append(event)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class EventLog:
    """Fans events out to sinks; safe to call from the e-stop callback thread."""

    def __init__(self, sinks: list[Sink] | None = None) -> None:
        self.sinks: list[Sink] = list(sinks or [])
        self._lock = threading.Lock()

    def emit(self, t: float, type: str, **fields: Any) -> Event:
        event: Event = {"t": round(float(t), 3), "type": type, **fields}
        with self._lock:
            for sink in list(self.sinks):
                try:
                    sink.write(event)
                except Exception as exc:  # noqa: BLE001 - a broken sink must not stop the chair
                    log.error("event sink %s failed and was dropped: %s", sink.__class__.__name__, exc)
                    self.sinks.remove(sink)
        return event

    def replace(self, old: Sink, new: Sink) -> None:
        """Swap one sink for another (a new session record), closing the old one."""
        with self._lock:
            self.sinks = [new if s is old else s for s in self.sinks]
        old.close()

    def flush(self) -> None:
        with self._lock:
            for sink in self.sinks:
                sink.flush()

    def close(self) -> None:
        with self._lock:
            for sink in self.sinks:
                sink.close()
            self.sinks.clear()
