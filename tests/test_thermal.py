"""The chair's temperature watch: the rules over time, the sysfs files, the daemon halting a
too-hot chair until a deliberate start, and ``relaxd check``."""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path

import pytest

from relaxd.cli import main
from relaxd.commands import check
from relaxd.config import Config, load_config
from relaxd.control.controller import Controller, MoodSample, State
from relaxd.control.scenario import load_scenario
from relaxd.core.clock import VirtualClock
from relaxd.core.errors import RelaxdError
from relaxd.core.labels import Mood
from relaxd.core.paths import default_scenario
from relaxd.core.yamlspec import SpecError
from relaxd.daemon.hardware import ChairHardware, SimulatedHands, SimulatedHardware
from relaxd.daemon.loop import Session
from relaxd.outputs.actuators import Actuators
from relaxd.outputs.audio import NullOutput
from relaxd.outputs.settings import ActuatorSettings
from relaxd.records.events import EventLog, MemorySink
from relaxd.safety.alerts import Alerter
from relaxd.safety.estop import EmergencyStop
from relaxd.safety.latch import FaultLatch
from relaxd.safety.settings import AlertSettings, SafetySettings
from relaxd.safety.thermal import (
    THROTTLE_REPEAT_S,
    BackgroundSampler,
    Level,
    PolledSampler,
    Sample,
    SysfsReader,
    ThermalJudge,
    ThermalSettings,
    ThermalWatch,
    read_temp_c,
    read_throttled,
    throttle_flags,
    without_sysfs,
)
from relaxd.vision.inputs import Sensed

PINS = ActuatorSettings()


def judge_over(temps: list[float | None], settings: ThermalSettings | None = None,
               every: float = 1.0) -> tuple[ThermalJudge, list[tuple[float, str]]]:
    """A judge fed one reading a second; each change with its time."""
    judge = ThermalJudge(settings or ThermalSettings())
    changes = []
    for i, temp in enumerate(temps):
        changes += [(i * every, c.kind) for c in judge.update(Sample(i * every, temp))]
    return judge, changes


# --- the rules over time ------------------------------------------------------------------------


def test_warm_then_too_hot_then_cooled_then_normal_each_once_held_for_confirm_s():
    temps = [60.0] * 3 + [76.0] * 4 + [81.0] * 4 + [77.0] * 5 + [75.0] * 4 + [71.0] * 3 \
        + [69.0] * 4
    judge, changes = judge_over(temps)
    # each threshold is crossed once the readings stay beyond it for 2 s (confirm_s)
    assert changes == [(5.0, "warm"), (9.0, "too hot"), (18.0, "cooled"), (25.0, "normal")]
    assert judge.level is Level.OK


def test_too_hot_holds_until_it_has_cooled_by_cool_by_c():
    judge, changes = judge_over([82.0] * 3 + [76.0] * 30)  # below halt_c, above halt_c - 5
    assert changes == [(2.0, "too hot")] and judge.level is Level.TOO_HOT
    assert "too hot (76.0 °C)" in judge.too_hot_reason and "cooled to 75" in judge.too_hot_reason


def test_readings_around_a_threshold_never_flap():
    around = [74.9, 75.1] * 30
    assert judge_over(around)[1] == []  # never beyond it for 2 s
    instant = ThermalSettings(confirm_s=0)
    assert judge_over(around, instant)[1] == [(1.0, "warm")]  # then held by the hysteresis


def test_an_unknown_temperature_keeps_the_level():
    judge, changes = judge_over([85.0] * 3 + [None] * 10)
    assert changes == [(2.0, "too hot")] and judge.level is Level.TOO_HOT
    assert judge.status() == {"temp_c": None, "level": "too hot", "throttled": []}


