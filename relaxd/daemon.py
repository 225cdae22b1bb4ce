"""The chair's main loop: each tick, input -> controller -> actuators, recorded and watched over.

A :class:`Session` is handed its parts (real ones on the chair, simulated ones on a laptop; see
:mod:`relaxd.app`) and runs one relaxation session. Safety is layered:

- the e-stop button's callback zeroes every actuator itself, on gpiozero's thread, whatever the
  loop is doing; the loop then latches the controller too;
- a :class:`StallGuard` thread zeroes everything and alerts when the loop stops ticking;
- any exception, SIGTERM or SIGINT leaves the loop through ``finally``: everything to 0, files
  flushed. A fault is latched in the state directory, so a restarted daemon waits, safe, for a
  caregiver's reset instead of resuming silently.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from relaxd.actuators import Actuators
from relaxd.alerts import Alerter
from relaxd.clock import Clock
from relaxd.controller import Controller, Levels, MoodSample, State, Step
from relaxd.events import EventLog, TraceWriter
from relaxd.inputs import Input, ScriptInput, Sensed
from relaxd.labels import Mood
from relaxd.notify import Notifier, Watchdog
from relaxd.safety import EmergencyStop
from relaxd.status import StatusLine, bar

log = logging.getLogger(__name__)

#: A ``levels`` event is written when any level moved by this much since the last one.
LEVEL_EPSILON = 0.01


class FaultLatch:
    """A stop that must survive a restart: a small JSON file in the state directory.

    Set on every e-stop and fault, cleared by the caregiver's reset. ``relaxd reset`` asks a
    running daemon for that reset by creating :attr:`request`. ``path=None`` keeps the latch in
    memory only (simulation: every rehearsal starts clean).
    """

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> FaultLatch:
        """The chair's latch: ``latch.json`` in the state directory."""
        return cls(state_dir / "latch.json")

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.RLock()
        self.request = path.with_name("reset-request") if path is not None else None
        self.reason: str | None = None
        if path is not None:
            try:
                self.reason = json.loads(path.read_text())["reason"]
            except FileNotFoundError:
                pass
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self.reason = f"latch file unreadable ({exc}): staying stopped"

    def set(self, reason: str) -> None:
        """Latch (in memory at once; on disk durably, raising OSError if it cannot be written)."""
        with self._lock:
            self.reason = reason
            if self.path is not None:
                tmp = self.path.with_suffix(".tmp")
                with open(tmp, "w") as f:
                    f.write(json.dumps({"reason": reason, "at": time.time()}))
                    f.flush()
                    os.fsync(f.fileno())
                tmp.replace(self.path)
                dir_fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)

    def clear(self) -> None:
        with self._lock:
            self.reason = None
            if self.path is not None:
                self.path.unlink(missing_ok=True)

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

    def take_reset_request(self) -> bool:
        """True once after ``relaxd reset`` asked for a reset."""
        if self.request is None or not self.request.exists():
            return False
        self.request.unlink(missing_ok=True)
        return True


class StallGuard:
    """Zeroes the actuators and raises an alert when the loop has not ticked for ``timeout`` s."""

    def __init__(self, timeout: float, on_stall: Callable[[float], None]) -> None:
        self.timeout = timeout
        self._on_stall = on_stall
        self._last = time.monotonic()
        self._stop = threading.Event()
        self.stalled = False
        self._thread = threading.Thread(target=self._watch, name="relaxd-stallguard", daemon=True)

    def start(self) -> None:
        self._last = time.monotonic()
        self._thread.start()

    def tick(self) -> None:
        self._last = time.monotonic()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(min(0.25, self.timeout / 4)):
            idle = time.monotonic() - self._last
            if idle > self.timeout and not self.stalled:
                self.stalled = True
                self._on_stall(idle)


