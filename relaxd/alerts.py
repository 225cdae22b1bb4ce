"""Telling the caregiver: a critical log line, a buzzer and LED pattern, and an optional command.

``Alerter.alert(t, reason, detail)`` never blocks its caller (the e-stop worker, the main loop):
the buzzer and LED blink in gpiozero's background threads and the command runs in a thread of
its own, without a shell, with a timeout. Reasons: ``estop``, ``halt`` (negative reaction),
``absent`` or ``pause`` (child may have left), ``camera``, ``model`` (failures); others (e.g.
``fault``, ``stalled``) get the default pattern.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from typing import TYPE_CHECKING, Any

from relaxd.errors import RelaxdError
from relaxd.safety import SafetySettings

if TYPE_CHECKING:
    from relaxd.events import EventLog

log = logging.getLogger(__name__)

#: reason -> buzzer (on seconds, off seconds, beeps): tell them apart by ear.
BEEPS: dict[str, tuple[float, float, int]] = {
    "estop": (1.0, 0.3, 3),
    "halt": (0.15, 0.15, 4),
    "pause": (0.4, 0.6, 2),  # the controller's pause is the child-absent alert
    "camera": (0.8, 0.4, 2),
}
_DEFAULT_BEEPS = (0.5, 0.5, 2)


class Alerter:
    """Raises caregiver alerts; the LED keeps blinking until ``clear()``."""

    def __init__(self, settings: SafetySettings | None = None, events: EventLog | None = None,
                 pin_factory: Any = None) -> None:
        from gpiozero import LED, Buzzer, GPIOZeroError

        self.settings = s = settings or SafetySettings()
        self.events = events
        self.buzzer = self.led = None
        try:
            if s.buzzer_pin is not None:
                self.buzzer = Buzzer(s.buzzer_pin, pin_factory=pin_factory)
            if s.alert_led_pin is not None:
                self.led = LED(s.alert_led_pin, pin_factory=pin_factory)
        except (GPIOZeroError, OSError) as exc:
            self.close()
            raise RelaxdError(f"cannot open the alert buzzer/LED: {exc}") from None
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()  # alerts come from the main loop and the e-stop worker

    def alert(self, t: float, reason: str, detail: str = "") -> None:
        """Log, beep, blink, record and run the command; returns at once."""
        log.critical("ALERT %s at %.1f s: %s", reason, t, detail)
        if self.events is not None:
            self.events.emit(t, "alert", reason=reason, detail=detail)
        if self.buzzer is not None:
            on, off, n = BEEPS.get(reason, _DEFAULT_BEEPS)
            self.buzzer.beep(on_time=on, off_time=off, n=n, background=True)
        if self.led is not None:
            self.led.blink(on_time=0.5, off_time=0.5, background=True)
        if self.settings.alert_command:
            th = threading.Thread(target=self._run, args=(t, reason, detail),
                                  name="alert-command", daemon=True)
            with self._lock:
                self._threads = [x for x in self._threads if x.is_alive()] + [th]
            th.start()

    def clear(self) -> None:
        """The caregiver has seen it: stop the LED."""
        if self.led is not None:
            self.led.off()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for running alert commands (for shutdown and tests)."""
        with self._lock:
            threads = list(self._threads)
        for th in threads:
            th.join(timeout)

    def close(self) -> None:
        for dev in (self.buzzer, self.led):
            if dev is not None:
                dev.close()

    def _run(self, t: float, reason: str, detail: str) -> None:
        cmd = [*self.settings.alert_command, reason, detail]
        env = {**os.environ, "RELAXD_ALERT_REASON": reason, "RELAXD_ALERT_DETAIL": detail,
               "RELAXD_ALERT_T": f"{t:.3f}"}
        try:
            done = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=self.settings.alert_timeout, check=False)
        except subprocess.TimeoutExpired:
            log.error("alert command timed out after %g s and was killed: %s",
                      self.settings.alert_timeout, cmd[0])
        except OSError as exc:
            log.error("alert command %s could not run: %s", cmd[0], exc.strerror or exc)
        else:
            if done.returncode != 0:
                log.error("alert command %s exited %d: %s", cmd[0], done.returncode,
                          done.stderr.decode(errors="replace").strip()[-200:])