def test_an_old_or_repeated_sample_changes_nothing():
    judge = ThermalJudge(ThermalSettings(confirm_s=0))
    assert [c.kind for c in judge.update(Sample(10.0, 90.0))] == ["too hot"]
    assert judge.update(Sample(5.0, 20.0)) == [] and judge.update(Sample(10.0, 20.0)) == []
    assert judge.level is Level.TOO_HOT


def test_a_throttling_flag_is_reported_when_set_and_again_only_after_a_while():
    judge = ThermalJudge(ThermalSettings())
    first = judge.update(Sample(0.0, 50.0, 0x50005))
    assert [c.kind for c in first] == ["throttled"]
    assert "under-voltage, throttled" in first[0].detail and "0x50005" in first[0].detail
    assert judge.update(Sample(1.0, 50.0, 0x50000)) == []  # gone now (since boot only)
    assert judge.update(Sample(2.0, 50.0, 0x50005)) == []  # back within THROTTLE_REPEAT_S
    assert [c.kind for c in judge.update(Sample(THROTTLE_REPEAT_S, 50.0, 0x50005))] == ["throttled"]
    assert judge.status()["throttled"] == ["under-voltage", "throttled"]


def test_throttle_flags_by_name():
    assert throttle_flags(0x50005) == (["under-voltage", "throttled"],
                                       ["under-voltage", "throttled"])
    assert throttle_flags(0x8) == (["soft temperature limit"], [])
    assert throttle_flags(0x20000) == ([], ["arm frequency capped"])
    assert throttle_flags(None) == ([], [])


def test_warn_must_be_below_halt(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("thermal:\n  warn_c: 80\n  halt_c: 80\n")
    with pytest.raises(SpecError, match=r"config.yaml:2:3: warn_c \(80\) must be below halt_c"):
        load_config(path)
    path.write_text("thermal:\n  halt_c: 120\n")
    with pytest.raises(SpecError, match="'halt_c' is 120.0, outside 45..90"):
        load_config(path)
    path.write_text("thermal:\n  temp_path: null\n  warn_c: 70\n")
    loaded = load_config(path).thermal
    assert loaded.temp_path is None and loaded.warn_c == 70 and loaded.halt_c == 80


def test_the_controller_halts_for_heat_and_keeps_an_estop_latched():
    ctrl = Controller(load_scenario(default_scenario()))
    ctrl.step(0.0, MoodSample(Mood.POSITIVE))
    assert ctrl.step(30.0, MoodSample(Mood.POSITIVE)).levels.light > 0
    step = ctrl.too_hot(31.0, "SoC 81.0 °C")
    (halt,) = step.decisions
    assert step.levels.light == step.levels.audio == step.levels.vibration == 0
    assert step.state is State.IDLE and ctrl.waiting_for_start
    assert halt.action == "halt" and halt.alert == "the chair is too hot: SoC 81.0 °C"
    assert ctrl.step(60.0, MoodSample(Mood.POSITIVE)).levels.light == 0  # no start on a face
    ctrl.estop(61.0)
    assert ctrl.too_hot(62.0, "SoC 82.0 °C").state is State.ESTOPPED
    assert ctrl.reset(63.0).state is State.IDLE and ctrl.waiting_for_start


# --- the sysfs files ----------------------------------------------------------------------------


def test_the_readers_take_millidegrees_and_hex_and_say_what_is_wrong(tmp_path):
    temp, throttled = tmp_path / "temp", tmp_path / "get_throttled"
    temp.write_text("52078\n")
    throttled.write_text("50005\n")
    assert read_temp_c(temp) == pytest.approx(52.078) and read_throttled(throttled) == 0x50005
    throttled.write_text("0x8\n")
    assert read_throttled(throttled) == 8
    temp.write_text("hot\n")
    with pytest.raises(RelaxdError, match="not a temperature in millidegrees: 'hot'"):
        read_temp_c(temp)
    with pytest.raises(RelaxdError, match="cannot read"):
        read_temp_c(tmp_path / "missing")
    throttled.write_text("zz\n")
    with pytest.raises(RelaxdError, match="not a hex bitmask"):
        read_throttled(throttled)


def test_a_missing_or_garbled_file_is_reported_once_and_is_not_fatal(tmp_path, caplog):
    temp = tmp_path / "temp"
    reader = SysfsReader(temp, tmp_path / "no-throttled", now=lambda: 1.0)
    with caplog.at_level(logging.WARNING, logger="relaxd.safety.thermal"):
        samples = [reader.read() for _ in range(3)]
    assert samples == [Sample(1.0, None, None)] * 3
    assert len(caplog.records) == 2  # each file once
    temp.write_text("61000\n")
    assert reader.read().temp_c == 61.0
    temp.write_text("garbage\n")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="relaxd.safety.thermal"):
        assert reader.read().temp_c is None and reader.read().temp_c is None
    assert [r.getMessage() for r in caplog.records] == [
        f"thermal watch: {temp}: not a temperature in millidegrees: 'garbage'"]


