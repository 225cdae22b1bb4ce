"""Builds a session's parts from the configuration and the command line, then runs it.

A short list of named steps: plan the run (configuration, scenario, input, clock), open the sense
half, the hardware (real or simulated, decided in :mod:`relaxd.daemon.hardware` alone), the records, the
outputs and the safety parts. Everything that can be wrong with the user's input
(configuration, scenario, mood script, model, video, webcam) is checked before any actuator is
touched.
"""

from __future__ import annotations

import logging
import math
import sys
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from relaxd.clinic import launch as clinic_launch
from relaxd.config import Config
from relaxd.control.controller import Controller
from relaxd.control.library import bundled_folders, load_named
from relaxd.control.scenario import Scenario, ScriptEntry, load_mood_script, load_scenario
from relaxd.core.clock import Clock, RealClock, VirtualClock
from relaxd.core.errors import RelaxdError
from relaxd.core.logsetup import setup_logging
from relaxd.core.options import RunOptions
from relaxd.core.paths import resource_dir
from relaxd.daemon.hardware import DEMO_SCRIPT, ChairHardware, hardware_for_run, open_frames
from relaxd.daemon.loop import Session, install_signal_handlers
from relaxd.daemon.notify import Notifier
from relaxd.daemon.status import StatusLine, StatusLogHandler
from relaxd.outputs.actuators import Actuators
from relaxd.records.events import EventLog, JsonLinesSink, Sink, TraceWriter
from relaxd.records.sessions import SessionSink
from relaxd.safety.alerts import Alerter
from relaxd.safety.estop import EmergencyStop, Heartbeat, ResetButton
from relaxd.safety.latch import FaultLatch, RunMarker
from relaxd.vision.inputs import Input, ScriptInput, VisionInput
from relaxd.vision.settings import CameraSettings

if TYPE_CHECKING:
    from relaxd.children.session import ChildSession
    from relaxd.daemon.link import ControlLink
    from relaxd.vision.camera import FrameFeed
    from relaxd.vision.emotion import EmotionClassifier

log = logging.getLogger(__name__)

#: The speed the bundled demo (``relaxd --simulate``) plays at unless told otherwise.
DEMO_SPEED = 20.0

#: Seconds between ticks when the input does not pace the loop (mood scripts, image folders).
SCRIPT_PERIOD = 0.1

#: The longest the loop's thread keeps the interpreter while another thread waits for it, in
#: seconds (Python's default: 5 ms). The e-stop's callback, the StallGuard and the station's
#: STOP run Python on threads of their own: while the loop runs Python, each waits up to this
#: long before it can zero the outputs, latch and alert (``relaxd bench --estop``).
STOP_SWITCH_INTERVAL_S = 0.001


