"""The emergency stop and its latency benchmark.

The e-stop button is read on a GPIO (pull-up, pressed = low) by a gpiozero ``Button``. Its
``when_pressed`` callback runs in the pin factory's own thread, so it works while the main loop
is stalled; it calls ``Actuators.off()`` first (lock-free, everything 0 at once), then queues the
record and the alert for a worker thread so the callback itself never waits on a disk or a
command. The stop latches. It is reset only by a deliberate act: ``reset()`` from a command, or a
*new* press -- one that begins after the button has been released for ``rearm_after`` seconds,
so contact chatter is never one -- held for ``hold_to_reset`` seconds and then released (a long first press never
resets). Software is the second line: wire the button so it also cuts actuator power
(deploy/estop-wiring.md).

The main loop calls ``EmergencyStop.sync(t, controller)`` every tick: it latches the controller
(``estop``) after any press, and after a reset restarts it at the start intensity and only then
re-enables the actuators -- so a reset never resumes the old intensity.
"""

from __future__ import annotations

import logging
import queue
import statistics
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

from relaxd.controller import Controller, State, Step
from relaxd.errors import RelaxdError
from relaxd.yamlspec import spec

if TYPE_CHECKING:
    from relaxd.actuators import Actuators
    from relaxd.alerts import Alerter
    from relaxd.events import EventLog

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class SafetySettings:
    """E-stop button and caregiver alert outputs (BCM pin numbers)."""

    estop_pin: int = spec(5, min=2, max=27, help="BCM pin of the e-stop's sense contact (to GND)")
    bounce_time: float = spec(
        0.01, min=0.001, max=0.03, help="debounce in seconds (adds at most this to the latency)")
    rearm_after: float = spec(
        1.0, min=0.05, max=10,
        help="a reset press counts only after the button has been released this long (s)")
    hold_to_reset: float = spec(
        3.0, min=3, max=30, help="seconds a new press must be held to reset a latched stop")
    buzzer_pin: int | None = spec(6, min=2, max=27, help="BCM pin of the alert buzzer; none")
    alert_led_pin: int | None = spec(26, min=2, max=27, help="BCM pin of the alert LED; none")
    alert_command: list[str] = spec(
        default_factory=list, help="program + args run on each alert (no shell); reason appended")
    alert_timeout: float = spec(10.0, min=1, max=120, help="seconds before the command is killed")

    def check(self) -> Iterable[tuple[str | None, str]]:
        pins = [p for p in (self.estop_pin, self.buzzer_pin, self.alert_led_pin) if p is not None]
        if len(set(pins)) != len(pins):
            yield None, f"e-stop, buzzer and alert LED pins must differ, got {pins}"


class EmergencyStop:
    """A latching e-stop on a GPIO button; see the module docstring for the reset rules."""

    def __init__(self, actuators: Actuators, settings: SafetySettings | None = None, *,
                 alerter: Alerter | None = None, events: EventLog | None = None,
                 now: Callable[[], float] = time.monotonic, pin_factory: Any = None,
                 on_press: Callable[[float], None] | None = None) -> None:
        from gpiozero import Button, GPIOZeroError

        self.settings = s = settings or SafetySettings()
        self.actuators, self.alerter, self.events, self.now = actuators, alerter, events, now
        self.on_press = on_press
        try:
            self.button = Button(s.estop_pin, pull_up=True, bounce_time=s.bounce_time,
                                 hold_time=s.hold_to_reset, pin_factory=pin_factory)
        except (GPIOZeroError, OSError) as exc:
            raise RelaxdError(f"cannot open the e-stop button on GPIO{s.estop_pin}: {exc}") \
                from None
        self._lock = threading.Lock()
        self._latched = False
        self._released_at: float | None = None  # while latched: when the button was let go
        self._presses = 0  # every stop, so the main loop sees one even if it was reset meanwhile
        self._seen = 0
        self._reset_press = False  # this press began while latched: holding it may reset
        self._armed = False
        self._jobs: queue.SimpleQueue[tuple[str, float, str] | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._work, name="estop-record", daemon=True)
        self._worker.start()
        self.button.when_pressed = self._pressed
        self.button.when_held = self._held
        self.button.when_released = self._released
        if self.button.is_pressed:  # pressed at start-up: stay stopped
            self.trigger("pressed at start-up")

    @property
    def latched(self) -> bool:
        return self._latched

    def trigger(self, source: str = "command") -> None:
        """Stop now from software (the same as a press)."""
        try:
            self.actuators.off()
        finally:
            self._stop(source)

    def reset(self, source: str = "command") -> bool:
        """Clear the latch (not while the button is held down); True if it was cleared."""
        if self.button.is_pressed:
            return False
        with self._lock:
            if not self._latched:
                return False
            self._latched = self._armed = False
        self._jobs.put(("reset", self.now(), source))
        return True

    def sync(self, t: float, controller: Controller) -> list[Step]:
        """Main-loop side: latch the controller after a press, restart it after a reset."""
        steps = []
        with self._lock:
            presses, latched = self._presses, self._latched
        if presses != self._seen:
            self._seen = presses
            if controller.state is not State.ESTOPPED:
                steps.append(controller.estop(t))
        if not latched and controller.state is State.ESTOPPED:
            steps.append(controller.reset(t))
            self.actuators.enable()
            with self._lock:
                if self._latched:  # pressed again meanwhile
                    self.actuators.off()
        return steps

    def close(self) -> None:
        self._jobs.put(None)
        self._worker.join(timeout=2)
        self.button.close()

    # --- GPIO callbacks (the pin factory's thread) ------------------------------------------

    def _pressed(self) -> None:
        try:
            self.actuators.off()  # first, before anything that could wait
        finally:  # latched even if a driver failed (the relay has cut the power anyway)
            with self._lock:
                rested = (self._released_at is not None
                          and time.monotonic() - self._released_at >= self.settings.rearm_after)
                self._reset_press, self._armed = self._latched and rested, False
            if not self._reset_press:
                self._stop("button")

    def _held(self) -> None:
        with self._lock:
            self._armed = self._reset_press and self._latched

    def _released(self) -> None:
        with self._lock:
            armed, self._armed, self._reset_press = self._armed, False, False
            self._released_at = time.monotonic() if self._latched else None
        if armed:
            self.reset(f"button held {self.settings.hold_to_reset:g} s")

    def _stop(self, source: str) -> None:
        with self._lock:
            self._presses += 1
            self._latched = True
        try:
            # Off again, now that the latch is set: an enable() by sync() that slipped in between
            # the first off() and the latch cannot outlive this.
            self.actuators.off()
        finally:
            self._jobs.put(("press", self.now(), source))

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            action, t, source = job
            try:
                if self.events is not None:
                    self.events.emit(t, "estop", action=action, source=source)
                if action == "press":
                    if self.alerter is not None:
                        self.alerter.alert(t, "estop", f"emergency stop ({source})")
                    if self.on_press is not None:
                        self.on_press(t)
            except Exception:  # noqa: BLE001 - the worker must live on for the next press
                log.exception("recording or alerting the e-stop %s failed", action)


