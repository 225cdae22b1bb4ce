"""The one place that decides real or simulated hardware, and ``relaxd safe-off``.

:class:`ChairHardware` gives the chair's parts: gpiozero's default pin factory (lgpio on the
Pi), the sound card, the latch and run marker in the state directory, the SoC temperature watch.
:class:`SimulatedHardware` gives the same parts for a laptop: gpiozero's MockFactory with PWM
pins, a WAV file, an in-memory latch (or the ``--out`` folder's with ``--keep-latch``), a
temperature watch on plain files only (never the laptop's own /sys), and a caregiver's hands on
the simulated buttons::

    hw = hardware_for(config, simulate=True, out=Path("relaxd-sim"))
    actuators = Actuators(config.actuators, hw.audio_output(), pin_factory=hw.pin_factory)

``relaxd safe-off`` runs from the systemd unit before every start and after every exit (a crash
and SIGKILL included): every actuator pin to its off level, and the stop latched when the run
before did not end cleanly, whatever else is wrong with the configuration (the pins come from
:func:`relaxd.outputs.pins.pins_for_safe_off`; the chair's hardware saves their copy at each start).
Importing this module loads nothing heavy (no OpenCV, TFLite, numpy or sounddevice, nor the
full configuration); each part is imported where it is made.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relaxd.outputs.pins import ActuatorPins, save_pins
from relaxd.safety.latch import FaultLatch, RunMarker

if TYPE_CHECKING:
    from relaxd.config import Config
    from relaxd.core.clock import Clock
    from relaxd.outputs.audio import AudioOutput
    from relaxd.safety.estop import EmergencyStop
    from relaxd.safety.settings import SafetySettings, ThermalSettings
    from relaxd.safety.thermal import ThermalWatch
    from relaxd.vision.camera import FrameFeed
    from relaxd.vision.settings import CameraSettings

log = logging.getLogger(__name__)


class ChairHardware:
    """The chair's own parts."""

    simulated = False

    def __init__(self, config: Config) -> None:
        self.config = config
        self.state_dir = Path(config.state_dir)
        self.pin_factory: Any = None  # gpiozero's default: lgpio on the Pi

    def audio_output(self) -> AudioOutput:
        from relaxd.outputs.audio import SoundDeviceOutput

        a = self.config.actuators
        return SoundDeviceOutput(a.audio_device, a.sample_rate)

    def fault_latch(self) -> tuple[FaultLatch, RunMarker | None]:
        """The latch and run marker, kept in the state directory across restarts; also the copy
        of the actuator pins this run drives, for a ``safe-off`` that cannot read them from the
        configuration."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.save_pins()
        return FaultLatch.in_state_dir(self.state_dir), RunMarker.in_state_dir(self.state_dir)

    def save_pins(self) -> None:
        """The copy of the actuator pins in the state directory (a failure is logged: the
        configuration stays the first source)."""
        try:
            save_pins(self.state_dir, self.config.actuators, self.config.path)
        except OSError as exc:
            log.error("could not save the actuator pins' copy in %s: %s", self.state_dir, exc)

    def thermal_settings(self) -> ThermalSettings:
        """The temperature watch's settings: the configured sysfs files."""
        return self.config.thermal

    def thermal_watch(self) -> ThermalWatch | None:
        """The SoC temperature and throttling watch (None: neither file to read)."""
        from relaxd.safety.thermal import ThermalWatch

        return ThermalWatch.open(self.thermal_settings())

    def rest_buttons(self) -> None:
        """The buttons as nobody touches them (on the chair: as they are)."""

    def hands(self, estop: EmergencyStop) -> Any:
        """What a mood script's ``press``/``release`` do: on real pins a script may stop the
        chair, never reset or release anything."""
        def scripted(action: str, button: str) -> None:
            if (action, button) == ("press", "estop"):
                estop.trigger("script")
            else:
                log.warning("mood script: '%s: %s' ignored on real pins", action, button)
        return scripted

    def close(self) -> None:
        pass


