"""The chair's main loop: each tick, input -> controller -> actuators, recorded and watched over.

A :class:`Session` is handed its parts (real ones on the chair, simulated ones on a laptop; see
:mod:`relaxd.daemon.build`) and runs one relaxation session. Safety is layered:

- the e-stop button's callback zeroes every actuator itself, on gpiozero's thread, whatever the
  loop is doing; the loop then latches the controller too;
- a :class:`StallGuard` thread zeroes everything and alerts when the loop stops ticking;
- any exception, SIGTERM or SIGINT leaves the loop through ``finally``: everything to 0, files
  flushed. A fault is latched in the state directory, so a restarted daemon waits, safe, for a
  caregiver's reset instead of resuming silently;
- a run marker in the state directory is removed only on a clean exit, so a start after a
  crash, a kill or a power cut comes up latched (:mod:`relaxd.safety.latch`).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Callable, Protocol

from relaxd.control.body import ADULT_CALM
from relaxd.control.controller import Caps, Controller, Levels, MoodSample, State, Step
from relaxd.core.clock import Clock
from relaxd.core.labels import Mood
from relaxd.daemon.notify import Notifier, Watchdog
from relaxd.daemon.station_inputs import StayUp, manual_or_camera, read_against
from relaxd.daemon.status import StatusLine, bar
from relaxd.outputs.actuators import Actuators
from relaxd.records.events import EventLog, TraceWriter
from relaxd.safety.alerts import Alerter
from relaxd.safety.estop import EmergencyStop, Heartbeat
from relaxd.safety.latch import UNCLEAN_REASON, FaultLatch, RunMarker
from relaxd.vision.body.vitals import ChairOutputs
from relaxd.vision.inputs import Input, Sensed, hand_over, seen_by_caregiver

if TYPE_CHECKING:
    from relaxd.children.session import ChildSession
    from relaxd.control.scenario import Scenario
    from relaxd.safety.thermal import ThermalWatch
    from relaxd.vision.baseline import Baseline

log = logging.getLogger(__name__)

#: A ``levels`` event is written when any level moved by this much since the last one.
LEVEL_EPSILON = 0.01

#: A ``vitals`` event at least this often (seconds of session time) while they are known.
VITALS_EVERY_S = 5.0

#: Who marks an observation a virtual child's file has a caregiver make.
SIMULATED_CAREGIVER = "caregiver (simulated)"

#: Exit status of the deliberate restart that recovers a camera down too long: a clean exit
#: (outputs at 0, run marker removed) that systemd's ``Restart=on-failure`` restarts.
EXIT_CAMERA_RESTART = 75


class StationLink(Protocol):
    """The caregiver station's side of the loop (:class:`relaxd.daemon.link.ControlLink`): once a
    tick it carries out the queued commands (``obey``, through the session's methods) and
    publishes the chair's state (``publish``)."""

    def obey(self, t: float, session: Session) -> None: ...

    def publish(self, t: float, session: Session, sensed: Sensed, step: Step) -> None: ...


class LoopStalled(Exception):
    """The main loop did not tick for the stall timeout (the StallGuard has stopped everything)."""


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
    # A new session record (the scenario's name, the session's child or None).
    roll_record: Callable[[str, ChildSession | None], None] | None = None
    marker: RunMarker | None = None  # None: no crash detection (simulation without a state)
    remote_reset: bool = False  # honour `relaxd reset` requests (safety.remote_reset)
    heartbeat: Heartbeat | None = None  # toggled every healthy tick, for a hardware watchdog
    stall_timeout: float = 5.0
    camera_grace: float = 120.0  # camera down this long: stop petting systemd's watchdog
    trace: TraceWriter | None = None  # --trace: each output as driven, every tick
    # The caregiver station's link (attach_station): once a tick it carries out the queued
    # commands (obey) and publishes the state (publish). None: no station.
    control: StationLink | None = None
    # The session's child (profile, caps, baseline), or None.
    child: ChildSession | None = None
    # The Pi's temperature watch: polled once a tick by _watch_heat; None: not watched.
    thermal: ThermalWatch | None = None
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _stop_reason: str = field(default="", init=False)
    _last_levels: Levels | None = field(default=None, init=False)
    _last_mood: Mood | None = field(default=None, init=False)
    _no_input: str | None = field(default=None, init=False)
    _down_since: float = field(default=0.0, init=False)
    _last_status: float = field(default=float("-inf"), init=False)
    _last_vitals: float = field(default=float("-inf"), init=False)

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
        guard = StallGuard(self.stall_timeout, self._stalled)
        code = 1
        try:
            self._start()
            guard.start()
            code = self._loop(guard)
        except Exception as exc:  # noqa: BLE001 - any fault: safe state, alert, latch
            self._fault(exc)
        finally:
            guard.stop()
            self._finish(clean=code != 1)
        return code

    def _start(self) -> None:
        """Record the start; come up latched after an unclean exit or a latch kept on disk."""
        t = self.clock.now()
        self._know_child()
        self._record_start(t, self.controller.scenario.name)
        self.latch.take_reset_request()  # a request left from before this start is stale
        kept = self.latch.reason
        if self.marker is not None and self.marker.begin() and "crash" not in self.latch.causes:
            self.estop.trigger(f"{UNCLEAN_REASON}: every output stays off until the reset "
                               "button at the chair is pressed", cause="crash")
        elif kept is not None:
            self.actuators.off()
            self.alerter.alert(t, "estop", f"still latched from before the restart: {kept}")
        if self.estop.pressed:
            self.estop.trigger("e-stop reads pressed at start-up")
        self.estop.enable_outputs()
        self.notifier.ready("running")

    def _loop(self, guard: StallGuard) -> int:
        """Tick until the input, the scenario or a signal ends it; the exit status."""
        watchdog = Watchdog(self.notifier)
        while not self._stop.is_set():
            t = self.clock.now()
            started = time.monotonic()
            sensed = self.input.read(t)
            if guard.stalled:
                raise LoopStalled("main loop stalled")
            if sensed is None:
                return self._end("input ended")
            step = self._tick(t, sensed)
            guard.tick()
            watchdog.pet()
            if self.heartbeat is not None:
                self.heartbeat.beat()
            if sensed.no_input is not None and t - self._down_since >= self.camera_grace:
                return self._end(f"camera down for {t - self._down_since:.0f} s: exiting so that "
                                 "systemd restarts relaxd afresh", EXIT_CAMERA_RESTART)
            if step.state is State.ENDED:
                if not self.repeat:
                    return self._end("scenario ended")
                self._next_session(t)
            if self.input.scripted and self.input.exhausted:
                if self.estop.latched:
                    return self._end("e-stop latched and the script is over")
                if self.controller.awaiting_start:
                    return self._end("reset, nobody started a session, and the script is over")
            if self.period is not None:
                self.clock.next_tick(self.period, time.monotonic() - started)
        return 0

    def _end(self, reason: str, code: int = 0) -> int:
        self._stop_reason = reason
        return code

    def _fault(self, exc: Exception) -> None:
        self.actuators.off()
        reason = f"fault: {type(exc).__name__}: {exc}"
        log.critical("%s", reason, exc_info=not isinstance(exc, LoopStalled))
        self._stop_reason = reason
        if not isinstance(exc, LoopStalled):  # the StallGuard has latched a stall already
            self.estop.trigger(reason, cause="fault")

    def _finish(self, clean: bool) -> None:
        """Everything off, every record closed; then, on a clean exit only, the run marker goes,
        and only once the latch is on disk as it is in memory: a stop that could not be written
        (a full SD card) keeps the marker, so the next start comes up latched (``crash``)."""
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
        if clean and self.marker is not None and self._latch_on_disk():
            self.marker.end()

    def _latch_on_disk(self) -> bool:
        """Write the latch once more; False (logged) when it cannot be written."""
        try:
            self.latch.save()
        except OSError as exc:
            log.critical("the latch cannot be written (%s): the run marker stays, so the next "
                         "start comes up stopped", exc)
            return False
        return True

    def _next_session(self, t: float) -> None:
        """The scenario is over: record the session, then idle until the seat has been empty
        and a child sits down again (with a station: until a caregiver starts the next one)."""
        # With a station the next session is whoever the caregiver starts it for.
        self.begin_session(t, self.controller.scenario, "scenario ended",
                           child=self.child if self.control is None else None)

    def begin_session(self, t: float, scenario: Scenario, why: str, *, go: bool = False,
                      caps: Caps | None = None, child: ChildSession | None = None) -> None:
        """End this session's record (``why``) and begin a new one for ``scenario``, clock at 0,
        for ``child`` (a ChildSession: its record is linked to the child, its start event names
        the child's id and why this scenario) within ``caps`` (default: the current ones).
        Without a station it starts when a face is seen on an empty seat; with one, when a
        caregiver starts it (``go``: now, at the next tick)."""
        self.events.emit(t, "session", state="end", reason=why)
        self.child = child
        if self.roll_record is not None:
            self.roll_record(scenario.name, child)
        self.clock.restart()
        self._down_since = 0.0
        self._last_vitals = float("-inf")
        self.controller = Controller(scenario, after_previous=True,
                                     caps=caps or self.controller.caps,
                                     start_on="station" if self.control is not None else "face")
        if go:
            self.controller.begin()
        self._know_child()
        self._record_start(0.0, scenario.name)

    def _know_child(self) -> None:
        """The controller compares the body's breathing with this session's child's calm rate
        (learned, else their age's; an adult's without a child)."""
        self.controller.calm_breathing = (self.child.calm_breathing if self.child is not None
                                          else ADULT_CALM)

    # --- the caregiver station (relaxd.daemon.link) --------------------------------------------

    def attach_station(self, link: StationLink, *, stay_up: bool) -> None:
        """The caregiver station joins the loop. With ``stay_up`` (a simulation) this session
        starts as it would have and the chair then stays up, idle, after its input ends, session
        after session; otherwise no session starts by itself: each waits for a caregiver's
        Start. Either way every later session waits for a Start (:meth:`begin_session`)."""
        self.control = link
        if stay_up:
            self.input, self.repeat = StayUp(self.input), True
        else:
            self.controller.start_at_station()

    def start_session(self, t: float, scenario: Scenario, why: str, *, caps: Caps,
                      child: ChildSession | None, manual: bool) -> None:
        """A caregiver's Start (the outputs' latch and enabling stay with the caller): a new
        session of ``scenario`` for ``child`` within ``caps``, playing from the next tick, in
        manual mode (the camera kept, unread) or read from the camera against the child's
        resting face; the light steady when the child's limits forbid pulsing."""
        self.choose_input(manual, child.baseline if child else None)
        self.actuators.steady_light = bool(child and child.child.limits.no_pulse)
        self.begin_session(t, scenario, why, go=True, caps=caps, child=child)
        self.controller.set_manual(manual)

    def choose_input(self, manual: bool, baseline: Baseline | None) -> None:
        """Manual mode (the camera kept, unread) or the camera, read against ``baseline`` (a
        child's resting face; None: nobody's)."""
        self.input = manual_or_camera(self.input, manual)
        read_against(self.input, baseline)

    def _record_start(self, t: float, scenario: str) -> None:
        """The ``session`` start event, with the child's id and why this scenario, if any."""
        info = self.child.start_info if self.child is not None else {}
        self.events.emit(t, "session", state="start", scenario=scenario, **info)

    def _tick(self, t: float, sensed: Sensed) -> Step:
        self._remote_reset()
        for step in self.estop.sync(t, self.controller):
            self._record_step(t, step)
        t = self._start_at_chair(t)
        if self.control is not None:
            self.control.obey(t, self)
            t = self.clock.now()  # a Start restarts the clock
        self._watch_heat(t)
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
        step = self.controller.step(t, reading, sensed.vitals)
        self._record_vitals(t, sensed, step)
        self._record_step(t, step)
        self.actuators.apply(t, step)
        driven = self.actuators.levels()
        if self.trace is not None:
            self.trace.write(t, driven)
        self._hand_over(driven, step)
        shown = step.levels if not self.actuators.inhibited else Levels()
        self._record_levels(t, shown)
        self._show(t, sensed, step, shown)
        if self.control is not None:
            self.control.publish(t, self, sensed, step)
        return step

    def _record_vitals(self, t: float, sensed: Sensed, step: Step) -> None:
        """A ``vitals`` event every :data:`VITALS_EVERY_S` of session time while they are known
        (the child seen and the first window full), whatever the session's state, with the
        tempo the chair breathes on then (None: not playing, or no tempo)."""
        if sensed.vitals is not None and t - self._last_vitals >= VITALS_EVERY_S:
            self._last_vitals = t
            self.events.emit(t, "vitals", **sensed.vitals.event(), tempo=chair_tempo(step))

    def _hand_over(self, driven: Levels, step: Step) -> None:
        """The outputs as driven, as plain numbers, to the input: its body signals tell the
        child's breathing and pulse apart from the chair's light and vibration (inputs without
        body signals, such as a test's stand-in, need not take them)."""
        hand_over(self.input, ChairOutputs(driven.light, step.stimulus.colour, driven.vibration))

    def _remote_reset(self) -> None:
        """``relaxd reset`` where ``safety.remote_reset`` lets it stand for the reset button."""
        if not (self.remote_reset and self.latch.latched):
            return
        after_stop = self.latch.take_reset_request()
        if after_stop is not None:
            self.estop.reset("relaxd reset", after_stop=after_stop)

    def _start_at_chair(self, t: float) -> float:
        """The reset button pressed again after a reset: a new session of the same scenario,
        for the same child, from the start intensity, unless a stop came since the press. The
        session's clock (restarted by a start)."""
        after_stop = self.estop.take_start_request()
        if after_stop is None:
            return t
        if not self.controller.awaiting_start or self.latch.latched \
                or self.latch.stop_seq != after_stop or self.too_hot_reason:
            log.info("reset button press: no reset waiting for a start, a stop came since, or "
                     "the chair is too hot")
            return t
        c = self.controller
        self.begin_session(t, c.scenario, "started at the chair (reset button)", go=True,
                           caps=c.caps, child=self.child)
        if self.estop.enable_outputs():
            self.events.emit(0.0, "audit", action="start", by="reset button",
                             detail=c.scenario.name)
        return self.clock.now()

    # --- the chair's temperature (relaxd.safety.thermal) ------------------------------------------

    @property
    def too_hot_reason(self) -> str | None:
        """Why a Start is refused now: the chair is too hot and has not cooled (None: it may
        start)."""
        return self.thermal.too_hot_reason if self.thermal is not None else None

    def _watch_heat(self, t: float) -> None:
        """Warm: alert the caregiver. Too hot: every output 0 and the controller idle until a
        deliberate start once the chair has cooled; a session started while it is still too
        hot is stopped again at once."""
        if self.thermal is None:
            return
        for change in self.thermal.poll():
            if change.kind == "warm":
                self.alerter.alert(t, "hot", change.detail)
            elif change.kind == "too hot":
                self._record_step(t, self.controller.too_hot(t, change.detail))
            else:
                quiet = change.kind in ("cooled", "normal")
                log.log(logging.INFO if quiet else logging.WARNING, "%s", change.detail)
        c = self.controller
        if self.too_hot_reason and not c.waiting_for_start and c.state is not State.ESTOPPED:
            self._record_step(t, c.too_hot(t, "a session was started before the chair cooled"))

    def _record_step(self, t: float, step: Step) -> None:
        for d in step.decisions:
            self.events.emit(t, "decision", action=d.action, reason=d.reason,
                             state=step.state.value, intensity=round(step.intensity, 3))
            if d.alert:
                self.alerter.alert(t, d.action, d.alert)
        for what in seen_by_caregiver(self.input, t, [d.action for d in step.decisions]):
            self.observe(t, what, SIMULATED_CAREGIVER)

    def observe(self, t: float, what: str, by: str) -> None:
        """A caregiver's observation (the station's, or a virtual child's simulated caregiver):
        recorded; a "misread" (a calm face read upset) lets this session's own baseline apply."""
        self.events.emit(t, "observation", what=what, by=by)
        if what == "misread" and self.child is not None:
            self.child.baseline.confirm_calm()

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
        self.estop.trigger(f"main loop stalled for {idle:.1f} s: all outputs off", cause="stall")

    def _show(self, t: float, sensed: Sensed, step: Step, lv: Levels) -> None:
        if self.status is None and not self.notifier.enabled:
            return
        if self.input.scripted:
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


def chair_tempo(step: Step) -> float | None:
    """The tempo the outputs breathe on at ``step``, breaths a minute (None: not playing, or
    no tempo): what the child's breathing is compared with."""
    playing = step.state in (State.RUNNING, State.REDUCED, State.FADING) and step.levels != Levels()
    return round(step.breath.bpm, 2) if step.breath is not None and playing else None


def install_signal_handlers(session: Session) -> None:
    """SIGTERM and SIGINT end the session cleanly: outputs off at once, then the loop stops."""
    def handler(signum: int, _frame: FrameType | None) -> None:
        session.request_stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