@dataclass(frozen=True)
class LatencyStats:
    n: int
    median_ms: float
    p95_ms: float
    max_ms: float

    def __str__(self) -> str:
        return (f"e-stop latency over {self.n} presses: median {self.median_ms:.3f} ms, "
                f"p95 {self.p95_ms:.3f} ms, max {self.max_ms:.3f} ms")


def _wait(cond: Callable[[], bool], what: str, timeout: float = 2.0) -> None:
    deadline = time.perf_counter() + timeout
    while not cond():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")


def estop_latency(n: int = 200) -> LatencyStats:
    """Press -> every actuator pin at 0, on mock pins, while a main loop is stalled in apply().

    The stalled loop holds the actuators' lock inside ``apply()`` (its audio output blocks), so
    the figure shows the press path does not wait on it. Mock pins call back synchronously: on
    the Pi add the lgpio callback delay and up to ``bounce_time``.
    """
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    from relaxd.actuators import Actuators, ActuatorSettings
    from relaxd.audio import NullOutput
    from relaxd.controller import MoodSample
    from relaxd.labels import Mood
    from relaxd.paths import default_scenario
    from relaxd.scenario import load_scenario

    gate = threading.Event()

    class StalledAudio(NullOutput):
        def advance(self, t: float) -> None:
            gate.wait()

    factory = MockFactory(pin_class=MockPWMPin)
    settings = ActuatorSettings()
    acts = Actuators(settings, StalledAudio(), pin_factory=factory)
    stop = EmergencyStop(acts, SafetySettings(buzzer_pin=None, alert_led_pin=None),
                         pin_factory=factory)
    ctrl = Controller(load_scenario(default_scenario()))
    ctrl.step(0.0, MoodSample(Mood.NEUTRAL))
    step = ctrl.step(60.0, MoodSample(Mood.NEUTRAL))  # levels well above 0
    pins = [factory.pin(p) for p in (settings.red_pin, settings.green_pin, settings.blue_pin,
                                     settings.vibration_pin)]
    button = factory.pin(stop.settings.estop_pin)
    times = []
    try:
        for _ in range(n):
            gate.clear()
            loop = threading.Thread(target=acts.apply, args=(60.0, step), daemon=True)
            loop.start()
            _wait(lambda: any(p.state > 0 for p in pins), "the stalled loop to switch on")
            t0 = time.perf_counter()
            button.drive_low()
            _wait(lambda: all(p.state == 0 for p in pins), "the actuators to switch off")
            times.append((time.perf_counter() - t0) * 1000)
            button.drive_high()
            stop.reset()
            gate.set()
            loop.join()
            acts.enable()
    finally:
        gate.set()
        stop.close()
        acts.close()
        factory.reset()
    times.sort()
    return LatencyStats(n, statistics.median(times), times[int(0.95 * (n - 1))], times[-1])
