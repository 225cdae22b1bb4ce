"""The emergency stop, the chair's reset button and the heartbeat.

The e-stop (IEC 60204-1 §10.7, ISO 13850) is a latching mushroom button: its power contact cuts
the actuators' supply (category 0), and a second contact is sensed on a GPIO by a gpiozero
``Button``. Its ``when_pressed`` callback runs on the pin factory's own thread, so it works while
the main loop is stalled; it zeroes every output first (each on its own, see
``Actuators.off``), latches, then queues the record and the alert for a worker thread so the
callback itself never waits on a disk or a command. The main loop reads the line's level every
tick as a second channel (``sync``): a press whose edge was lost still stops the chair.

The e-stop is a stop device only: no pattern of pressing, holding or twisting it free clears the
latch. The reset is a separate, deliberate act at the chair: the :class:`ResetButton`, held at
least ``hold_to_reset`` seconds and released while the e-stop reads released. The main loop then
restarts the controller at its start intensity, ramped from 0, and only then re-enables the
outputs (``sync``), so a reset never resumes the old intensity.

No callback relaxd hands to gpiozero ever raises: lgpio runs every callback on one thread, and
an exception would end it, and with it every later press.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal

from relaxd.controller import Controller, State, Step
from relaxd.errors import RelaxdError
from relaxd.yamlspec import spec

if TYPE_CHECKING:
    from relaxd.actuators import Actuators
    from relaxd.alerts import Alerter
    from relaxd.events import EventLog
    from relaxd.latch import FaultLatch

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class SafetySettings:
    """The e-stop, the chair's reset button and the heartbeat (BCM pin numbers)."""

    estop_pin: int = spec(5, min=2, max=27, help="BCM pin of the e-stop's sense contact (to GND)")
    estop_contact: Literal["nc", "no"] = spec(
        "nc", help="nc: the sense contact is closed while released and opens when pressed, so a "
        "broken wire reads pressed (recommended); no: it closes to GND when pressed")
    bounce_time: float = spec(
        0.01, min=0.001, max=0.03, help="debounce in seconds (adds at most this to the latency)")
    reset_pin: int = spec(16, min=2, max=27,
                          help="BCM pin of the chair's reset button (momentary, to GND)")
    hold_to_reset: float = spec(
        3.0, min=3, max=30, help="seconds the reset button must be held to clear a stop")
    remote_reset: bool = spec(
        False, help="let `relaxd reset` restart the chair from a shell; off: only the reset "
        "button at the chair (someone away from the chair cannot see the child)")
    heartbeat_pin: int | None = spec(
        None, min=2, max=27, help="BCM pin toggled every tick while the loop is healthy, for a "
        "hardware watchdog that drops the actuator relay when it stops; none: not fitted")

    def pins(self) -> dict[str, int | None]:
        return {"e-stop": self.estop_pin, "reset": self.reset_pin,
                "heartbeat": self.heartbeat_pin}


def never_raises(callback: Callable[..., None]) -> Callable[..., None]:
    """Wrap a GPIO callback: log any exception instead of ending the pin factory's thread."""
    @functools.wraps(callback)
    def guarded(*args: Any) -> None:
        try:
            callback(*args)
        except BaseException:  # noqa: BLE001 - the callback thread must survive anything
            log.critical("GPIO callback %s failed", callback.__name__, exc_info=True)
    return guarded


def open_button(pin: int, *, active_when_open: bool, bounce_time: float,
                pin_factory: Any) -> Any:
    """A gpiozero Button on ``pin`` with the pull-up on: pressed when the line reads low, or,
    for a normally-closed contact (``active_when_open``), when it reads high."""
    from gpiozero import Button, GPIOZeroError

    try:
        if not active_when_open:
            return Button(pin, pull_up=True, bounce_time=bounce_time, pin_factory=pin_factory)
        button = Button(pin, pull_up=None, active_state=True, bounce_time=bounce_time,
                        pin_factory=pin_factory)
        button.pin.pull = "up"  # a broken wire floats high: pressed
        return button
    except (GPIOZeroError, OSError) as exc:
        raise RelaxdError(f"cannot open the button on GPIO{pin}: {exc}") from None