@dataclass
class Session:
    """One session's parts; :meth:`run` plays it, closes them, and returns the exit code."""

    clock: Clock
    input: Input
    controller: Controller
    actuators: Actuators
    estop: EmergencyStop
    alerter: Alerter
    events: EventLog
    latch: FaultLatch
    period: float | None = 0.1  # seconds between ticks; None: as fast as the camera delivers
    notifier: Notifier = field(default_factory=lambda: Notifier(use_systemd=False))
    status: StatusLine | None = None
    repeat: bool = False  # the chair: after a session, wait for the next child
    roll_record: Callable[[], None] | None = None  # start a new session record
    stall_timeout: float = 5.0
    camera_grace: float = 120.0  # camera down this long: stop petting systemd's watchdog
    trace: TraceWriter | None = None  # --trace: each output as driven, every tick
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _stop_reason: str = field(default="", init=False)
    _last_levels: Levels | None = field(default=None, init=False)
    _last_mood: Mood | None = field(default=None, init=False)
    _no_input: str | None = field(default=None, init=False)
    _down_since: float = field(default=0.0, init=False)
    _last_status: float = field(default=float("-inf"), init=False)

    @property
    def stop_reason(self) -> str:
        return self._stop_reason

    def request_stop(self, reason: str) -> None:
        """Ask the loop to end after this tick (signal handlers call this)."""
        self._stop_reason = reason
        self._stop.set()
        self.actuators.off()

    # --- the loop ----------------------------------------------------------------------------

    def run(self) -> int:
        watchdog = Watchdog(self.notifier)
        guard = StallGuard(self.stall_timeout, self._stalled)
        code = 0
        t = self.clock.now()
        self.events.emit(t, "session", state="start", scenario=self.controller.scenario.name)
        try:
            self.latch.take_reset_request()  # a request left from before this start is stale
            if not self.estop.latched:
                self.actuators.enable()
            if self.latch.reason is not None:
                self.estop.trigger(f"still latched from before the restart: {self.latch.reason}")
            self.notifier.ready("running")
            guard.start()
            while not self._stop.is_set():
                t = self.clock.now()
                started = time.monotonic()
                sensed = self.input.read(t)
                if guard.stalled:
                    raise RuntimeError("main loop stalled")
                if sensed is None:
                    self._stop_reason = "input ended"
                    break
                step = self._tick(t, sensed)
                guard.tick()
                if sensed.no_input is None or t - self._down_since < self.camera_grace:
                    watchdog.pet()
                if step.state is State.ENDED:
                    if not self.repeat:
                        self._stop_reason = "scenario ended"
                        break
                    self._next_session(t)
                if (self.estop.latched and isinstance(self.input, ScriptInput)
                        and self.input.exhausted):
                    self._stop_reason = "e-stop latched and the script is over"
                    break
                if self.period is not None:
                    self.clock.sleep(self.period - (time.monotonic() - started))
        except Exception as exc:  # noqa: BLE001 - any fault: safe state, alert, latch
            code = 1
            self.actuators.off()
            reason = f"fault: {type(exc).__name__}: {exc}"
            log.critical("%s", reason, exc_info=not isinstance(exc, RuntimeError))
            self.alerter.alert(self.clock.now(), "fault", reason)
            self._stop_reason = reason
            self._latch_fault(reason)
        finally:
            guard.stop()
            self.actuators.off()
            self.notifier.stopping(self._stop_reason or "stopping")
            self.estop.close()  # its worker records any press still queued
            t = self.clock.now()
            self._record_levels(t, self.actuators.levels(), force=True)
            self.events.emit(t, "session", state="end", reason=self._stop_reason or "stopped")
            for part in (self.input, self.actuators, self.alerter, self.events):
                part.close()
            if self.status is not None:
                self.status.close()
        return code

    def _next_session(self, t: float) -> None:
        """The scenario is over: record the session, then idle until the seat has been empty
        and a child sits down again."""
        self.events.emit(t, "session", state="end", reason="scenario ended")
        if self.roll_record is not None:
            self.roll_record()
        self.clock.restart()
        self._down_since = 0.0
        self.controller = Controller(self.controller.scenario, after_previous=True,
                                     caps=self.controller.caps)
        self.events.emit(0.0, "session", state="start", scenario=self.controller.scenario.name)

    def _tick(self, t: float, sensed: Sensed) -> Step:
        if self.estop.latched and self.latch.take_reset_request():
            self.estop.reset("relaxd reset")
        for step in self.estop.sync(t, self.controller):
            self._record_step(t, step)
        if self.latch.follow(lambda: self.estop.latched, "emergency stop"):
            self.alerter.clear()
        reading = sensed.reading
        if (sensed.no_input is None) != (self._no_input is None):
            self._no_input = sensed.no_input
            if sensed.no_input is not None:
                self._down_since = t
                self.alerter.alert(t, "camera", sensed.no_input)
            else:
                self.events.emit(t, "source", state="back")
        if sensed.no_input is not None:
            # Down, not just lost: this also holds a session that (re)starts without a camera.
            self._record_step(t, self.controller.input_lost(t, sensed.no_input))
            reading = MoodSample(Mood.NO_FACE, 0.0)  # not the last mood the smoother remembers
        if reading.mood != self._last_mood:
            self._last_mood = reading.mood
            self.events.emit(t, "mood", mood=reading.mood.value,
                             confidence=round(float(reading.confidence), 3))
        step = self.controller.step(t, reading)
        self._record_step(t, step)
        self.actuators.apply(t, step)
        if self.trace is not None:
            self.trace.write(t, self.actuators.levels())
        self._record_levels(t, step.levels if not self.actuators.inhibited else Levels())
        self._show(t, sensed, step)
        return step

    def _record_step(self, t: float, step: Step) -> None:
        for d in step.decisions:
            self.events.emit(t, "decision", action=d.action, reason=d.reason,
                             state=step.state.value, intensity=round(step.intensity, 3))
            if d.alert:
                self.alerter.alert(t, d.action, d.alert)

    def _record_levels(self, t: float, levels: Levels, force: bool = False) -> None:
        last = self._last_levels
        if (force or last is None
                or max(abs(levels.light - last.light), abs(levels.audio - last.audio),
                       abs(levels.vibration - last.vibration)) >= LEVEL_EPSILON
                or (levels == Levels() and last != Levels())):
            self._last_levels = levels
            self.events.emit(t, "levels", light=round(levels.light, 3),
                             audio=round(levels.audio, 3), vibration=round(levels.vibration, 3))

    def _stalled(self, idle: float) -> None:
        """From the StallGuard thread: the loop is stuck. Off, alert, and latch, so that a
        restart by systemd's watchdog waits for a caregiver instead of resuming."""
        self.actuators.off()
        reason = f"main loop stalled for {idle:.1f} s"
        self.alerter.alert(self.clock.now(), "stalled", f"{reason}: all outputs off")
        self._latch_fault(reason)
        self.estop.trigger(reason)

    def _latch_fault(self, reason: str) -> None:
        try:
            self.latch.set(reason)
        except OSError as exc:
            log.critical("cannot record the fault latch in %s: %s", self.latch.path, exc)

    def _show(self, t: float, sensed: Sensed, step: Step) -> None:
        if self.status is None and not self.notifier.enabled:
            return
        lv = step.levels if not self.actuators.inhibited else Levels()
        if isinstance(self.input, ScriptInput):
            face = "scripted mood"
        elif sensed.no_input is not None:
            face = "camera down"
        elif sensed.emotion is not None:
            face = f"face {sensed.emotion} {sensed.emotion_confidence:.0%}"
            if sensed.faces_seen > 1:
                face += f" ({sensed.faces_seen} faces, child: {sensed.rule})"
        else:
            face = "no face" if sensed.faces_seen == 0 else f"{sensed.faces_seen} faces"
        text = (f"t={t:7.1f}s  {face:<19} mood {sensed.reading.mood.value:<8} "
                f"{step.state.value:<9} {step.phase_name[:14]:<14} i={step.intensity:.2f}  "
                f"light {bar(lv.light)} sound {bar(lv.audio)} vib {bar(lv.vibration)}"
                + ("  E-STOP" if self.estop.latched else ""))
        if self.status is not None:
            self.status.show(text)
        now = time.monotonic()
        if now - self._last_status >= 1.0:
            self._last_status = now
            self.notifier.status(text)


def install_signal_handlers(session: Session) -> None:
    """SIGTERM and SIGINT end the session cleanly: outputs off at once, then the loop stops."""
    def handler(signum: int, _frame: Any) -> None:
        session.request_stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