def test_the_background_sampler_reads_on_its_own_thread(tmp_path):
    temp = tmp_path / "temp"
    temp.write_text("50000\n")
    sampler = BackgroundSampler(SysfsReader(temp, None), every=0.2)
    try:
        deadline = time.monotonic() + 5
        while sampler.latest() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sampler.latest().temp_c == 50.0
        temp.write_text("70000\n")
        while sampler.latest().temp_c != 70.0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sampler.latest().temp_c == 70.0
    finally:
        sampler.close()
    assert not sampler._thread.is_alive()


def test_a_sampler_that_stops_delivering_is_reported_once_as_unknown():
    class Stuck:
        def latest(self) -> Sample:
            return Sample(0.0, 60.0)

        def close(self) -> None:
            pass

    now = [0.0]
    watch = ThermalWatch(ThermalSettings(), Stuck(), now=lambda: now[0])
    assert watch.poll() == [] and watch.status()["temp_c"] == 60.0
    now[0] = 30.0
    (change,) = watch.poll()
    assert change.kind == "unknown" and watch.status()["temp_c"] is None
    assert watch.poll() == []


def test_simulation_never_reads_the_laptops_own_sysfs(tmp_path):
    config = Config()
    assert without_sysfs(config.thermal).temp_path is None
    assert SimulatedHardware(config, tmp_path).thermal_watch() is None
    assert ChairHardware(config).thermal_settings().temp_path == Path(
        "/sys/class/thermal/thermal_zone0/temp")
    named = ThermalSettings(temp_path=tmp_path / "temp", throttled_path=None)
    assert without_sysfs(named) == named  # plain files, to rehearse a hot chair


# --- the daemon ---------------------------------------------------------------------------------


class HeatedInput:
    """A positive child; the chair's temperature file follows ``heat`` (tick -> millidegrees),
    and ``at`` (tick -> callable) does something to the session then. Ends after ``ticks``."""

    scripted = exhausted = False

    def __init__(self, temp: Path, heat: dict[int, int], at: dict, ticks: int, pins) -> None:
        self.temp, self.heat, self.at, self.ticks, self.pins = temp, heat, at, ticks, pins
        self.tick, self.seen = 0, []
        self.session: Session | None = None

    def now(self) -> float:
        return self.tick * 0.5

    def read(self, t: float) -> Sensed | None:
        self.tick += 1
        self.seen.append(self.pins())
        if self.tick in self.heat:
            self.temp.write_text(f"{self.heat[self.tick]}\n")
        if self.tick in self.at:
            self.at[self.tick](self.session)
        if self.tick > self.ticks:
            return None
        return Sensed(MoodSample(Mood.POSITIVE, 0.9))

    def close(self) -> None:
        pass


