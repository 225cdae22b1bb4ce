"""Telling the caregiver: a critical log line, a buzzer and LED pattern, and an optional command.

``Alerter.alert(t, reason, detail)`` never blocks or raises into its caller (the e-stop worker,
the main loop): one worker thread drives the buzzer and LED, and the command runs in a thread of
its own, without a shell, with a timeout. Reasons: ``estop``, ``halt`` (negative reaction),
``absent`` or ``pause`` (child may have left), ``camera``, ``model`` (failures); others (e.g.
``fault``, ``stalled``) get the default pattern.
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from relaxd.core.errors import RelaxdError
from relaxd.safety.settings import AlertSettings

if TYPE_CHECKING:
    from relaxd.records.events import EventLog

log = logging.getLogger(__name__)

#: reason -> buzzer (on seconds, off seconds, beeps): tell them apart by ear.
BEEPS: dict[str, tuple[float, float, int]] = {
    "estop": (1.0, 0.3, 3),
    "halt": (0.15, 0.15, 4),
    "pause": (0.4, 0.6, 2),  # the controller's pause is the child-absent alert
    "camera": (0.8, 0.4, 2),
}
_DEFAULT_BEEPS = (0.5, 0.5, 2)
_PATTERN_STEP = 0.05  # seconds between pattern updates while one plays


def _no_job() -> None:
    """The worker's wake-up to advance the patterns."""


class Alerter:
    """Raises caregiver alerts; the LED keeps blinking until ``clear()``.

    The buzzer and LED are written by one worker thread of the Alerter's own, which plays their
    patterns itself (no gpiozero background blinks, whose threads raced when started and stopped
    from several threads), and a failing output never raises into the caller.
    """

    def __init__(self, settings: AlertSettings | None = None, events: EventLog | None = None,
                 pin_factory: Any = None) -> None:
        from gpiozero import LED, Buzzer, GPIOZeroError

        self.settings = s = settings or AlertSettings()
        self.events = events
        self.buzzer = self.led = None
        try:
            if s.buzzer_pin is not None:
                self.buzzer = Buzzer(s.buzzer_pin, pin_factory=pin_factory)
            if s.led_pin is not None:
                self.led = LED(s.led_pin, pin_factory=pin_factory)
        except (GPIOZeroError, OSError) as exc:
            self._close_outputs()
            raise RelaxdError(f"cannot open the alert buzzer/LED: {exc}") from None
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()  # alerts come from the main loop and the e-stop worker
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._beeps: tuple[float, tuple[float, float, int]] | None = None  # since, pattern
        self._blink_since: float | None = None
        self._failing: set[Any] = set()  # outputs whose last write failed (logged once)
        self._worker = threading.Thread(target=self._work, name="alerts", daemon=True)
        self._worker.start()

    def alert(self, t: float, reason: str, detail: str = "") -> None:
        """Log, record, and queue the beeps, blink and command; returns at once, never raises."""
        log.critical("ALERT %s at %.1f s: %s", reason, t, detail)
        try:
            if self.events is not None:
                self.events.emit(t, "alert", reason=reason, detail=detail)
        except Exception:  # noqa: BLE001 - the alert itself must still go out
            log.exception("recording the alert failed")
        self._jobs.put(lambda: self._signal(t, reason, detail))

    def clear(self) -> None:
        """The caregiver has seen it: stop the LED and the buzzer."""
        self._jobs.put(self._clear)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for queued alerts and running alert commands (for shutdown and tests)."""
        done = threading.Event()
        self._jobs.put(done.set)
        done.wait(timeout)
        with self._lock:
            threads = list(self._threads)
        for th in threads:
            th.join(timeout)

    def close(self) -> None:
        if self._worker.is_alive():
            self._jobs.put(None)
            self._worker.join(timeout=2)
        self._close_outputs()

    def _close_outputs(self) -> None:
        for dev in (self.buzzer, self.led):
            if dev is not None:
                try:
                    dev.close()
                except Exception:  # noqa: BLE001
                    log.exception("closing an alert output failed")

    def _work(self) -> None:
        """The one thread that writes the buzzer and LED: runs jobs, and plays the patterns."""
        while True:
            try:
                job = self._jobs.get(timeout=_PATTERN_STEP if self._patterns_active() else None)
            except queue.Empty:
                job = _no_job
            if job is None:
                break
            try:
                job()
                self._drive(time.monotonic())
            except Exception:  # noqa: BLE001 - the next alert must still go out
                log.exception("driving an alert output failed")

    def _patterns_active(self) -> bool:
        return self._beeps is not None or self._blink_since is not None

    def _drive(self, now: float) -> None:
        """Buzzer and LED to where their patterns are at ``now``; each write on its own."""
        buzz = False
        if self._beeps is not None:
            since, (on_s, off_s, n) = self._beeps
            beep, into = divmod(now - since, on_s + off_s)
            if beep >= n:
                self._beeps = None
            buzz = beep < n and into < on_s
        blink = self._blink_since is not None and (now - self._blink_since) % 1.0 < 0.5
        for device, on in ((self.buzzer, buzz), (self.led, blink)):
            if device is None:
                continue
            try:
                if bool(device.value) != on:
                    device.value = on
                self._failing.discard(device)
            except Exception:  # noqa: BLE001 - the other output and the next alert go on
                if device not in self._failing:
                    self._failing.add(device)
                    log.exception("driving an alert output failed")

    def _signal(self, t: float, reason: str, detail: str) -> None:
        """On the worker thread: start the beeps and the blinking, and the command."""
        now = time.monotonic()
        self._beeps = (now, BEEPS.get(reason, _DEFAULT_BEEPS))
        if self._blink_since is None:
            self._blink_since = now
        if self.settings.command:
            th = threading.Thread(target=self._run, args=(t, reason, detail),
                                  name="alert-command", daemon=True)
            with self._lock:
                self._threads = [x for x in self._threads if x.is_alive()] + [th]
            th.start()

    def _clear(self) -> None:
        self._blink_since = None
        self._beeps = None  # acknowledged: the buzzer stops too

    def _run(self, t: float, reason: str, detail: str) -> None:
        cmd = [*self.settings.command, reason, detail]
        env = {**os.environ, "RELAXD_ALERT_REASON": reason, "RELAXD_ALERT_DETAIL": detail,
               "RELAXD_ALERT_T": f"{t:.3f}"}
        try:
            done = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=self.settings.timeout, check=False)
        except subprocess.TimeoutExpired:
            log.error("alert command timed out after %g s and was killed: %s",
                      self.settings.timeout, cmd[0])
        except OSError as exc:
            log.error("alert command %s could not run: %s", cmd[0], exc.strerror or exc)
        else:
            if done.returncode != 0:
                log.error("alert command %s exited %d: %s", cmd[0], done.returncode,
                          done.stderr.decode(errors="replace").strip()[-200:])
