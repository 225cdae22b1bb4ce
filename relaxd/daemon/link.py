"""The loop's side of the caregiver station: carry out its commands, publish the chair's state.

:class:`ControlLink` is the ``Session.control`` part. Each tick the session calls
``obey(t, session)`` (the queued commands, at most a few a tick) and ``publish(t, session,
sensed, step)`` (a snapshot for the socket). STOP does not wait for a tick: the socket's thread
calls :meth:`ControlLink.stop`, the e-stop's software path.

Rules (deploy/SAFETY.md, H10), kept by the stop arbiter (:mod:`relaxd.safety.latch`):
- STOP = ``EmergencyStop.trigger`` with the cause ``station-stop``: every output 0 at once,
  latched in memory and in the latch file, recorded, alerted; it survives a daemon restart. Its
  answer names the stop's number.
- A Start is bound to the newest stop when relaxd received it (or the ``after_stop`` it names)
  and is refused once a newer stop exists. It clears a latch only when the station's STOP is
  its only cause and the e-stop is not pressed down; any other cause (the button, a fault, a
  crash, a stall) needs the reset button at the chair. Start is refused while a session runs.
- With a station, no session starts by itself: each waits for a caregiver's Start.
- The clinic overview's stop (``clinic_stop``, from the chair's bridge) is the same software
  path latched as ``clinic-stop``: not an emergency stop; only this chair's station Start or
  its reset button clears it, never anything from afar.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

from relaxd.children import start as child_start
from relaxd.children.session import ChildSession
from relaxd.control.breath import Breath
from relaxd.control.controller import Caps, Decision, Step
from relaxd.control.library import UnknownScenario, load_named, scenario_files
from relaxd.control.scenario import Scenario
from relaxd.core.errors import RelaxdError
from relaxd.daemon.board import AlertBoard
from relaxd.daemon.loop import Session, chair_tempo
from relaxd.daemon.server import Command, ControlServer
from relaxd.safety.estop import EmergencyStop
from relaxd.safety.latch import FaultLatch, StopRefused
from relaxd.station.protocol import OBSERVATIONS, STATION_STOP, CommandRefused
from relaxd.vision.inputs import Sensed

log = logging.getLogger(__name__)

#: A station command carried out on the loop's thread: (t, session, its arguments, who sent it)
#: -> the answer's fields (``detail``: what the audit records).
Handler = Callable[[float, Session, dict[str, Any], str], dict[str, Any]]


class ControlLink:
    """Commands in, state out, for one daemon run; see the module docstring."""

    def __init__(self, socket_path: str | Path, scenario_dirs: list[Path], *,
                 estop: EmergencyStop, latch: FaultLatch, mode: int = 0o660,
                 state_dir: Path | None = None, caps: Caps | None = None) -> None:
        self.scenario_dirs = scenario_dirs
        self._listed: tuple[tuple[float, ...], list[str]] = ((), [])  # folders' mtimes, names
        self.estop, self.latch = estop, latch
        #: Where the child profiles are (None: no children on this chair), and the
        #: installation's caps (a session without a child, or before the child's own).
        self.state_dir, self.caps = state_dir, caps or Caps()
        self._done: list[tuple[Command, dict[str, Any]]] = []  # answered once the state is out
        self._dead_reported = False
        self.board = AlertBoard()
        self.server = ControlServer(
            socket_path, self.stop, mode, prepare=self._prepare, stop_seq=lambda: latch.stop_seq,
            latched=lambda: latch.latched,
            direct={"children": self._children, "recommend": self._recommend},
            stops={"clinic_stop": self._clinic_stop})
        self._handlers: dict[str, Handler] = {
            "start": self._start, "ack": self._ack, "calmer": self._calmer, "hold": self._hold,
            "end_gently": self._end_gently, "nudge": self._nudge, "observe": self._observe,
            "audit": self._audit}

    # --- on the socket's thread ----------------------------------------------------------------

    def stop(self, by: str) -> int:
        """The station's STOP: the e-stop's software path, latched as ``station-stop``; the
        stop's number."""
        return self.estop.trigger(f"{STATION_STOP} by {by}", cause="station-stop")

    def _clinic_stop(self, message: dict[str, Any]) -> dict[str, Any]:
        """The clinic overview's software stop (through the chair's bridge): every output 0 at
        once, latched as ``clinic-stop``, which only this chair's station Start or its reset
        button clears. Not an emergency stop. Every stop is a new stop (a new number), so a
        Start given before it never clears it; the latch keeps the cause once."""
        by = str(message.get("by") or "clinic")[:64]
        return {"ok": True, "stop_seq": self.estop.trigger(f"clinic stop by {by}",
                                                           cause="clinic-stop")}

    def _children(self, message: dict[str, Any]) -> dict[str, Any]:
        """The profiles for the Start screen."""
        if self.state_dir is None:
            return {"ok": True, "children": []}
        try:
            return {"ok": True, "children": child_start.child_listing(self.state_dir)}
        except RelaxdError as exc:
            return {"ok": False, "error": str(exc)}

    def _recommend(self, message: dict[str, Any]) -> dict[str, Any]:
        """What ``auto`` would play for the child now, and why."""
        if self.state_dir is None:
            return {"ok": False, "error": "no child profiles on this chair"}
        try:
            return {"ok": True, **child_start.recommendation(
                self.state_dir, str(message.get("child") or ""), self.scenario_dirs)}
        except RelaxdError as exc:
            return {"ok": False, "error": str(exc)}

    def _prepare(self, command: Command) -> None:
        """A Start for a child: the profile, the scenario (``auto``: the recommendation) and the
        checks of ``--child`` (consent, longest session, minutes today), here, not in the loop."""
        args = command.args
        if command.name != "start":
            return
        child_id, wanted = args.get("child"), str(args.get("scenario") or "")
        if not child_id:
            if wanted == child_start.AUTO:
                raise CommandRefused("'auto' chooses for a child: choose the child too")
            return
        if self.state_dir is None:
            raise CommandRefused("no child profiles on this chair")
        try:
            args["_child"] = child_start.prepare(
                self.state_dir, str(child_id), wanted or child_start.AUTO, self.scenario_dirs,
                self.caps, camera=not args.get("manual"))
        except RelaxdError as exc:
            raise CommandRefused(str(exc)) from None

    def _scenario_names(self) -> list[str]:
        """The installed scenarios' names for every published state: the folders are listed
        again only when one changed (an upload), not on every tick of the loop."""
        stamps = tuple(_mtime(Path(folder)) for folder in self.scenario_dirs)
        if stamps != self._listed[0]:
            self._listed = (stamps, sorted(scenario_files(self.scenario_dirs)))
        return self._listed[1]

    # --- on the loop's thread ------------------------------------------------------------------

    def obey(self, t: float, session: Session) -> None:
        """Carry out the queued commands (never raising into the loop). Each is answered once
        this tick's state is published, so whoever sent it then reads its effect."""
        self._answer()  # any left by a tick that never published
        self._watch_server(t, session)
        done = []
        for command in self.server.take():
            if command.claim():
                done.append((command, self._run(t, session, command)))
            else:  # its sender was told it timed out: never carried out
                _release(command)
        self._done = done

    def _watch_server(self, t: float, session: Session) -> None:
        """Alert once when the socket stopped accepting: the station's STOP cannot reach the
        chair any more (``relaxd check`` reports it too)."""
        if not self.server.alive and not self._dead_reported:
            self._dead_reported = True
            session.alerter.alert(t, "fault", "the control socket stopped accepting: STOP at "
                                              "the station cannot reach the chair; use the e-stop")

    def _answer(self) -> None:
        done, self._done = self._done, []
        for command, answer in done:
            command.finish(answer)

    def _run(self, t: float, session: Session, command: Command) -> dict[str, Any]:
        handler = self._handlers.get(command.name)
        if handler is None:
            return {"ok": False, "error": f"unknown command {command.name!r}"}
        by = str(command.args.get("by") or "station")[:64]
        command.args["_after_stop"] = command.after_stop
        try:
            answer = handler(t, session, command.args, by)
        except CommandRefused as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - a bad command never stops the loop
            log.exception("station command %s failed", command.name)
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        if command.name != "audit":
            session.events.emit(t, "audit", action=command.name, by=by,
                                detail=answer.pop("detail", ""))
        return {"ok": True, **answer}

    def _start(self, t: float, session: Session, args: dict[str, Any], by: str) -> dict[str, Any]:
        child = args.pop("_child", None)
        try:
            return self._start_checked(t, session, args, by, child)
        except BaseException:
            if child is not None:
                child.store.close()
            raise

    def _start_checked(self, t: float, session: Session, args: dict[str, Any], by: str,
                       child: ChildSession | None) -> dict[str, Any]:
        if session.controller.playing:
            raise CommandRefused("a session is running: end it gently or STOP first")
        if session.too_hot_reason:
            raise CommandRefused(session.too_hot_reason)
        after_stop = int(args["_after_stop"])
        self._check_stops(after_stop)
        scenario = child.scenario if child else self._scenario(args, session)
        why = child.why if child else "chosen by the caregiver"
        if self.latch.latched:
            try:
                self.estop.clear("station", after_stop, f"station start by {by}")
            except StopRefused as exc:
                raise CommandRefused(str(exc)) from None
        manual = bool(args.get("manual"))
        session.start_session(t, scenario, f"new session started by {by}",
                              caps=child.caps if child else self.caps, child=child, manual=manual)
        if not self.estop.enable_outputs():
            raise CommandRefused("a stop came while starting: not started")
        whose = f" for child {child.child.id}" if child else ""
        return {"detail": scenario.name + whose + (" (manual)" if manual else ""),
                "scenario": scenario.name, "why": why, "child": child.child.id if child else None}

    def _check_stops(self, after_stop: int) -> None:
        """Refuse a Start that a stop overrides: the e-stop held down, a stop newer than the
        Start, or a latch that only the reset button at the chair may clear."""
        if self.estop.pressed:
            raise CommandRefused("the e-stop is pressed down: twist it free, then hold the "
                                 "reset button at the chair")
        if self.latch.stop_seq > after_stop:
            raise CommandRefused(f"a STOP (number {self.latch.stop_seq}) came after this Start: "
                                 "not started")
        if self.latch.latched:
            try:
                self.latch.check_clear("station", after_stop)
            except StopRefused as exc:
                raise CommandRefused(str(exc)) from None

    def _scenario(self, args: dict[str, Any], session: Session) -> Scenario:
        """A session without a child: the named scenario (the current one if none is named)."""
        name = str(args.get("scenario") or session.controller.scenario.name)
        try:
            return load_named(name, self.scenario_dirs)
        except UnknownScenario as exc:
            raise CommandRefused(str(exc)) from None
        except RelaxdError as exc:
            raise CommandRefused(f"scenario {name}: {exc}") from None

    def _ack(self, t: float, session: Session, args: dict[str, Any], by: str) -> dict[str, Any]:
        try:
            alert_id = int(args.get("alert", ""))  # none given: not a number
        except (TypeError, ValueError):
            raise CommandRefused("give the alert's number") from None
        if self.board.ack(alert_id):
            session.alerter.clear()  # the buzzer and LED stop
        return {"detail": f"alert {alert_id}"}

    def _calmer(self, t: float, session: Session, args: dict[str, Any], by: str) -> dict[str, Any]:
        return self._decide(t, session, session.controller.calmer(t), "calmer")

    def _end_gently(self, t: float, session: Session, args: dict[str, Any], by: str) -> dict[str, Any]:
        return self._decide(t, session, session.controller.end_gently(t), "end gently")

    def _nudge(self, t: float, session: Session, args: dict[str, Any], by: str) -> dict[str, Any]:
        steps = args.get("steps")
        if steps not in (-1, 1):
            raise CommandRefused("steps must be 1 or -1")
        return self._decide(t, session, session.controller.nudge(t, steps), "manual intensity")

    def _hold(self, t: float, session: Session, args: dict[str, Any], by: str) -> dict[str, Any]:
        session.controller.hold(bool(args.get("on", True)))
        return {"detail": "hold on" if session.controller.held else "hold released"}

    @staticmethod
    def _decide(t: float, session: Session, decision: Decision | None,
                what: str) -> dict[str, Any]:
        if decision is None:
            raise CommandRefused(f"{what}: not while the chair is "
                                 f"{session.controller.state.value}")
        session.events.emit(t, "decision", action=decision.action, reason=decision.reason,
                            state=session.controller.state.value,
                            intensity=round(session.controller.intensity, 3))
        return {"detail": decision.reason}

    def _observe(self, t: float, session: Session, args: dict[str, Any], by: str) -> dict[str, Any]:
        what = args.get("what")
        if what not in OBSERVATIONS:
            raise CommandRefused(f"an observation is one of {', '.join(OBSERVATIONS)}")
        session.observe(t, what, by)
        return {"detail": what}

    def _audit(self, t: float, session: Session, args: dict[str, Any], by: str) -> dict[str, Any]:
        session.events.emit(t, "audit", action=str(args.get("action", ""))[:64], by=by,
                            detail=str(args.get("detail", ""))[:500])
        return {}

    def publish(self, t: float, session: Session, sensed: Sensed, step: Step) -> None:
        try:
            self.server.publish(self.snapshot(t, session, sensed, step))
        finally:
            self._answer()

    def snapshot(self, t: float, session: Session, sensed: Sensed, step: Step) -> dict[str, Any]:
        """The chair's state for the station (and a broker): plain JSON values only."""
        c = session.controller
        lv = step.levels if not session.actuators.inhibited else None
        reading, pressed = sensed.reading, self.estop.pressed
        return {
            "t": round(t, 2), "at": time.time(), "state": step.state.value,
            "scenario": c.scenario.name, "phase": step.phase_name if c.playing else None,
            "phase_left": _rounded(c.phase_left(t)), "intensity": round(step.intensity, 3),
            "mood": {"mood": getattr(reading.mood, "value", str(reading.mood)),
                     "confidence": round(float(reading.confidence), 3)},
            "levels": {k: round(getattr(lv, k), 3) if lv else 0.0
                       for k in ("light", "audio", "vibration")},
            "colour": "#%02x%02x%02x" % tuple(step.stimulus.colour),
            "estop": bool(self.estop.latched or pressed),
            "estop_pressed": bool(pressed),
            "latch": self.latch.reason, "latch_causes": sorted(self.latch.causes),
            "stop_seq": self.latch.stop_seq, "station_stop": self.latch.station_clearable,
            "hold": c.held, "manual": c.manual, "waiting": c.waiting_for_start,
            "child": session.child.child.id if session.child else None,  # the id only
            "why": session.child.why if session.child else None,
            "breath": _breath(step.breath if c.playing and lv else None),
            "vitals": sensed.vitals.event() if sensed.vitals is not None else None,
            "tempo": chair_tempo(step),  # what the child's breathing is compared with
            "chest_in_view": sensed.chest_seen,
            "thermal": session.thermal.status() if session.thermal is not None else None,
            "alerts": self.board.listing(),
            "scenarios": self._scenario_names(),
        }

    def close(self) -> None:
        self.server.close()


def _release(command: Command) -> None:
    """Free what preparing a cancelled command opened (a Start's child profile)."""
    child = command.args.pop("_child", None)
    if child is not None:
        child.store.close()


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _breath(breath: Breath | None) -> dict[str, Any] | None:
    """The tempo the outputs breathe on, for the station's breathing indicator: breaths a
    minute and where in the breath it is (0 starts breathing in, 0.5 is the peak) at ``at``."""
    if breath is None:
        return None
    return {"bpm": round(breath.bpm, 2), "phase": round(breath.phase, 3)}


def _mtime(folder: Path) -> float:
    """When ``folder``'s listing last changed (-1: no such folder)."""
    try:
        return folder.stat().st_mtime
    except OSError:
        return -1.0
