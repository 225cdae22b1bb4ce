"""Builds a session's parts from the configuration and the command line, then runs it.

Everything that can be wrong with the user's input (configuration, scenario, mood script, model,
video, webcam) is checked before any actuator is touched. ``--simulate`` swaps the hardware for
gpiozero's MockFactory pins, a WAV file and an in-memory latch; the rest is the same code.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from relaxd.actuators import Actuators
from relaxd.alerts import Alerter
from relaxd.clock import Clock, RealClock, VirtualClock
from relaxd.config import Config, load_config
from relaxd.controller import Controller
from relaxd.daemon import Session, install_signal_handlers
from relaxd.errors import RelaxdError
from relaxd.events import EventLog, JsonLinesSink, Sink, TraceWriter
from relaxd.hardware import SimulatedHands, simulated_pins
from relaxd.individual import child_session, virtual_input
from relaxd.inputs import Input, ScriptInput, VisionInput
from relaxd.latch import RESET_REQUEST_TTL_S, FaultLatch, RunMarker
from relaxd.logsetup import setup_logging
from relaxd.notify import Notifier
from relaxd.paths import resource_dir
from relaxd.safety import EmergencyStop, Heartbeat, ResetButton
from relaxd.scenario import load_mood_script, load_scenario
from relaxd.sessions import SessionSink
from relaxd.status import StatusLine, StatusLogHandler

log = logging.getLogger(__name__)

#: The mood script ``relaxd --simulate`` plays when given no input, and its speed.
DEMO_SCRIPT = resource_dir("scenarios") / "moods" / "demo.yaml"
DEMO_SPEED = 20.0

#: Seconds between ticks when the input does not pace the loop (mood scripts, image folders).
SCRIPT_PERIOD = 0.1


def _open_frames(args: argparse.Namespace, config: Config, clock: Clock) -> tuple[Any, float | None]:
    """The frame source the arguments or the configuration ask for, and the tick period."""
    from relaxd.camera import (FrameSource, ImageFolderSource, ResilientSource, VideoFileSource,
                               WebcamSource)

    cam = config.camera
    if args.video:
        source = VideoFileSource(args.video)
        return source, 1.0 / (source.fps or 25.0)
    if args.images:
        return ImageFolderSource(args.images), SCRIPT_PERIOD
    if cam.source in ("video", "images") and args.camera is None:
        return cam.open(), 1.0 / cam.fps
    if args.camera is not None:
        def live() -> FrameSource:
            return WebcamSource(args.camera, (cam.width, cam.height), cam.read_timeout_s)

        live().close()  # a webcam named on the command line that won't open is bad input
    else:
        live = cam.open  # the chair's camera: keep retrying it, safe and alerting meanwhile
    return (ResilientSource(live, clock, name=cam.source, backoff_s=cam.retry_backoff_s,
                            max_backoff_s=cam.retry_backoff_max_s), 1.0 / cam.fps)


def _clock(args: argparse.Namespace, live: bool) -> Clock:
    if live:
        if args.speed is not None:
            raise RelaxdError("--speed applies to scripts, videos and image folders, not to a live camera")
        return RealClock()
    if args.speed is None:
        return VirtualClock(DEMO_SPEED if args.mood_script == str(DEMO_SCRIPT) else 1.0)
    return VirtualClock(None if math.isinf(args.speed) else args.speed)


def build_session(args: argparse.Namespace, stack: ExitStack) -> Session:
    """Every part of a session, in the order that checks the user's input first."""
    config = load_config(args.config) if args.config or not args.simulate else Config()
    virtual = getattr(args, "virtual_child", None)  # issue 16
    child = child_session(args, config, camera=not args.mood_script)  # issue 16
    scenario = child.scenario if child else load_scenario(args.scenario or config.scenario)
    if args.simulate and not (args.video or args.images or args.camera is not None
                              or args.mood_script or virtual):
        args.mood_script = str(DEMO_SCRIPT)
    live = not (args.mood_script or args.video or args.images or virtual) and (
        args.camera is not None or config.camera.source in ("picamera", "webcam"))
    clock = _clock(args, live)
    if args.trace and not args.simulate:
        raise RelaxdError("--trace needs --simulate")

    if args.mood_script:
        script = load_mood_script(args.mood_script)
        source_name, period, frames = f"script {args.mood_script}", SCRIPT_PERIOD, None
    elif virtual:
        source_name, period, frames = f"virtual child {child.child.id}", SCRIPT_PERIOD, None
    else:
        from relaxd.emotion import EmotionClassifier
        from relaxd.faces import FaceDetector
        from relaxd.mood import MoodSmoother

        classifier = EmotionClassifier(config.model.path, config.model.threads)
        frames, period = _open_frames(args, config, clock)
        stack.callback(frames.close)
        source_name = frames.name

    state_dir = Path(args.out) if args.simulate else config.state_dir
    sinks: list[Sink] = []
    if args.events:
        sinks.append(JsonLinesSink(args.events))
    record = [SessionSink(state_dir, scenario=scenario.name, source=source_name)]
    events = EventLog(sinks + record)
    if child is not None:  # issue 16: the session belongs to the child
        child.link(record[0].session_id)
        stack.callback(child.finish)

    def roll_record() -> None:
        record.append(SessionSink(state_dir, scenario=scenario.name, source=source_name))
        events.replace(record.pop(0), record[0])
        if child is not None:
            child.link(record[0].session_id)

    stack.callback(events.close)
    trace = TraceWriter(args.trace) if args.trace else None
    if trace is not None:
        stack.callback(trace.close)

    factory = None
    if args.simulate:
        from relaxd.audio import WavFileOutput

        factory = simulated_pins()
        stack.callback(factory.close)
        audio = WavFileOutput(state_dir / "audio.wav", config.actuators.sample_rate)
    else:
        from relaxd.audio import SoundDeviceOutput

        audio = SoundDeviceOutput(config.actuators.audio_device, config.actuators.sample_rate)
    actuators = Actuators(config.actuators, audio, pin_factory=factory)
    actuators.steady_light = bool(child and child.child.limits.no_pulse)  # issue 16
    stack.callback(actuators.close)
    alerter = Alerter(config.safety, events, pin_factory=factory)
    stack.callback(alerter.close)
    latch, marker = _latch(args, state_dir)
    estop = EmergencyStop(actuators, config.safety, alerter=alerter, events=events, now=clock.now,
                          pin_factory=factory,
                          on_press=lambda t: latch.follow(lambda: estop.latched, "emergency stop"))
    stack.callback(estop.close)
    stack.callback(ResetButton(estop, config.safety, now=clock.now, pin_factory=factory).close)
    heartbeat = Heartbeat(config.safety.heartbeat_pin, pin_factory=factory)
    stack.callback(heartbeat.close)
    buttons = SimulatedHands(factory, config.safety) if factory is not None else \
        _ScriptedStop(estop)
    if factory is not None:
        buttons.rest()

    if args.mood_script:
        inp: Input = ScriptInput(script, buttons)
    elif virtual:
        inp = virtual_input(child, actuators, config)  # issue 16
    else:
        from relaxd.calibration import load_calibration  # issue 16: the calibrated decision

        inp = VisionInput(frames, FaceDetector(), classifier, MoodSmoother(config.mood),
                          calibration=load_calibration(config.model.path),
                          baseline=child.baseline if child else None)
    controller = Controller(scenario, caps=child.caps if child else config.actuators.caps())
    return Session(clock=clock, input=inp, controller=controller, actuators=actuators,
                   estop=estop, alerter=alerter, events=events, latch=latch, period=period,
                   notifier=Notifier(), status=None if args.quiet else StatusLine(),
                   repeat=live, roll_record=roll_record, marker=marker,
                   remote_reset=config.safety.remote_reset, heartbeat=heartbeat,
                   camera_grace=config.camera.restart_after_s,
                   stall_timeout=max(5.0, 2 * config.camera.read_timeout_s + 1), trace=trace,
                   start_info=child.start_info if child else {})


