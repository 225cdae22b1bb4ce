"""Shared fixtures: gpiozero's own mock pins, and where FER2013 is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def mock_factory():
    """gpiozero's MockFactory with PWM-capable pins, reset after the test."""
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    factory = MockFactory(pin_class=MockPWMPin)
    yield factory
    factory.reset()
    factory.close()


def failing_pin(factory, number: int):
    """Pin ``number`` of ``factory`` as a real mock PWM pin whose writes raise ``OSError``
    while its ``failing`` attribute is true (a driver that died): the fault is injected below
    gpiozero, so the device code under test is the real one. Call before the device opens it."""
    from gpiozero.pins.mock import MockPWMPin

    class FailingPin(MockPWMPin):
        failing = True

        def _set_state(self, value):
            if self.failing:
                raise OSError(f"GPIO{number}: driver not responding")
            super()._set_state(value)

    return factory.pin(number, pin_class=FailingPin)


def fer2013_dir() -> Path | None:
    """$RELAXD_FER2013, else ../shared/fer2013 beside the checkout; None when absent."""
    for candidate in (os.environ.get("RELAXD_FER2013"), ROOT.parent / "shared" / "fer2013"):
        if candidate and (Path(candidate) / "val").is_dir():
            return Path(candidate)
    return None
