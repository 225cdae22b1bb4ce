"""The stop arbiter: numbered stops that outlive restarts, every cause remembered, and who may
clear what; a stop on an unwritable disk still alerts."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from relaxd.outputs.actuators import Actuators
from relaxd.outputs.audio import NullOutput
from relaxd.outputs.settings import ActuatorSettings
from relaxd.records.events import EventLog, MemorySink
from relaxd.safety.alerts import Alerter
from relaxd.safety.estop import EmergencyStop
from relaxd.safety.latch import CRASH_SEQ_GAP, FaultLatch, RunMarker, StopRefused, latch_if_unclean
from relaxd.safety.settings import AlertSettings, SafetySettings

SAFE = SafetySettings(estop_contact="no")


def test_stops_are_numbered_and_the_numbers_outlive_a_restart(tmp_path):
    latch = FaultLatch.in_state_dir(tmp_path)
    assert latch.stop_seq == 0 and not latch.latched
    assert latch.latch("station-stop", "station stop by ana") == 1
    assert latch.latch("estop") == 2
    latch.clear("chair", after_stop=2)
    again = FaultLatch.in_state_dir(tmp_path)
    assert not again.latched and again.stop_seq == 2  # kept though cleared
    assert again.latch("estop") == 3
    assert json.loads((tmp_path / "latch.json").read_text())["stop_seq"] == 3


def test_the_latch_remembers_every_cause_and_the_station_clears_only_its_own(tmp_path):
    latch = FaultLatch.in_state_dir(tmp_path)
    seq = latch.latch("station-stop", "station stop by ana")
    assert latch.station_clearable
    latch.latch("estop", "emergency stop (button)")  # pressed while the STOP was recorded
    again = FaultLatch.in_state_dir(tmp_path)
    assert again.causes == {"station-stop", "estop"} and not again.station_clearable
    assert "station stop by ana" in again.reason and "button" in again.reason
    with pytest.raises(StopRefused, match="the emergency stop: a caregiver at the chair"):
        again.clear("station", after_stop=again.stop_seq)
    with pytest.raises(StopRefused, match="newer stop"):
        again.clear("chair", after_stop=seq)  # a reset made before the e-stop press
    again.clear("chair", after_stop=again.stop_seq)
    assert not again.latched and not FaultLatch.in_state_dir(tmp_path).latched


def test_a_crash_while_the_station_stop_is_latched_needs_the_reset_button(tmp_path):
    latch = FaultLatch.in_state_dir(tmp_path)
    latch.latch("station-stop", "station stop by ana")
    RunMarker.in_state_dir(tmp_path).begin()  # the run was SIGKILLed: the marker stays
    assert "uncleanly" in latch_if_unclean(tmp_path)  # relaxd safe-off, from ExecStopPost=
    after = FaultLatch.in_state_dir(tmp_path)
    assert after.causes == {"station-stop", "crash"} and not after.station_clearable
    assert after.stop_seq == 1 + CRASH_SEQ_GAP  # above any number the crashed run handed out
    with pytest.raises(StopRefused, match="uncleanly"):
        after.clear("station", after_stop=after.stop_seq)


@pytest.mark.parametrize("text", [
    '{"reason": "station stop by ana", "id": "abc"}',  # an older relaxd's latch
    "not json", "[1, 2]", '{"causes": ["gremlins"], "stop_seq": 4}',
    '{"causes": ["station-stop"], "stop_seq": "x"}'])
def test_an_old_or_damaged_latch_file_needs_the_reset_button(tmp_path, text):
    (tmp_path / "latch.json").write_text(text)
    latch = FaultLatch.in_state_dir(tmp_path)
    assert latch.latched and not latch.station_clearable
    with pytest.raises(StopRefused):
        latch.clear("station", after_stop=latch.stop_seq)
    latch.clear("chair", after_stop=latch.stop_seq)
    assert not latch.latched


def test_a_reset_request_names_the_stop_it_answers(tmp_path):
    latch = FaultLatch.in_state_dir(tmp_path)
    assert latch.take_reset_request() is None
    latch.latch("estop")
    FaultLatch.in_state_dir(tmp_path).request_reset()
    assert latch.take_reset_request() == 1 and latch.take_reset_request() is None
    latch.request_reset()
    assert latch.take_reset_request(now=time.time() + 61) is None  # expired
    latch.request.write_text('{"after_stop": "x", "at": 0}')
    assert latch.take_reset_request() is None


def test_a_stop_with_the_state_directory_gone_still_alerts_first_then_alerts_the_write(
        tmp_path, mock_factory):
    """SD card full or read-only: every output still 0, the stop still alerted and recorded,
    and the failed write is itself an alert."""
    state = tmp_path / "state"
    state.mkdir()
    sink = MemorySink()
    events = EventLog([sink])
    acts = Actuators(ActuatorSettings(), NullOutput(), pin_factory=mock_factory)
    alerter = Alerter(AlertSettings(buzzer_pin=None, led_pin=None), events,
                      pin_factory=mock_factory)
    stop = EmergencyStop(acts, SAFE, alerter=alerter, events=events,
                         latch=FaultLatch.in_state_dir(state), pin_factory=mock_factory)
    shutil.rmtree(state)  # the latch can no longer be written
    mock_factory.pin(SAFE.estop_pin).drive_low()
    assert stop.latched and acts.inhibited
    deadline = time.monotonic() + 2
    while len([e for e in sink.events if e["type"] == "alert"]) < 2:
        assert time.monotonic() < deadline, sink.events
        time.sleep(0.005)
    alerts = [(e["reason"], e["detail"]) for e in sink.events if e["type"] == "alert"]
    assert alerts[0] == ("estop", "emergency stop (button)")
    assert alerts[1][0] == "fault" and "cannot record the stop on disk" in alerts[1][1]
    assert any(e["type"] == "estop" for e in sink.events)
    stop.close()
    alerter.close()
    acts.close()
