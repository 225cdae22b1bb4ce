"""What must survive a restart: the stop latch, the run marker, and remote reset requests.

Both files live in the state directory and are written durably (fsync of the file and of the
directory), so a power cut right after a stop still finds the chair latched when it comes back::

    latch = FaultLatch.in_state_dir(state_dir)
    marker = RunMarker.in_state_dir(state_dir)
    if marker.begin():                    # the previous run never ended cleanly
        latch.set("previous run ended uncleanly")
    ...
    marker.end()                          # only on a clean exit

Imports nothing but the standard library: ``relaxd safe-off`` runs it after any exit.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

#: A remote reset request older than this is ignored (it may answer a stop long gone).
RESET_REQUEST_TTL_S = 60.0


def write_durably(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically, and make it survive a power cut."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    _sync_dir(path.parent)


def remove_durably(path: Path) -> None:
    """Remove ``path`` (if there) so that the removal survives a power cut."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    _sync_dir(path.parent)


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FaultLatch:
    """A stop that must survive a restart: ``latch.json`` in the state directory.

    Set on every e-stop and fault, cleared by the caregiver's reset. Each latching gets an
    ``id``, which a remote reset request must name (:meth:`request_reset`). ``path=None`` keeps
    the latch in memory only (simulation: every rehearsal starts clean).
    """

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> FaultLatch:
        return cls(Path(state_dir) / "latch.json")

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.RLock()
        self.request = path.with_name("reset-request") if path is not None else None
        self.reason: str | None = None
        self.id: str | None = None
        if path is not None:
            self._read()

    def _read(self) -> None:
        try:
            data = json.loads(self.path.read_text())
            self.reason, self.id = str(data["reason"]), str(data.get("id", ""))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.reason, self.id = f"latch file unreadable ({exc}): staying stopped", ""

    def set(self, reason: str) -> None:
        """Latch (in memory at once; on disk durably, raising OSError if it cannot be written)."""
        with self._lock:
            self.reason, self.id = reason, uuid.uuid4().hex
            if self.path is not None:
                write_durably(self.path, json.dumps(
                    {"reason": reason, "id": self.id, "at": time.time()}))

    def clear(self) -> None:
        with self._lock:
            self.reason = self.id = None
            if self.path is not None:
                remove_durably(self.path)

    def follow(self, latched: Callable[[], bool], reason: str) -> bool:
        """Match the e-stop: set while it is latched, clear once it is not; True if cleared.

        Called from the e-stop's worker thread and from the main loop; the lock makes the check
        and the write one step, so a late caller never undoes a newer state.
        """
        with self._lock:
            if latched():
                if self.reason is None:
                    self.set(reason)
            elif self.reason is not None:
                self.clear()
                return True
        return False

    def request_reset(self) -> None:
        """``relaxd reset``: ask the running daemon to clear *this* latch, for the next minute."""
        if self.request is None:
            raise OSError("this latch is kept in memory only")
        write_durably(self.request, json.dumps({"latch": self.id, "at": time.time()}))

    def take_reset_request(self, now: float | None = None) -> bool:
        """True once for a request that names the current latch and is under a minute old;
        any request file is consumed, so a stale one never cancels a later stop."""
        if self.request is None or not self.request.exists():
            return False
        try:
            data = json.loads(self.request.read_text())
        except (OSError, ValueError):
            data = {}
        finally:
            self.request.unlink(missing_ok=True)
        now = time.time() if now is None else now
        with self._lock:
            fresh = isinstance(data, dict) and 0 <= now - float(data.get("at", 0)) <= \
                RESET_REQUEST_TTL_S
            ok = fresh and self.reason is not None and data.get("latch") == self.id
        if not ok:
            log.warning("ignored a stale or mismatched reset request: %s", data)
        return ok


class RunMarker:
    """``running`` in the state directory while relaxd drives the outputs.

    Written at start and removed only on a clean exit; a start (or ``relaxd safe-off``) that
    finds it knows the run before ended by a crash, a kill or a power cut.
    """

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> RunMarker:
        return cls(Path(state_dir) / "running")

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def present(self) -> bool:
        return self.path.exists()

    def begin(self) -> bool:
        """Mark this run; True if the previous one never ended cleanly."""
        unclean = self.present
        write_durably(self.path, json.dumps({"pid": os.getpid(), "at": time.time()}))
        return unclean

    def end(self) -> None:
        """A clean exit: outputs are at 0 and every record is closed."""
        remove_durably(self.path)


#: The latch reason when a start finds the run marker.
UNCLEAN_REASON = "the previous run ended uncleanly (crash, kill or power cut)"


def latch_if_unclean(state_dir: Path) -> str | None:
    """For ``relaxd safe-off``: latch when the run marker is there; the reason, or None."""
    marker, latch = RunMarker.in_state_dir(state_dir), FaultLatch.in_state_dir(state_dir)
    if not marker.present:
        return None
    if latch.reason is None:
        latch.set(UNCLEAN_REASON)
    return latch.reason
