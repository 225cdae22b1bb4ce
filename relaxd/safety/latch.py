"""The stop arbiter: every stop and every reset or start goes through the latch.

A stop, from any source, overrides every start or reset given before it (IEC 60204-1
§9.2.5.3). Each stop gets a number, ``stop_seq``, that only ever grows and is kept in
``latch.json`` across restarts. A reset or a Start names the newest stop it knew of when relaxd
received it (``after_stop``); once a newer stop exists it is refused. The latch remembers every
cause it holds, and only a Start at the station may clear a latch whose only causes are the
station's own STOP or the clinic overview's software stop; every other cause needs the reset
button at the chair::

    latch = FaultLatch.in_state_dir(state_dir)
    seq = latch.stop("estop", "emergency stop (button)")   # in memory, at once; never waits
    latch.save()                                              # durably, after the alert
    latch.clear("chair", after_stop=seq)                      # the reset button's hold

``stop`` never touches the disk, so the e-stop's callback can call it; ``save`` writes the whole
latch durably (fsync of the file and of the directory). A power cut between the two loses only
what the next start finds anyway: the run marker says the run ended uncleanly (``crash``), and
the numbers restart above any the lost run could have handed out (:data:`CRASH_SEQ_GAP`).

Imports nothing but the standard library: ``relaxd safe-off`` runs it after any exit.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Literal

from relaxd.core.durable import remove_durably, write_durably

log = logging.getLogger(__name__)

#: A remote reset request older than this is ignored (it may answer a stop long gone).
RESET_REQUEST_TTL_S = 60.0

#: Every cause a latch can hold, and how it reads to a caregiver.
CAUSES: dict[str, str] = {
    "station-stop": "STOP at the caregiver station",
    "clinic-stop": "a software stop from the clinic's overview (not an emergency stop)",
    "estop": "the emergency stop",
    "fault": "a fault",
    "crash": "the previous run ended uncleanly (crash, kill or power cut)",
    "stall": "the main loop stalled",
}

#: The causes a Start at the chair's own station may clear (its STOP, and the clinic overview's
#: software stop, which nothing from afar clears); every other needs the reset button.
STATION_CLEARABLE = frozenset({"station-stop", "clinic-stop"})

#: After a crash, stop numbers go on this far above the last one saved, beyond any the crashed
#: run could have handed out and not yet written.
CRASH_SEQ_GAP = 1000

#: Who clears a latch: the station's Start, or the chair's reset button (and ``relaxd reset``
#: where ``safety.remote_reset`` makes it stand for that button).
Clearer = Literal["station", "chair"]


class StopRefused(Exception):
    """A reset or start the arbiter refuses; the message says why in one line."""


class FaultLatch:
    """The arbiter's state: the latch's causes and the newest stop number (``latch.json``).

    ``path=None`` keeps it in memory only (simulation: every rehearsal starts clean). Every
    method is safe to call from any thread; :meth:`stop` never blocks on the disk.
    """

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> FaultLatch:
        return cls(Path(state_dir) / "latch.json")

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()  # the state; held only for memory updates
        self._writing = threading.Lock()  # one save at a time, each of the newest state
        self.request = path.with_name("reset-request") if path is not None else None
        self._causes: dict[str, str] = {}  # cause -> what happened, as first recorded
        self._seq = 0
        self._at: float | None = None
        if path is not None:
            self._read(path)

    # --- what it holds -------------------------------------------------------------------------

    @property
    def latched(self) -> bool:
        return bool(self._causes)

    @property
    def causes(self) -> frozenset[str]:
        return frozenset(self._causes)

    @property
    def stop_seq(self) -> int:
        """The newest stop's number (0: no stop yet on this chair)."""
        return self._seq

    @property
    def reason(self) -> str | None:
        """What holds the chair stopped, in words (None: nothing latched)."""
        with self._lock:
            details = list(self._causes.values())
        return "; ".join(details) if details else None

    @property
    def station_clearable(self) -> bool:
        """Latched by the station's STOP alone: a Start at the station may clear it."""
        causes = self.causes
        return bool(causes) and causes <= STATION_CLEARABLE

    # --- stops ---------------------------------------------------------------------------------

    def stop(self, cause: str, detail: str = "") -> int:
        """A stop, in memory at once (never waits on the disk); its number. Call :meth:`save`
        after alerting, so that a full or read-only disk never silences a stop."""
        if cause not in CAUSES:
            raise ValueError(f"unknown stop cause {cause!r}")
        with self._lock:
            self._seq += 1 if cause != "crash" else CRASH_SEQ_GAP
            self._causes.setdefault(cause, detail or CAUSES[cause])
            self._at = time.time()
            return self._seq

    def latch(self, cause: str, detail: str = "") -> int:
        """:meth:`stop` and :meth:`save` in one (for paths that have already alerted)."""
        seq = self.stop(cause, detail)
        self.save()
        return seq

    def save(self) -> None:
        """Write the newest state durably; OSError if it cannot be written (the state in
        memory still holds, and the caller alerts)."""
        if self.path is None:
            return
        with self._writing:
            with self._lock:
                data = {"causes": sorted(self._causes), "details": dict(self._causes),
                        "stop_seq": self._seq, "at": self._at}
            write_durably(self.path, json.dumps(data))

    # --- resets --------------------------------------------------------------------------------

    def check_clear(self, by: Clearer, after_stop: int) -> None:
        """Raise StopRefused unless ``by`` may clear the latch for a request made when the
        newest stop was ``after_stop``."""
        with self._lock:
            self._refusal(by, after_stop)

    def release(self, by: Clearer, after_stop: int) -> None:
        """Clear every cause in memory (never waits on the disk: the reset button's callback
        calls it), if ``by`` may and no stop came after ``after_stop``; StopRefused (one line)
        otherwise. :meth:`save` writes it."""
        with self._lock:
            self._refusal(by, after_stop)
            self._causes.clear()

    def clear(self, by: Clearer, after_stop: int) -> None:
        """:meth:`release` and :meth:`save` in one. A failed write leaves the disk latched (a
        restart then comes up stopped) and is logged."""
        self.release(by, after_stop)
        try:
            self.save()
        except OSError as exc:
            log.critical("cannot record the reset in %s: %s", self.path, exc)

    def _refusal(self, by: Clearer, after_stop: int) -> None:
        if not self._causes:
            raise StopRefused("nothing is latched")
        if after_stop > self._seq:
            raise StopRefused(f"no stop {after_stop} yet (the newest is {self._seq}): not "
                              "carried out")
        if self._seq > after_stop:
            raise StopRefused(f"a newer stop (number {self._seq}) came after this request "
                              f"(which answered stop {after_stop}): not carried out")
        held = set(self._causes) - STATION_CLEARABLE
        if by == "station" and held:
            raise StopRefused(f"stopped by {', '.join(CAUSES[c] for c in sorted(held))}: a "
                              "caregiver at the chair holds the reset button to clear it")

    # --- the file ------------------------------------------------------------------------------

    def _read(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError, RecursionError) as exc:
            self._causes, self._seq = {"fault": f"latch file unreadable ({exc})"}, CRASH_SEQ_GAP
            return
        self._causes, self._seq = _parse(data)

    def request_reset(self) -> None:
        """``relaxd reset``: ask the running daemon to clear *this* stop, for the next minute."""
        if self.request is None:
            raise OSError("this latch is kept in memory only")
        write_durably(self.request, json.dumps({"after_stop": self._seq, "at": time.time()}))

    def take_reset_request(self, now: float | None = None) -> int | None:
        """The stop number a fresh ``relaxd reset`` request answers, once; None for none, a
        stale or a malformed one. Any request file is consumed, so a stale one never cancels a
        later stop."""
        if self.request is None or not self.request.exists():
            return None
        try:
            data = json.loads(self.request.read_text())
        except (OSError, ValueError):
            data = {}
        finally:
            self.request.unlink(missing_ok=True)
        now = time.time() if now is None else now
        try:
            fresh = 0 <= now - float(data["at"]) <= RESET_REQUEST_TTL_S
            after_stop = data["after_stop"]
        except (KeyError, TypeError, ValueError, OverflowError):
            fresh, after_stop = False, -1
        if not fresh or not _is_stop_number(after_stop):
            log.warning("ignored a stale or malformed reset request: %s", data)
            return None
        return after_stop