class SimulatedHardware(ChairHardware):
    """A laptop's stand-ins: mock pins, a WAV file, and a latch that is kept in ``out`` only
    with ``keep_latch`` (to rehearse a crash), else in memory."""

    simulated = True

    def __init__(self, config: Config, out: Path, keep_latch: bool = False) -> None:
        super().__init__(config)
        self.state_dir, self.keep_latch = Path(out), keep_latch
        self.pin_factory = simulated_pins()

    def audio_output(self) -> AudioOutput:
        from relaxd.outputs.audio import WavFileOutput

        self.state_dir.mkdir(parents=True, exist_ok=True)
        return WavFileOutput(self.state_dir / "audio.wav", self.config.actuators.sample_rate)

    def fault_latch(self) -> tuple[FaultLatch, RunMarker | None]:
        return super().fault_latch() if self.keep_latch else (FaultLatch(None), None)

    def thermal_settings(self) -> ThermalSettings:
        """Only plain files the configuration names, to rehearse a hot chair: never the
        laptop's own sensors under /sys."""
        from relaxd.safety.thermal import without_sysfs

        return without_sysfs(self.config.thermal)

    def rest_buttons(self) -> None:
        SimulatedHands(self.pin_factory, self.config.safety).rest()

    def hands(self, estop: EmergencyStop) -> SimulatedHands:
        self.rest_buttons()
        return SimulatedHands(self.pin_factory, estop.settings)

    def close(self) -> None:
        self.pin_factory.close()


def hardware_for(config: Config, *, simulate: bool, out: Path | None = None,
                 keep_latch: bool = False) -> ChairHardware:
    """The chair's hardware, or its simulation (files in ``out``)."""
    if simulate:
        return SimulatedHardware(config, out or Path("relaxd-sim"), keep_latch)
    return ChairHardware(config)


def open_frames(camera: CameraSettings, clock: Clock, *, live: bool,
                check_now: bool = False) -> tuple[FrameFeed, float]:
    """The frame source ``camera`` names, and the tick period it paces. A live camera is kept
    going by a ResilientSource (safe and alerting while it is down); ``check_now`` opens it
    once first, so a webcam named on the command line that won't open is bad input."""
    from relaxd.vision.camera import ResilientSource

    if not live:
        source = camera.open()
        fps = getattr(source, "fps", None) if camera.source == "video" else camera.fps
        return source, 1.0 / (fps or 25.0)
    if check_now:
        camera.open().close()
    return (ResilientSource(camera.open, clock, name=camera.source,
                            backoff_s=camera.retry_backoff_s,
                            max_backoff_s=camera.retry_backoff_max_s), 1.0 / camera.fps)


def simulated_pins() -> Any:
    """gpiozero's MockFactory whose PWM pins keep only their recent history.

    gpiozero's mock pins record every change for tests to inspect; over hours of simulation
    that record would grow without bound (measured: 31 MB in a 2-hour soak).
    """
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    class SimulatedPWMPin(MockPWMPin):
        def _change_state(self, value: Any) -> bool:
            changed = super()._change_state(value)
            if len(self.states) > 1024:
                del self.states[:-256]
            return changed

    return MockFactory(pin_class=SimulatedPWMPin)


class SimulatedHands:
    """A caregiver's hands on the simulated buttons, driving their lines as the wiring would.

    ``hands("press", "estop")`` pushes the latching e-stop down (its line goes to the pressed
    level of its contact, nc or no) and it stays down until ``hands("release", "estop")``;
    the reset button is a plain momentary contact to GND.
    """

    def __init__(self, factory: Any, settings: SafetySettings) -> None:
        self.factory, self.settings = factory, settings

    def rest(self) -> None:
        """Both buttons released: the state the chair starts in."""
        self("release", "estop")
        self("release", "reset")

    def __call__(self, action: str, button: str) -> None:
        s = self.settings
        pin = self.factory.pin(s.estop_pin if button == "estop" else s.reset_pin)
        pressed_high = button == "estop" and s.estop_contact == "nc"
        if (action == "press") == pressed_high:
            pin.drive_high()
        else:
            pin.drive_low()


#: The devices ``safe-off`` keeps until the process ends (a device that is collected closes).
HELD_UNTIL_EXIT: list[Any] = []


def hold_off(pins: ActuatorPins, pin_factory: Any = None) -> tuple[list[Any], list[str]]:
    """Each pin claimed as an output at its off level: the devices holding them (keep them:
    closing one hands its pin back), and a line for each pin that could not be driven.

    Nothing here releases a pin. When the process ends, gpiozero's exit handler closes the
    devices; on lgpio (the Pi) that makes each pin an input without pull, and the kernel then
    frees the line, after which the drivers' gate pull-downs alone hold them off.
    """
    from gpiozero import DigitalOutputDevice

    held, failed = [], []
    for pin in pins.numbers():
        try:
            held.append(DigitalOutputDevice(pin, active_high=pins.active_high,
                                            initial_value=False, pin_factory=pin_factory))
        except Exception as exc:  # noqa: BLE001 - switch the others off whatever this one did
            failed.append(f"GPIO{pin}: {exc}")
    return held, failed