def _latch(args: argparse.Namespace, state_dir: Path) -> tuple[FaultLatch, RunMarker | None]:
    """The chair keeps its latch and run marker in the state directory; a simulation keeps
    them in memory, or in its --out folder with --keep-latch (to rehearse a crash)."""
    if args.simulate and not getattr(args, "keep_latch", False):
        return FaultLatch(None), None
    state_dir.mkdir(parents=True, exist_ok=True)
    return FaultLatch.in_state_dir(state_dir), RunMarker.in_state_dir(state_dir)


class _ScriptedStop:
    """A mood script on real pins: it may stop the chair, never reset or release anything."""

    def __init__(self, estop: EmergencyStop) -> None:
        self.estop = estop

    def __call__(self, action: str, button: str) -> None:
        if (action, button) == ("press", "estop"):
            self.estop.trigger("script")
        else:
            log.warning("mood script: '%s: %s' ignored on real pins", action, button)


def run_from_args(args: argparse.Namespace) -> int:
    handler = setup_logging(args.verbose)
    with ExitStack() as stack:
        session = build_session(args, stack)
        if session.status is not None and isinstance(handler, logging.StreamHandler):
            root = logging.getLogger()
            root.removeHandler(handler)
            root.addHandler(StatusLogHandler(session.status, handler.formatter))
        install_signal_handlers(session)
        code = session.run()
    log.info("session ended: %s", session.stop_reason)
    if args.simulate:
        print(f"relaxd: session ended ({session.stop_reason}); sound in "
              f"{Path(args.out) / 'audio.wav'}, record in {Path(args.out) / 'sessions.sqlite'}"
              + (f", events in {args.events}" if args.events else ""), file=sys.stderr)
    return code


def configure_reset(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="configuration file")


def run_reset(args: argparse.Namespace) -> int:
    """Ask the running daemon to clear a latched stop -- only where the configuration allows
    a reset away from the chair (``safety.remote_reset``); otherwise say where the button is."""
    config = load_config(args.config)
    latch = FaultLatch.in_state_dir(config.state_dir)
    if latch.reason is None:
        print("relaxd: nothing is latched")
        return 0
    if not config.safety.remote_reset:
        raise RelaxdError(
            f"latched ({latch.reason}); to restart, a caregiver at the chair holds its reset "
            f"button (GPIO{config.safety.reset_pin}) for {config.safety.hold_to_reset:g} s and "
            "lets go. `relaxd reset` is off (safety.remote_reset: false) so that nobody away "
            "from the chair can restart stimulation")
    try:
        latch.request_reset()
    except OSError as exc:
        raise RelaxdError(f"cannot ask for a reset: {exc.strerror}", latch.request) from None
    print(f"reset requested for this stop ({latch.reason}), valid for "
          f"{RESET_REQUEST_TTL_S:g} s; the chair restarts at its start intensity")
    return 0