def heated_session(factory, tmp_path: Path, heat: dict[int, int], at: dict, ticks: int):
    temp = tmp_path / "temp"
    temp.write_text("50000\n")
    inp = HeatedInput(temp, heat, at, ticks, lambda: [factory.pin(p).state for p in (
        PINS.red_pin, PINS.green_pin, PINS.blue_pin, PINS.vibration_pin)])
    settings = ThermalSettings(temp_path=temp, throttled_path=None)
    watch = ThermalWatch(settings, PolledSampler(SysfsReader(temp, None, now=inp.now), 1.0),
                         now=inp.now)
    sink = MemorySink()
    events = EventLog([sink])
    actuators = Actuators(PINS, NullOutput(), pin_factory=factory)
    alerter = Alerter(AlertSettings(), events, pin_factory=factory)
    clock = VirtualClock(None)
    estop = EmergencyStop(actuators, SafetySettings(), alerter=alerter, events=events,
                          now=clock.now, pin_factory=factory, latch=FaultLatch(None))
    SimulatedHands(factory, estop.settings).rest()
    session = Session(clock=clock, input=inp, controller=Controller(load_scenario(default_scenario())),
                      actuators=actuators, estop=estop, alerter=alerter, events=events,
                      latch=FaultLatch(None), period=0.5, thermal=watch)
    inp.session = session
    return session, inp, sink


def test_too_hot_mid_session_stops_everything_until_a_deliberate_start_once_cooled(
        mock_factory, tmp_path):
    reasons: dict[str, str | None] = {}

    def start_while_hot(session: Session) -> None:
        reasons["hot"] = session.too_hot_reason
        session.controller.begin()  # a start that slipped past the station's refusal

    def deliberate_start(session: Session) -> None:
        reasons["cooled"] = session.too_hot_reason
        assert session.controller.waiting_for_start  # it never restarted by itself
        session.controller.begin()

    session, inp, sink = heated_session(
        mock_factory, tmp_path, heat={200: 85000, 300: 60000},
        at={260: start_while_hot, 500: deliberate_start}, ticks=700)
    assert session.run() == 0
    seen = inp.seen
    assert max(seen[199]) > 0  # playing when the chair heated up
    assert all(max(v) == 0 for v in seen[210:500])  # off within confirm_s, and stays off:
    # through a start while still too hot, and after it has cooled, with a positive child
    assert max(seen[-1]) > 0  # the deliberate start played again
    assert reasons["hot"].startswith("the chair is too hot (85.0 °C)") and reasons["cooled"] is None
    alerts = [e for e in sink.events if e["type"] == "alert"]
    assert [a["reason"] for a in alerts] == ["halt", "halt"]
    assert alerts[0]["detail"].startswith("the chair is too hot: SoC 85.0 °C")
    assert "started before the chair cooled" in alerts[1]["detail"]
    halts = [e for e in sink.events if e["type"] == "decision" and e["action"] == "halt"]
    assert len(halts) == 2 and all(h["state"] == State.IDLE.value for h in halts)
    restart = [e for e in sink.events if e["type"] == "decision" and e["action"] == "start"][-1]
    start = session.controller.scenario.intensity.start
    assert restart["reason"].endswith(f"at intensity {start:.2f}")  # from the start intensity,
    after = [e["light"] for e in sink.events if e["type"] == "levels" and e["t"] > restart["t"]]
    assert 0 < after[0] < max(after)  # ramped up from 0


def test_warm_alerts_the_caregiver_once_and_the_session_plays_on(mock_factory, tmp_path):
    session, inp, sink = heated_session(mock_factory, tmp_path, heat={100: 76500, 104: 76000},
                                        at={}, ticks=200)
    assert session.run() == 0
    assert max(inp.seen[-1]) > 0
    (alert,) = [e for e in sink.events if e["type"] == "alert"]
    assert alert["reason"] == "hot" and alert["detail"].startswith("the chair is warm: SoC 76.")
    assert session.thermal.status() == {"temp_c": 76.0, "level": "warm", "throttled": []}


