"""The live status line a technician watches: face, emotion, mood, state, levels, last alert."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO


def bar(level: float, width: int = 5) -> str:
    """A small gauge: ``bar(0.6) == '###..'``."""
    filled = round(max(0.0, min(1.0, level)) * width)
    return "#" * filled + "." * (width - filled)


class StatusLine:
    """Rewrites one terminal line in place (a plain line every few seconds when not a terminal)."""

    def __init__(self, stream: TextIO = sys.stderr, min_interval: float = 0.1,
                 plain_interval: float = 5.0) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._interval = min_interval if self.tty else plain_interval
        self._last = float("-inf")
        self._width = 0

    def show(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self._interval:
            return
        self._last = now
        if self.tty:
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def say(self, text: str) -> None:
        """A line of its own (an alert, an e-stop) that stays above the status line."""
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(text + "\n")
        self.stream.flush()
        self._last = float("-inf")

    def close(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0


class StatusLogHandler(logging.Handler):
    """Log records as lines of their own above the status line, instead of through it."""

    def __init__(self, status: StatusLine, formatter: logging.Formatter | None = None) -> None:
        super().__init__()
        self.status = status
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.status.say(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)
