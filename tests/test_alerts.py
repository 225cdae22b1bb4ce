"""Caregiver alerts: log line, buzzer and LED on mock pins, a command that never blocks."""

from __future__ import annotations

import logging
import sys
import threading
import time

from conftest import failing_pin

from relaxd.records.events import EventLog, MemorySink
from relaxd.safety.alerts import BEEPS, Alerter
from relaxd.safety.settings import AlertSettings

S = AlertSettings()


def wait_for(cond, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_alert_logs_records_beeps_and_blinks(mock_factory, caplog):
    sink = MemorySink()
    alerter = Alerter(S, EventLog([sink]), pin_factory=mock_factory)
    buzzer, led = mock_factory.pin(S.buzzer_pin), mock_factory.pin(S.led_pin)
    with caplog.at_level(logging.CRITICAL, logger="relaxd.safety.alerts"):
        alerter.alert(42.0, "halt", "negative mood for 45 s: stimuli halted")
    assert "ALERT halt at 42.0 s: negative mood for 45 s" in caplog.text
    assert sink.events == [{"t": 42.0, "type": "alert", "reason": "halt",
                            "detail": "negative mood for 45 s: stimuli halted"}]
    on, off, n = BEEPS["halt"]
    wait_for(lambda: len(buzzer.states) >= 2 * n + 1)  # n beeps: on/off pairs
    wait_for(lambda: len(led.states) >= 3)  # blinking
    alerter.clear()
    alerter.wait(2)
    assert led.state == 0
    alerter.close()


def test_alerts_and_clears_from_many_threads_never_raise(mock_factory):
    """gpiozero's blink thread started and stopped from two threads at once raised
    'cannot join thread before it is started' into the loop: one worker drives the outputs."""
    alerter = Alerter(S, pin_factory=mock_factory)
    errors = []

    def hammer(i):
        try:
            for k in range(50):
                alerter.alert(float(k), "halt" if i % 2 else "estop", "x")
                alerter.clear()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    alerter.clear()
    alerter.wait(5)
    assert errors == [] and mock_factory.pin(S.led_pin).state == 0
    alerter.close()


def test_a_failing_alert_output_never_raises_and_the_next_alert_still_sounds(
        mock_factory, caplog):
    buzzer = failing_pin(mock_factory, S.buzzer_pin)
    buzzer.failing = False
    alerter = Alerter(S, pin_factory=mock_factory)
    buzzer.failing = True
    with caplog.at_level(logging.ERROR, logger="relaxd.safety.alerts"):
        alerter.alert(1.0, "fault", "first")  # does not raise
        alerter.wait(2)
    assert "driving an alert output failed" in caplog.text
    buzzer.failing = False
    alerter.alert(2.0, "estop", "second")
    wait_for(lambda: buzzer.state == 1)
    alerter.close()


def test_no_pins_configured(mock_factory):
    alerter = Alerter(AlertSettings(buzzer_pin=None, led_pin=None),
                      pin_factory=mock_factory)
    assert alerter.buzzer is None and alerter.led is None
    alerter.alert(1.0, "absent", "no face")
    alerter.clear()
    alerter.close()


def test_command_gets_reason_in_args_and_env_without_blocking(mock_factory, tmp_path):
    out = tmp_path / "out.txt"
    script = ("import os, sys, time; time.sleep(0.3); "
              f"open({str(out)!r}, 'w').write('|'.join(sys.argv[1:] + "
              "[os.environ['RELAXD_ALERT_REASON'], os.environ['RELAXD_ALERT_T']]))")
    settings = AlertSettings(buzzer_pin=None, led_pin=None,
                              command=[sys.executable, "-c", script])
    alerter = Alerter(settings, pin_factory=mock_factory)
    t0 = time.monotonic()
    alerter.alert(7.25, "estop", "emergency stop (button)")
    assert time.monotonic() - t0 < 0.1  # returns at once
    alerter.wait(5)
    assert out.read_text() == "estop|emergency stop (button)|estop|7.250"


def test_command_timeout_and_missing_program_are_logged_not_raised(mock_factory, caplog):
    settings = AlertSettings(buzzer_pin=None, led_pin=None, timeout=0.2,
                              command=[sys.executable, "-c", "import time; time.sleep(5)"])
    alerter = Alerter(settings, pin_factory=mock_factory)
    with caplog.at_level(logging.ERROR, logger="relaxd.safety.alerts"):
        alerter.alert(1.0, "camera", "no frames")
        alerter.wait(3)
        assert "timed out after 0.2 s and was killed" in caplog.text
        alerter.settings = AlertSettings(buzzer_pin=None, led_pin=None,
                                          command=["/nonexistent/notify"])
        alerter.alert(2.0, "model", "inference failed")
        alerter.wait(3)
        assert "could not run" in caplog.text
        alerter.settings = AlertSettings(buzzer_pin=None, led_pin=None,
                                          command=[sys.executable, "-c",
                                                         "import sys; sys.exit('no network')"])
        alerter.alert(3.0, "absent", "no face")
        alerter.wait(3)
        assert "exited 1: no network" in caplog.text