class EmergencyStop:
    """A latching e-stop on a GPIO button; see the module docstring for the rules."""

    def __init__(self, actuators: Actuators, settings: SafetySettings | None = None, *,
                 alerter: Alerter | None = None, events: EventLog | None = None,
                 latch: FaultLatch | None = None, now: Callable[[], float] = time.monotonic,
                 pin_factory: Any = None,
                 on_press: Callable[[float], None] | None = None) -> None:
        self.settings = s = settings or SafetySettings()
        self.actuators, self.alerter, self.events, self.now = actuators, alerter, events, now
        self.latch = latch  # follows the stop, written by the worker (never on a callback)
        self.on_press = on_press
        self.button = open_button(s.estop_pin, active_when_open=s.estop_contact == "nc",
                                  bounce_time=s.bounce_time, pin_factory=pin_factory)
        self._lock = threading.Lock()
        self._latched = False
        self._presses = 0  # every stop, so the main loop sees one even if it was reset meanwhile
        self._seen = 0
        self._jobs: queue.SimpleQueue[tuple[str, float, str] | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._work, name="estop-record", daemon=True)
        self._worker.start()
        self.button.when_pressed = never_raises(self._pressed)

    @property
    def latched(self) -> bool:
        return self._latched

    @property
    def pressed(self) -> bool:
        """The sense line reads pressed (or cannot be read, which counts as pressed)."""
        try:
            return bool(self.button.is_pressed)
        except Exception:  # noqa: BLE001 - an unreadable e-stop is a pressed one
            log.critical("cannot read the e-stop line", exc_info=True)
            return True

    def trigger(self, source: str = "command") -> None:
        """Stop now from software (the same as a press). Never raises."""
        self._stop(source)

    def reset(self, source: str = "command") -> bool:
        """Clear the latch (never while the e-stop reads pressed); True if it was cleared.

        Only deliberate acts call this: the reset button at the chair, a caregiver's Start at the
        station (for a stop the station's own STOP made), or ``relaxd reset`` where the
        configuration allows it.
        """
        if self.pressed:
            return False
        with self._lock:
            if not self._latched:
                return False
            self._latched = False
        self._jobs.put(("reset", self.now(), source))
        return True

    def sync(self, t: float, controller: Controller) -> list[Step]:
        """Main-loop side: stop on a pressed line (the second channel), latch the controller
        after a press, restart it after a reset."""
        if not self._latched and self.pressed:
            self.trigger("e-stop line read pressed")
        steps = []
        with self._lock:
            presses, latched = self._presses, self._latched
        if presses != self._seen:
            self._seen = presses
            if controller.state is not State.ESTOPPED:
                steps.append(controller.estop(t))
        if not latched and controller.state is State.ESTOPPED:
            steps.append(controller.reset(t))
            self.enable_outputs()
        return steps

    def enable_outputs(self) -> bool:
        """Let the actuators play again unless the stop is latched; True if they may. The latch
        is read again after enabling, so a press racing this always wins."""
        if self._latched:
            return False
        self.actuators.enable()
        with self._lock:
            if self._latched:  # pressed meanwhile
                self.actuators.off()
                return False
        return True

    def close(self) -> None:
        self._jobs.put(None)
        self._worker.join(timeout=2)
        self.button.close()

    def _pressed(self) -> None:
        """The button's callback, on the pin factory's thread."""
        self._stop("button")

    def _stop(self, source: str) -> None:
        failed = self._off()  # first, before anything that could wait
        with self._lock:
            self._presses += 1
            self._latched = True
        # Off again, now that the latch is set: an enable() by sync() that slipped in between
        # the first off() and the latch cannot outlive this.
        failed += self._off()
        self._jobs.put(("press", self.now(), source))
        if failed:
            self._jobs.put(("fault", self.now(),
                            "could not switch off: " + ", ".join(sorted(set(failed)))))

    def _off(self) -> list[str]:
        """Every output off; the ones that failed (``Actuators.off`` itself never raises, but
        the stop must latch even if a replacement did)."""
        try:
            return list(self.actuators.off())
        except Exception as exc:  # noqa: BLE001
            log.critical("switching the outputs off failed: %s", exc, exc_info=True)
            return [f"outputs ({type(exc).__name__}: {exc})"]

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            action, t, source = job
            try:
                self._record(action, t, source)
            except Exception:  # noqa: BLE001 - the worker must live on for the next press
                log.exception("recording or alerting the e-stop %s failed", action)

    def _record(self, action: str, t: float, source: str) -> None:
        """On the worker: alert, record, and make the latch on disk follow the stop."""
        if action == "fault":
            if self.alerter is not None:
                self.alerter.alert(t, "fault", source)
            return
        if self.events is not None:
            self.events.emit(t, "estop", action=action, source=source)
        if self.latch is not None:
            self.latch.follow(lambda: self._latched, "emergency stop")
        if action == "press":
            if self.alerter is not None:
                self.alerter.alert(t, "estop", f"emergency stop ({source})")
            if self.on_press is not None:
                self.on_press(t)
        elif self.alerter is not None:
            self.alerter.clear()


class ResetButton:
    """The chair's reset button: the one deliberate act that clears a latched stop.

    A press counts when it began and ended while the e-stop read released, and lasted at least
    ``hold_to_reset`` seconds by ``now`` (the session clock, so simulation holds in simulated
    time). Contact chatter restarts the count, so it never resets anything.
    """

    def __init__(self, estop: EmergencyStop, settings: SafetySettings | None = None, *,
                 now: Callable[[], float] = time.monotonic, pin_factory: Any = None) -> None:
        self.estop, self.now = estop, now
        self.settings = s = settings or estop.settings
        self.button = open_button(s.reset_pin, active_when_open=False, bounce_time=s.bounce_time,
                                  pin_factory=pin_factory)
        self._since: float | None = None
        self.button.when_pressed = never_raises(self._pressed)
        self.button.when_released = never_raises(self._released)

    def _pressed(self) -> None:
        self._since = None if self.estop.pressed else self.now()

    def _released(self) -> None:
        since, self._since = self._since, None
        if since is None or self.estop.pressed:
            return
        held = self.now() - since
        if held >= self.settings.hold_to_reset:
            self.estop.reset(f"reset button held {held:.1f} s")
        else:
            log.info("reset button released after %.1f s: hold it %g s to reset", held,
                     self.settings.hold_to_reset)

    def close(self) -> None:
        self.button.close()


class Heartbeat:
    """A pin the main loop toggles every tick (``beat()``) while it is healthy; a hardware
    retriggerable timer on it drops the actuator relay when the toggling stops
    (deploy/estop-wiring.md). ``pin=None``: not fitted, ``beat()`` does nothing."""

    def __init__(self, pin: int | None, pin_factory: Any = None) -> None:
        from gpiozero import DigitalOutputDevice, GPIOZeroError

        self.device = None
        if pin is not None:
            try:
                self.device = DigitalOutputDevice(pin, pin_factory=pin_factory)
            except (GPIOZeroError, OSError) as exc:
                raise RelaxdError(f"cannot open the heartbeat on GPIO{pin}: {exc}") from None

    def beat(self) -> None:
        if self.device is not None:
            self.device.toggle()

    def close(self) -> None:
        if self.device is not None:
            self.device.close()
