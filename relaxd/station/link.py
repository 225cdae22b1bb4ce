"""The station's end of the control socket (asyncio): the latest state, and commands.

One subscription keeps :attr:`ChairLink.state` current (reconnecting every second while the
daemon is away); each command opens a short connection of its own and waits for the
answer longer than the daemon ever takes to give one, so "no answer" here never hides a
command the chair carries out later. The mood strip (the last five minutes) is kept here, from
the states that pass.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from pathlib import Path
from typing import Any

from relaxd.station.protocol import LONGEST_ANSWER_S, MAX_LINE, decode, encode

log = logging.getLogger(__name__)

MOOD_STRIP_S = 300.0
COMMAND_TIMEOUT_S = 5.0  # to connect
#: How long a command's answer is waited for: the daemon answers within LONGEST_ANSWER_S of
#: the command's arrival (a command it is too late for: "not carried out").
ANSWER_WAIT_S = LONGEST_ANSWER_S + 3.0
#: The daemon's loop publishes a state (with its wall-clock time, ``at``) every tick, at least
#: once a second even while a camera read waits its longest (2 s): when the newest is older than
#: this, the loop or the daemon has stopped (hung, paused, stalled) and the chair is shown as
#: not answering, never as running with its last numbers.
SILENT_S = 3.0


class ChairUnreachable(Exception):
    """The daemon's control socket cannot be reached (one-line reason)."""


class ChairLink:
    """The chair's latest state, its recent moods, and a way to send it commands."""

    def __init__(self, socket_path: str | Path) -> None:
        self.socket_path = str(socket_path)
        self.state: dict[str, Any] | None = None
        self.version = 0
        self.moods: deque[tuple[float, str, float]] = deque(maxlen=4096)
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def changed(self, seen: int, timeout: float) -> int:
        """Wait (up to ``timeout``) for a state newer than version ``seen``; the version."""
        if self.version == seen:
            event = self._changed
            try:
                await asyncio.wait_for(event.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        return self.version

    def view(self) -> dict[str, Any]:
        """The state for browsers: the daemon's, with the mood strip and whether it is there."""
        now = time.time()
        strip = [[round(at - now, 1), mood, conf] for at, mood, conf in self.moods
                 if at >= now - MOOD_STRIP_S]
        if self.state is None:
            return {"connected": False, "state": "offline", "alerts": [], "mood_strip": strip}
        silent = self.silent_for(now)
        if silent is not None and silent > SILENT_S:
            return {**self.state, "connected": False, "answering": False,
                    "silent_s": round(silent, 1), "mood_strip": strip}
        return {**self.state, "connected": True, "mood_strip": strip}

    def silent_for(self, now: float) -> float | None:
        """Seconds since the newest state was made (None: no state, or one without its time)."""
        at = (self.state or {}).get("at")
        if isinstance(at, bool) or not isinstance(at, (int, float)):
            return None
        return now - at

    async def command(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Send one command; the daemon's answer. ChairUnreachable if it cannot be asked."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(self.socket_path, limit=MAX_LINE), COMMAND_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError) as exc:
            raise ChairUnreachable(f"the chair's daemon cannot be reached: {exc}") from None
        try:
            writer.write(encode({"cmd": cmd, **args}))
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), ANSWER_WAIT_S)
            return decode(line)
        except (OSError, ValueError, asyncio.TimeoutError) as exc:
            raise ChairUnreachable(f"the chair's daemon did not answer: {exc}") from None
        finally:
            writer.close()

    async def _follow(self) -> None:
        while True:
            try:
                await self._subscribe()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep trying while the daemon is away
                log.debug("control socket: %s", exc)
            if self.state is not None:
                self._update(None)
            await asyncio.sleep(1.0)

    async def _subscribe(self) -> None:
        reader, writer = await asyncio.open_unix_connection(self.socket_path, limit=MAX_LINE)
        try:
            writer.write(encode({"cmd": "subscribe"}))
            await writer.drain()
            while True:
                try:
                    line = await asyncio.wait_for(reader.readline(), SILENT_S)
                except asyncio.TimeoutError:
                    if self.silent_for(time.time()) is not None:
                        self._notify()  # the view turns "not answering" (see view)
                    continue
                if not line:
                    break
                message = json.loads(line)
                if message.get("type") == "state":
                    self._update(message["state"])
        finally:
            writer.close()

    def _update(self, state: dict[str, Any] | None) -> None:
        self.state = state
        if state is not None:
            mood = state.get("mood") or {}
            last = self.moods[-1] if self.moods else None
            at = float(state.get("at") or time.time())
            if last is None or last[1] != mood.get("mood") or at - last[0] >= 1.0:
                self.moods.append((at, str(mood.get("mood")), float(mood.get("confidence", 0))))
        self._notify()

    def _notify(self) -> None:
        """A new view for whoever waits in :meth:`changed`."""
        self.version += 1
        event, self._changed = self._changed, asyncio.Event()
        event.set()
