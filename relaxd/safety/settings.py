"""The safety parts' settings (the configuration's ``safety``, ``alerts`` and ``thermal``
sections): light modules only (no GPIO), so reading the configuration loads no device code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

from relaxd.core.yamlspec import spec

#: Where Raspberry Pi OS exposes the SoC temperature (millidegrees Celsius).
SOC_TEMP_PATH = Path("/sys/class/thermal/thermal_zone0/temp")
#: Where its firmware driver exposes the throttling flags (hex bitmask, as ``vcgencmd
#: get_throttled`` prints them).
THROTTLED_PATH = Path("/sys/devices/platform/soc/soc:firmware/get_throttled")


@dataclass(kw_only=True)
class SafetySettings:
    """The e-stop, the chair's reset button and the heartbeat (BCM pin numbers)."""

    estop_pin: int = spec(5, min=2, max=27, help="BCM pin of the e-stop's sense contact (to GND)")
    estop_contact: Literal["nc", "no"] = spec(
        "nc", help="nc: the sense contact is closed while released and opens when pressed, so a "
        "broken wire reads pressed (recommended); no: it closes to GND when pressed")
    bounce_time: float = spec(
        0.01, min=0.001, max=0.03, help="debounce in seconds (adds at most this to the latency)")
    reset_pin: int = spec(16, min=2, max=27,
                          help="BCM pin of the chair's reset button (momentary, to GND)")
    hold_to_reset: float = spec(
        3.0, min=3, max=30, help="seconds the reset button must be held to clear a stop")
    remote_reset: bool = spec(
        False, help="let `relaxd reset` restart the chair from a shell; off: only the reset "
        "button at the chair (someone away from the chair cannot see the child)")
    heartbeat_pin: int | None = spec(
        None, min=2, max=27, help="BCM pin toggled every tick while the loop is healthy, for a "
        "hardware watchdog that drops the actuator relay when it stops; none: not fitted")

    def pins(self) -> dict[str, int | None]:
        return {"e-stop": self.estop_pin, "reset": self.reset_pin,
                "heartbeat": self.heartbeat_pin}


@dataclass(kw_only=True)
class AlertSettings:
    """The caregiver's alert outputs (BCM pin numbers) and command."""

    buzzer_pin: int | None = spec(6, min=2, max=27, help="BCM pin of the alert buzzer; none")
    led_pin: int | None = spec(26, min=2, max=27, help="BCM pin of the alert LED; none")
    command: list[str] = spec(
        default_factory=list, help="program + args run on each alert (no shell); reason appended")
    timeout: float = spec(10.0, min=1, max=120, help="seconds before the command is killed")

    def pins(self) -> dict[str, int | None]:
        return {"buzzer": self.buzzer_pin, "alert LED": self.led_pin}


@dataclass
class ThermalSettings:
    """The Pi's temperature and throttling watch (the sysfs files, the two thresholds)."""

    temp_path: Path | None = spec(
        SOC_TEMP_PATH, help="the SoC temperature file (millidegrees Celsius); null: not watched")
    throttled_path: Path | None = spec(
        THROTTLED_PATH, help="the firmware's throttling flags (hex bitmask); null: not read")
    warn_c: float = spec(75.0, min=40, max=85,
                         help="at or above this many degrees Celsius the caregiver is alerted")
    halt_c: float = spec(80.0, min=45, max=90,
                         help="at or above this every output goes to 0 until a deliberate "
                              "start once the chair has cooled")
    cool_by_c: float = spec(5.0, min=1, max=20,
                            help="a level clears only once the temperature is this far below "
                                 "its threshold")
    confirm_s: float = spec(2.0, min=0, max=30,
                            help="a threshold counts as crossed once the readings stay beyond "
                                 "it this long")
    read_every_s: float = spec(1.0, min=0.2, max=10, help="seconds between two readings")

    def check(self) -> Iterator[tuple[str | None, str]]:
        if self.warn_c >= self.halt_c:
            yield "warn_c", f"warn_c ({self.warn_c:g}) must be below halt_c ({self.halt_c:g})"