@contextmanager
def quick_switches(interval: float = STOP_SWITCH_INTERVAL_S) -> Iterator[None]:
    """The body runs under the interpreter switch interval ``interval``; the one before is
    restored after it."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(interval)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


@dataclass(frozen=True)
class Plan:
    """What the command line and the configuration ask for, checked and resolved once."""

    config: Config
    scenario: Scenario
    script: Path | None  # a mood script stands in for the camera (the demo, when none is named)
    camera: CameraSettings  # otherwise, where frames come from
    live: bool  # a live camera (the chair's, or a webcam): real time, session after session
    clock: Clock
    child: ChildSession | None = None  # --child / --virtual-child: whose session, and limits
    virtual: bool = False  # a virtual child stands in for the camera


def _child_of(options: RunOptions, hw: ChairHardware) -> ChildSession | None:
    """The session's child, if the run asks for one. The child's profile, the scenario learner
    and the virtual child are imported only then: a run without a child never uses them."""
    if not options.asks_for_child:
        return None
    from relaxd.children.session import child_session
    from relaxd.sim.virtual_child import load_virtual_child

    return child_session(options, hw.config, camera=not options.mood_script,
                         virtual=load_virtual_child(options), state_dir=hw.state_dir,
                         add_unknown=hw.adds_unknown_children)


def plan_run(options: RunOptions, hw: ChairHardware) -> Plan:
    """Resolve the arguments against the hardware's configuration; bad input raises
    RelaxdError."""
    clinic_launch.check(options)
    config = hw.config
    child = _child_of(options, hw)
    scenario = child.scenario if child else _scenario(options.scenario, config.scenario)
    virtual = bool(options.virtual_child)
    script = _mood_script(options, virtual, hw.default_mood_script)
    camera = _camera(options, config.camera)
    live = script is None and not virtual and camera.source in ("picamera", "webcam")
    return Plan(config, scenario, script, camera, live, _clock(options.speed, live, script),
                child, virtual)


def _scenario(wanted: str | None, configured: Path) -> Scenario:
    """``--scenario``: a file, or an installed scenario by stem or name (the library's folders:
    the configured scenario's, then the bundled ones); none: the configured scenario."""
    if not wanted:
        return load_scenario(configured)
    if Path(wanted).is_file():
        return load_scenario(wanted)
    return load_named(wanted, bundled_folders(configured))


def _mood_script(options: RunOptions, virtual: bool, default: Path | None) -> Path | None:
    """The mood script named, else the hardware's default when no input is named."""
    if options.mood_script:
        return Path(options.mood_script)
    named = options.video or options.images or options.camera is not None or virtual
    return None if named else default


def _camera(options: RunOptions, camera: CameraSettings) -> CameraSettings:
    """The configured camera, or the video, image folder or webcam the command line names."""
    if options.video:
        return replace(camera, source="video", path=Path(options.video))
    if options.images:
        return replace(camera, source="images", path=Path(options.images), fps=1 / SCRIPT_PERIOD)
    if options.camera is not None:
        return replace(camera, source="webcam", index=options.camera)
    return camera


def _clock(speed: float | None, live: bool, script: Path | None) -> Clock:
    if live:
        if speed is not None:
            raise RelaxdError("--speed applies to scripts, videos and image folders, "
                              "not to a live camera")
        return RealClock()
    if speed is None:
        return VirtualClock(DEMO_SPEED if script == DEMO_SCRIPT else 1.0)
    return VirtualClock(None if math.isinf(speed) else speed)


@dataclass
class Sensing:
    """The sense half, opened before any actuator: a mood script, or frames and the model."""

    name: str
    period: float
    script: list[ScriptEntry] | None = None
    frames: FrameFeed | None = None
    classifier: EmotionClassifier | None = None
    virtual: bool = False

    def input(self, plan: Plan, hands: Callable[[str, str], None], actuators: Actuators) -> Input:
        """The input of the session: the script, the virtual child (who sees what the chair
        plays), or the camera read through the calibrated decision and the child's baseline."""
        if self.script is not None:
            return ScriptInput(self.script, hands)
        if self.virtual:
            from relaxd.sim.virtual_child import virtual_input

            return virtual_input(plan.child, actuators, plan.config)
        from relaxd.vision.body.vitals import BodySignals
        from relaxd.vision.calibration import load_calibration
        from relaxd.vision.faces import FaceDetector
        from relaxd.vision.mood import MoodSmoother

        assert self.frames is not None and self.classifier is not None  # open_sensing's
        return VisionInput(self.frames, FaceDetector(), self.classifier,
                           MoodSmoother(plan.config.mood),
                           calibration=load_calibration(plan.config.model.path),
                           baseline=plan.child.baseline if plan.child else None,
                           body=BodySignals())


def open_sensing(plan: Plan, named_webcam: bool, stack: ExitStack) -> Sensing:
    if plan.script is not None:
        return Sensing(f"script {plan.script}", SCRIPT_PERIOD,
                       script=load_mood_script(plan.script))
    if plan.virtual:
        assert plan.child is not None  # a virtual child is the session's child
        return Sensing(f"virtual child {plan.child.child.id}", SCRIPT_PERIOD, virtual=True)
    from relaxd.vision.emotion import EmotionClassifier
    from relaxd.vision.faces import one_opencv_thread

    one_opencv_thread()
    model = plan.config.model
    classifier = EmotionClassifier(model.path, model.threads, delegate=model.delegate)
    frames, period = open_frames(plan.camera, plan.clock, live=plan.live, check_now=named_webcam)
    stack.callback(frames.close)
    return Sensing(frames.name, period, frames=frames, classifier=classifier)


class SessionRecords:
    """The events of the run: JSON Lines if asked, and one SQLite record per session."""

    def __init__(self, state_dir: Path, scenario: str, source: str,
                 jsonl: Path | None = None, child: ChildSession | None = None) -> None:
        self._scenario, self._child = scenario, child
        self._new_record = lambda: SessionSink(state_dir, scenario=self._scenario, source=source)
        self._record = self._new_record()
        sinks: list[Sink] = [JsonLinesSink(jsonl)] if jsonl else []
        self.events = EventLog(sinks + [self._record])
        self._link_child()

    def _link_child(self) -> None:
        if self._child is not None:  # the session belongs to the child
            self._child.link(self._record.session_id)

    def roll(self, scenario: str | None = None, child: ChildSession | None = None) -> None:
        """The next session gets a record of its own (of ``scenario``, if it changes), linked
        to ``child`` (None: nobody's, e.g. a chair waiting for the station's Start). A child
        whose sessions end here remembers what was learned (their baseline)."""
        if scenario is not None:
            self._scenario = scenario
        if self._child is not None and self._child is not child:
            self._child.finish()
        self._child = child
        old, self._record = self._record, self._new_record()
        self.events.replace(old, self._record)
        self._link_child()

    def close(self) -> None:
        if self._child is not None:
            self._child.finish()
        self.events.close()


@dataclass
class Outputs:
    actuators: Actuators
    alerter: Alerter


def open_outputs(config: Config, hw: ChairHardware, events: EventLog, stack: ExitStack,
                 child: ChildSession | None = None) -> Outputs:
    actuators = Actuators(config.actuators, hw.audio_output(), pin_factory=hw.pin_factory)
    actuators.steady_light = bool(child and child.child.limits.no_pulse)
    stack.callback(actuators.close)
    alerter = Alerter(config.alerts, events, pin_factory=hw.pin_factory)
    stack.callback(alerter.close)
    return Outputs(actuators, alerter)


@dataclass
class SafetyParts:
    estop: EmergencyStop
    latch: FaultLatch
    marker: RunMarker | None
    heartbeat: Heartbeat
    hands: Callable[[str, str], None]


def open_safety(plan: Plan, hw: ChairHardware, outputs: Outputs, events: EventLog,
                stack: ExitStack) -> SafetyParts:
    """The e-stop (its latch kept where the hardware keeps it), the reset button, the heartbeat,
    and what a mood script's hands press."""
    s, factory = plan.config.safety, hw.pin_factory
    latch, marker = hw.fault_latch()
    estop = EmergencyStop(outputs.actuators, s, alerter=outputs.alerter, events=events,
                          latch=latch, now=plan.clock.now, pin_factory=factory)
    stack.callback(estop.close)
    stack.callback(ResetButton(estop, s, now=plan.clock.now, pin_factory=factory).close)
    heartbeat = Heartbeat(s.heartbeat_pin, pin_factory=factory)
    stack.callback(heartbeat.close)
    return SafetyParts(estop, latch, marker, heartbeat, hw.hands(estop))


def build_session(options: RunOptions, stack: ExitStack,
                  hw: ChairHardware | None = None) -> Session:
    """Every part of a session on ``hw`` (None: the hardware the options ask for), in the
    order that checks the user's input first."""
    if hw is None:
        hw = hardware_for_run(options)
        stack.callback(hw.close)
    plan = plan_run(options, hw)
    sensing = open_sensing(plan, named_webcam=options.camera is not None, stack=stack)
    records = SessionRecords(hw.state_dir, plan.scenario.name, sensing.name, options.events,
                             plan.child)
    stack.callback(records.close)
    trace = TraceWriter(options.trace) if options.trace else None
    if trace is not None:
        stack.callback(trace.close)
    outputs = open_outputs(plan.config, hw, records.events, stack, plan.child)
    safety = open_safety(plan, hw, outputs, records.events, stack)
    c = plan.config
    thermal = hw.thermal_watch()
    if thermal is not None:
        stack.callback(thermal.close)
    session = Session(
        clock=plan.clock, input=sensing.input(plan, safety.hands, outputs.actuators),
        controller=Controller(plan.scenario,
                              caps=plan.child.caps if plan.child else c.actuators.caps()),
        actuators=outputs.actuators, estop=safety.estop, alerter=outputs.alerter,
        events=records.events, latch=safety.latch, period=sensing.period, notifier=Notifier(),
        status=None if options.quiet else StatusLine(), repeat=plan.live, roll_record=records.roll,
        marker=safety.marker, remote_reset=hw.remote_reset(),
        heartbeat=safety.heartbeat,
        camera_grace=c.camera.restart_after_s,
        stall_timeout=max(5.0, 2 * c.camera.read_timeout_s + 1), trace=trace,
        child=plan.child, thermal=thermal)
    _attach_station(options, hw, session, stack)
    return session


def _attach_station(options: RunOptions, hw: ChairHardware, session: Session,
                    stack: ExitStack) -> None:
    """The caregiver station's control socket, where the hardware wants one: on the chair with
    ``ui.enabled`` (then no session starts by itself), in simulation with ``--ui`` (the script
    plays the first session; the chair then stays up, idle, for the station's Start)."""
    if not hw.wants_station(options.ui):
        return
    beside = hw.runs_station()
    if beside and options.speed is not None and math.isinf(options.speed):
        raise RelaxdError("--ui keeps the chair up between sessions: give --speed N, not max")
    from relaxd.daemon.link import ControlLink

    config = hw.config
    ui_dir, socket_path = hw.station_paths()
    link = ControlLink(socket_path, [ui_dir / "scenarios", Path(config.scenario).parent,
                                     resource_dir("scenarios")],
                       estop=session.estop, latch=session.latch, state_dir=hw.state_dir,
                       caps=config.actuators.caps())
    stack.callback(link.close)
    session.events.sinks.append(link.board)
    session.attach_station(link, stay_up=beside)
    if beside:
        _tell_socket(hw.state_dir, socket_path, stack)
        _spawn_station(link, hw.state_dir, options.ui_port, stack)
        if options.bridge:  # --bridge URL --chair-id ID: the chair's bridge to the clinic's broker
            stack.callback(clinic_launch.end, clinic_launch.spawn(
                options.bridge, str(options.chair_id), socket_path, hw.state_dir.resolve(),
                options.bridge_password_file))


def _tell_socket(out: Path, socket_path: Path, stack: ExitStack) -> None:
    """``relaxd start --simulate --out DIR`` finds the simulated chair's socket here."""
    from relaxd.core.paths import SOCKET_FILE

    named = out / SOCKET_FILE
    named.write_text(f"{socket_path}\n")
    stack.callback(named.unlink, missing_ok=True)


def run(options: RunOptions) -> int:
    handler = setup_logging(options.verbose)
    with ExitStack() as stack:
        hw = hardware_for_run(options)
        stack.callback(hw.close)
        session = build_session(options, stack, hw)
        if session.status is not None and isinstance(handler, logging.StreamHandler):
            root = logging.getLogger()
            root.removeHandler(handler)
            root.addHandler(StatusLogHandler(session.status, handler.formatter))
        install_signal_handlers(session)
        with quick_switches():
            code = session.run()
    log.info("session ended: %s", session.stop_reason)
    farewell = hw.farewell(session.stop_reason, options.events)
    if farewell:
        print(farewell, file=sys.stderr)
    return code


def _spawn_station(link: ControlLink, out: Path, port: int, stack: ExitStack) -> None:
    """``--simulate --ui``: the station in its own process; it prints its sign-in link."""
    from relaxd.station.launch import new_token, spawn

    station = spawn(link.server.path, out.resolve(), port, new_token())

    def end_station() -> None:
        station.terminate()
        try:
            station.wait(5)
        except Exception:  # noqa: BLE001 - a hung station is killed
            station.kill()

    stack.callback(end_station)