def test_a_simulated_chair_reads_a_temperature_file_the_configuration_names(tmp_path):
    temp = tmp_path / "temp"
    temp.write_text("91000\n")
    config = tmp_path / "config.yaml"
    config.write_text(f"thermal:\n  temp_path: {temp}\n  confirm_s: 0\n  read_every_s: 0.2\n")
    script = tmp_path / "moods.yaml"
    # too hot, the chair idles for a Start: the caregiver's e-stop press ends the simulation
    script.write_text("- {at: 0, mood: positive}\n- {at: 30, press: estop}\n")
    events = tmp_path / "events.jsonl"
    assert main(["--simulate", "--config", str(config), "--mood-script", str(script),
                 "--speed", "20", "--quiet", "--events", str(events),
                 "--out", str(tmp_path / "out")]) == 0
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    alerts = [e for e in lines if e["type"] == "alert"]
    assert alerts and alerts[0]["detail"].startswith("the chair is too hot: SoC 91.0 °C")
    assert all(e["light"] == 0 for e in lines if e["type"] == "levels" and e["t"] >= alerts[0]["t"])


# --- relaxd check -------------------------------------------------------------------------------


def test_check_reports_the_temperature_warm_as_warn_too_hot_as_fail(tmp_path):
    temp = tmp_path / "temp"
    settings = ThermalSettings(temp_path=temp, throttled_path=None)
    temp.write_text("52000\n")
    ok = check.check_temperature(settings)
    assert ok.ok and not ok.warn and ok.detail.startswith("SoC 52.0 °C (alert at 75 °C")
    temp.write_text("76000\n")
    warm = check.check_temperature(settings)
    assert warm.ok and warm.warn and warm.detail.startswith("SoC 76.0 °C: warm")
    temp.write_text("80000\n")
    hot = check.check_temperature(settings)
    assert not hot.ok and "too hot" in hot.detail
    temp.unlink()
    assert not check.check_temperature(settings).ok  # not watched: it fails
    unwatched = check.check_temperature(ThermalSettings(temp_path=None))
    assert unwatched.ok and unwatched.warn
    simulated = check.check_temperature(ThermalSettings(temp_path=None), simulated=True)
    assert simulated.ok and not simulated.warn


def test_check_reports_the_throttling_flags(tmp_path):
    flags = tmp_path / "get_throttled"
    settings = ThermalSettings(temp_path=None, throttled_path=flags)
    flags.write_text("0\n")
    assert check.check_throttling(settings) == ("throttling", True, "none now or since boot (0x0)",
                                                False)
    flags.write_text("50005\n")
    seen = check.check_throttling(settings)
    assert seen.ok and seen.warn and seen.detail == (
        "now: under-voltage, throttled; since boot: under-voltage, throttled (0x50005)")
    flags.unlink()
    assert check.check_throttling(settings).warn


def test_report_prints_warn_and_counts_warnings():
    out = io.StringIO()
    code = check.report(iter([check.Check("temperature", True, "SoC 76.0 °C: warm", warn=True),
                              check.Check("state dir", True, "fine")]), out)
    lines = out.getvalue().splitlines()
    assert code == 0 and lines[0].startswith("WARN  temperature    SoC 76.0 °C: warm")
    assert lines[-1] == "all checks passed (1 warning)"


def test_check_simulate_reads_the_files_the_configuration_names(tmp_path):
    (tmp_path / "temp").write_text("81500\n")
    (tmp_path / "get_throttled").write_text("0\n")
    config = tmp_path / "config.yaml"
    config.write_text("thermal:\n  temp_path: temp\n  throttled_path: get_throttled\n")
    checks = {c.name: c for c in check.run_checks(config, simulate=True)
              if c.name in ("temperature", "throttling")}
    assert not checks["temperature"].ok and "SoC 81.5 °C: too hot" in checks["temperature"].detail
    assert checks["throttling"].ok and not checks["throttling"].warn
