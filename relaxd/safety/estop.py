"""The emergency stop, the chair's reset button and the heartbeat.

The e-stop (IEC 60204-1 §10.7, ISO 13850) is a latching mushroom button: its power contact cuts
the actuators' supply (category 0), and a second contact is sensed on a GPIO by a gpiozero
``Button``. Its ``when_pressed`` callback runs on the pin factory's own thread, so it works while
the main loop is stalled; it zeroes every output first (each on its own, see
``Actuators.off``), latches in the arbiter's memory (:class:`relaxd.safety.latch.FaultLatch`, never
the disk), then queues the alert, the record and the latch's write for a worker thread, in that
order, so the callback never waits on a disk or a command and a full disk never silences a stop.
The main loop reads the line's level every tick as a second channel (``sync``): a press whose
edge was lost still stops the chair.

The e-stop is a stop device only: no pattern of pressing, holding or twisting it free clears the
latch. The reset is a separate, deliberate act at the chair: the :class:`ResetButton`, held at
least ``hold_to_reset`` seconds while the e-stop reads released and no other stop comes. A reset
is not a restart (IEC 60204-1 §9.2.5.4.2): the chair is left idle with every output at 0, and
only a start (the reset button pressed again, the station's Start or ``relaxd start``) plays
again, from the scenario's start intensity, ramped from 0.

No callback relaxd hands to gpiozero ever raises: lgpio runs every callback on one thread, and
an exception would end it, and with it every later press.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from relaxd.control.controller import Controller, State, Step
from relaxd.core.errors import RelaxdError
from relaxd.safety.latch import Clearer, StopRefused
from relaxd.safety.settings import SafetySettings

if TYPE_CHECKING:
    from relaxd.outputs.actuators import Actuators
    from relaxd.records.events import EventLog
    from relaxd.safety.alerts import Alerter
    from relaxd.safety.latch import FaultLatch

log = logging.getLogger(__name__)


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


#: How each stop cause is alerted: the alert's reason.
_ALERT_REASONS = {"estop": "estop", "station-stop": "estop", "fault": "fault", "crash": "fault",
                  "stall": "stalled", "clinic-stop": "clinic-stop"}


class EmergencyStop:
    """A latching e-stop on a GPIO button; see the module docstring for the rules.

    Every stop of the chair, the button's and software's (``trigger``), goes through here into
    the arbiter (:class:`relaxd.safety.latch.FaultLatch`), and so does every clearing of one.
    """

    def __init__(self, actuators: Actuators, settings: SafetySettings | None = None, *,
                 alerter: Alerter | None = None, events: EventLog | None = None,
                 latch: FaultLatch | None = None, now: Callable[[], float] = time.monotonic,
                 pin_factory: Any = None,
                 on_press: Callable[[float], None] | None = None) -> None:
        from relaxd.safety.latch import FaultLatch

        self.settings = s = settings or SafetySettings()
        self.actuators, self.alerter, self.events, self.now = actuators, alerter, events, now
        self.latch = latch if latch is not None else FaultLatch(None)  # the arbiter
        self.on_press = on_press
        self.button = open_button(s.estop_pin, active_when_open=s.estop_contact == "nc",
                                  bounce_time=s.bounce_time, pin_factory=pin_factory)
        self._seen = self.latch.stop_seq  # the newest stop the main loop has acted on
        self._start_request: int | None = None  # the reset button's start, for the loop
        self._jobs: queue.SimpleQueue[tuple[str, float, str, str] | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._work, name="estop-record", daemon=True)
        self._worker.start()
        self.button.when_pressed = never_raises(self._pressed)

    @property
    def latched(self) -> bool:
        return self.latch.latched

    @property
    def pressed(self) -> bool:
        """The sense line reads pressed (or cannot be read, which counts as pressed)."""
        try:
            return bool(self.button.is_pressed)
        except Exception:  # noqa: BLE001 - an unreadable e-stop is a pressed one
            log.critical("cannot read the e-stop line", exc_info=True)
            return True

    def trigger(self, source: str = "command", cause: str = "estop") -> int:
        """Stop now from software (as a press does), latched with ``cause``; the stop's number.
        Never raises."""
        return self._stop(cause, source)

    def clear(self, by: Clearer, after_stop: int, source: str) -> None:
        """Clear the latch for a request made when the newest stop was ``after_stop``: never
        while the e-stop reads pressed, never after a newer stop, and from the station only a
        latch of its own STOP alone. StopRefused (one line) otherwise. The chair stays idle
        with every output at 0: a start is its own act (:meth:`enable_outputs`)."""
        if self.pressed:
            raise StopRefused("the e-stop is pressed down: twist it free first")
        self.latch.release(by, after_stop)  # in memory; the worker writes it
        self._jobs.put(("reset", self.now(), source, ""))

    def reset(self, source: str = "command", after_stop: int | None = None) -> bool:
        """The chair's reset (its button, or ``relaxd reset`` where allowed): :meth:`clear` for
        any cause; True if it cleared the latch."""
        try:
            self.clear("chair", self.latch.stop_seq if after_stop is None else after_stop,
                       source)
        except StopRefused as exc:
            log.warning("reset (%s) refused: %s", source, exc)
            return False
        return True

    def request_start(self, after_stop: int) -> None:
        """The reset button's press after a reset: ask the loop to start a session, bound to
        the newest stop when the press began."""
        self._start_request = after_stop

    def take_start_request(self) -> int | None:
        """The loop's side of :meth:`request_start`: the stop number it is bound to, once."""
        request, self._start_request = self._start_request, None
        return request

    def sync(self, t: float, controller: Controller) -> list[Step]:
        """Main-loop side: stop on a pressed line the latch has not heard of (the second
        channel), stop the controller after any stop, and leave it idle after a reset."""
        if self.pressed and "estop" not in self.latch.causes:
            self.trigger("e-stop line read pressed")
        steps = []
        seq, latched = self.latch.stop_seq, self.latch.latched
        new_stop, self._seen = seq != self._seen, seq
        if (new_stop or latched) and controller.state is not State.ESTOPPED:
            steps.append(controller.estop(t))
        if not latched and controller.state is State.ESTOPPED:
            steps.append(controller.reset(t))
        return steps

    def enable_outputs(self) -> bool:
        """Let the actuators play again unless the stop is latched; True if they may. The latch
        is read again after enabling, so a press racing this always wins."""
        if self.latch.latched:
            return False
        self.actuators.enable()
        if self.latch.latched:  # pressed meanwhile
            self.actuators.off()
            return False
        return True

    def close(self) -> None:
        self._jobs.put(None)
        self._worker.join(timeout=2)
        self.button.close()

    def _pressed(self) -> None:
        """The button's callback, on the pin factory's thread."""
        self._stop("estop", "button")

    def _stop(self, cause: str, source: str) -> int:
        failed = self._off()  # first, before anything that could wait
        seq = self.latch.stop(cause, source)
        # Off again, now that the latch is set: an enable() that slipped in between the first
        # off() and the latch cannot outlive this.
        failed += self._off()
        self._jobs.put(("press", self.now(), source, cause))
        if failed:
            self._jobs.put(("fault", self.now(),
                            "could not switch off: " + ", ".join(sorted(set(failed))), "fault"))
        return seq

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
            try:
                self._record(*job)
            except Exception:  # noqa: BLE001 - the worker must live on for the next press
                log.exception("recording or alerting the e-stop %s failed", job[0])

    def _record(self, action: str, t: float, source: str, cause: str) -> None:
        """On the worker: alert first, then record, then write the latch to disk, so that a
        full or read-only disk never silences a stop; a failed write is itself alerted."""
        if action == "fault":
            self._alert(t, "fault", source)
            self.latch.stop("fault", source)
        elif action == "press":
            self._alert(t, _ALERT_REASONS.get(cause, "estop"), _stop_words(cause, source))
        elif self.alerter is not None:
            self.alerter.clear()
        if self.events is not None:
            self.events.emit(t, "estop", action=action, source=source, cause=cause,
                             stop_seq=self.latch.stop_seq)
        self._save(t)
        if action == "press" and self.on_press is not None:
            self.on_press(t)

    def _save(self, t: float) -> None:
        try:
            self.latch.save()
        except OSError as exc:
            log.critical("cannot record the stop in %s: %s", self.latch.path, exc)
            self._alert(t, "fault", f"cannot record the stop on disk ({exc.strerror or exc}): "
                                    "the chair is stopped now, but a restart may not know it")

    def _alert(self, t: float, reason: str, detail: str) -> None:
        if self.alerter is not None:
            self.alerter.alert(t, reason, detail)