def _damaged() -> tuple[dict[str, str], int]:
    """What a damaged latch file reads as: latched, needing the reset button."""
    return {"fault": "latch file damaged: staying stopped"}, CRASH_SEQ_GAP


def _parse(data: object) -> tuple[dict[str, str], int]:
    """The causes and stop number of a ``latch.json``. A file of an older relaxd
    (``{"reason", "id"}``), a damaged one, or one that names an unknown cause needs the reset
    button; reading one never raises."""
    if not isinstance(data, dict):
        return _damaged()
    if "causes" not in data:
        return {"fault": f"latched by an older relaxd: {data.get('reason', '?')}"}, CRASH_SEQ_GAP
    listed, seq = data["causes"], data.get("stop_seq", 0)
    if not isinstance(listed, list) or not all(isinstance(c, str) for c in listed) \
            or not _is_stop_number(seq):
        return _damaged()
    details = data.get("details")
    if not isinstance(details, dict):
        details = {}
    causes: dict[str, str] = {}
    for cause in listed:
        known = cause in CAUSES
        causes[cause if known else "fault"] = str(details.get(cause, CAUSES.get(cause, cause)))
    return causes, seq


def _is_stop_number(value: object) -> bool:
    """A stop number as JSON gives it: a whole number, 0 or more (never a bool or a float)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**62


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

    def owner_alive(self) -> bool:
        """The run that wrote the marker is still running (its process exists)."""
        try:
            pid = int(json.loads(self.path.read_text())["pid"])
            os.kill(pid, 0)
        except PermissionError:
            return True  # it exists, as another user
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return True


#: What the latch says when a start finds the run marker.
UNCLEAN_REASON = CAUSES["crash"]


def latch_if_unclean(state_dir: Path) -> str | None:
    """For ``relaxd safe-off``: add ``crash`` to the latch when the run marker is there (a
    crash, a kill or a power cut, whatever else was latched); the latch's reason, or None."""
    marker, latch = RunMarker.in_state_dir(state_dir), FaultLatch.in_state_dir(state_dir)
    if not marker.present:
        return None
    if "crash" not in latch.causes:
        latch.latch("crash")
    return latch.reason