def _stop_words(cause: str, source: str) -> str:
    """An alert's detail for a stop: the e-stop's as before, the others as they happened."""
    return f"emergency stop ({source})" if cause in ("estop", "station-stop") else source


#: A start at the reset button is a press of at least this long (a contact's bounce or glitch is
#: shorter; a caregiver's press is not)...
START_PRESS_S = 0.2
#: ...that begins at least this long after the reset was let go (not the reset's own bounce).
START_SETTLE_S = 1.0


class ResetButton:
    """The chair's reset button: the one deliberate act that clears a latched stop, and then,
    pressed again, the chair's own start.

    A hold counts only while the e-stop read released throughout and no stop happened during
    it (the arbiter's stop number did not move); it clears the latch when it lasted at least
    ``hold_to_reset`` seconds by ``now`` (the session clock, so simulation holds in simulated
    time). Contact chatter restarts the count, so it never resets anything. A reset leaves the
    chair idle; the button's next deliberate press (at least :data:`START_PRESS_S`, beginning
    :data:`START_SETTLE_S` after the reset) asks the loop for a start, bound to the newest stop
    at the press, so neither a bounce of the reset's release nor a glitch starts anything.
    """

    def __init__(self, estop: EmergencyStop, settings: SafetySettings | None = None, *,
                 now: Callable[[], float] = time.monotonic, pin_factory: Any = None) -> None:
        self.estop, self.now = estop, now
        self.settings = s = settings or estop.settings
        self.button = open_button(s.reset_pin, active_when_open=False, bounce_time=s.bounce_time,
                                  pin_factory=pin_factory)
        self._since: float | None = None
        self._bound = 0  # the newest stop when the press began
        self._was_latched = False
        self._reset_at = float("-inf")  # when a hold last cleared the latch
        self.button.when_pressed = never_raises(self._pressed)
        self.button.when_released = never_raises(self._released)

    def _pressed(self) -> None:
        latch = self.estop.latch
        self._bound, self._was_latched = latch.stop_seq, latch.latched
        self._since = None if self.estop.pressed else self.now()

    def _released(self) -> None:
        since, self._since = self._since, None
        if since is None or self.estop.pressed or self.estop.latch.stop_seq != self._bound:
            log.info("reset button: the e-stop was pressed or a stop came during the press; "
                     "nothing done")
            return
        held = self.now() - since
        if not self._was_latched:
            if held >= START_PRESS_S and since - self._reset_at >= START_SETTLE_S:
                self.estop.request_start(self._bound)
            else:
                log.info("reset button: a %.2f s pulse right after a reset or too short for a "
                         "start; nothing done", held)
            return
        if held >= self.settings.hold_to_reset:
            if self.estop.reset(f"reset button held {held:.1f} s", after_stop=self._bound):
                self._reset_at = self.now()
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
