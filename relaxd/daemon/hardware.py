"""The one place that decides real or simulated hardware, and ``relaxd safe-off``.

:class:`ChairHardware` gives the chair's parts: its configuration (required), gpiozero's default
pin factory (lgpio on the Pi), the sound card, the latch and run marker in the state directory,
the SoC temperature watch, the station's socket from the configuration.
:class:`SimulatedHardware` gives the same parts for a laptop: the defaults (or a configuration
named), gpiozero's MockFactory with PWM pins, a WAV file, an in-memory latch (or the ``--out``
folder's with ``--keep-latch``), a temperature watch on plain files only (never the laptop's own
/sys), a caregiver's hands on the simulated buttons, the bundled demo when no input is named, and
a station run beside the chair. Everything else asks the hardware object, as gpiozero's devices
ask their pin factory; nothing else reads ``--simulate``::

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

from relaxd.core.paths import SOCKET_FILE, resource_dir
from relaxd.outputs.pins import ActuatorPins, save_pins
from relaxd.safety.latch import FaultLatch, RunMarker

if TYPE_CHECKING:
    from relaxd.config import Config
    from relaxd.core.clock import Clock
    from relaxd.core.options import RunOptions
    from relaxd.outputs.audio import AudioOutput
    from relaxd.safety.estop import EmergencyStop
    from relaxd.safety.settings import SafetySettings, ThermalSettings
    from relaxd.safety.thermal import ThermalWatch
    from relaxd.vision.camera import FrameFeed
    from relaxd.vision.settings import CameraSettings

log = logging.getLogger(__name__)

#: The mood script a simulated chair plays when given no input.
DEMO_SCRIPT = resource_dir("scenarios") / "moods" / "demo.yaml"


class ChairHardware:
    """The chair's own parts."""

    simulated = False
    #: A child named at the start who has no profile: refused on the chair (a caregiver adds
    #: children with consent); simulation makes a virtual child's profile.
    adds_unknown_children = False
    #: What plays when the command line names no input (None: the configured camera).
    default_mood_script: Path | None = None

    def __init__(self, config: Config) -> None:
        self.config = config
        self.state_dir = Path(config.state_dir)

    @property
    def pin_factory(self) -> Any:
        """The pins every device is given (None: gpiozero's default, lgpio on the Pi)."""
        return None

    def remote_reset(self) -> bool:
        """Whether ``relaxd reset`` may clear the latch from a shell (the configuration's
        choice; the reset button always may)."""
        return self.config.safety.remote_reset

    def wants_station(self, ui_flag: bool) -> bool:
        """Whether the daemon serves the station's control socket (``ui.enabled``)."""
        return self.config.ui.enabled

    def station_paths(self) -> tuple[Path, Path]:
        """The station's state folder and the control socket's path."""
        return Path(self.config.ui.state_dir), Path(self.config.ui.socket)

    def runs_station(self) -> bool:
        """Whether the daemon starts the station's process itself (on the chair systemd does)."""
        return False

    def control_socket(self) -> Path:
        """Where a running daemon's control socket is (``relaxd start``)."""
        return Path(self.config.ui.socket)

    def farewell(self, stop_reason: str, events: Path | None) -> str | None:
        """A line for the person at the terminal when the run ends (None: the journal has it)."""
        return None

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

    def kept_latch(self) -> FaultLatch | None:
        """The latch as a run before left it, read only (None: this hardware keeps none)."""
        return FaultLatch.in_state_dir(self.state_dir)

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
    adds_unknown_children = True
    default_mood_script = DEMO_SCRIPT

    def __init__(self, config: Config, out: Path, keep_latch: bool = False,
                 pins: Any = None) -> None:
        super().__init__(config)
        self.state_dir, self.keep_latch = Path(out), keep_latch
        self._pins: Any = pins  # None: made when first asked for
        self._socket: Path | None = None

    @property
    def pin_factory(self) -> Any:
        """gpiozero's MockFactory with PWM pins, made when first asked for."""
        if self._pins is None:
            self._pins = simulated_pins()
        return self._pins

    def remote_reset(self) -> bool:
        """``relaxd reset --simulate`` rehearses the chair's remote reset."""
        return True

    def wants_station(self, ui_flag: bool) -> bool:
        return ui_flag

    def station_paths(self) -> tuple[Path, Path]:
        """A folder in ``out``, and a socket of this run's own under /tmp (a unix socket's path
        is too short for most ``out`` folders); its path is written to ``out``/SOCKET_FILE."""
        import tempfile

        if self._socket is None:
            self._socket = Path(tempfile.mkdtemp(prefix="relaxd-", dir="/tmp")) / "ctl.sock"
        return self.state_dir / "station", self._socket

    def runs_station(self) -> bool:
        return True

    def control_socket(self) -> Path:
        """The simulated chair's socket, as ``relaxd --simulate --ui --out DIR`` wrote it."""
        from relaxd.core.errors import RelaxdError

        named = self.state_dir / SOCKET_FILE
        try:
            return Path(named.read_text().strip())
        except OSError:
            raise RelaxdError(f"no simulated chair with a station in {self.state_dir} (start "
                              f"`relaxd --simulate --ui --out {self.state_dir}` first)") from None

    def farewell(self, stop_reason: str, events: Path | None) -> str | None:
        return (f"relaxd: session ended ({stop_reason}); sound in {self.state_dir / 'audio.wav'}, "
                f"record in {self.state_dir / 'sessions.sqlite'}"
                + (f", events in {events}" if events else ""))

    def audio_output(self) -> AudioOutput:
        from relaxd.outputs.audio import WavFileOutput

        self.state_dir.mkdir(parents=True, exist_ok=True)
        return WavFileOutput(self.state_dir / "audio.wav", self.config.actuators.sample_rate)

    def fault_latch(self) -> tuple[FaultLatch, RunMarker | None]:
        return super().fault_latch() if self.keep_latch else (FaultLatch(None), None)

    def kept_latch(self) -> FaultLatch | None:
        """A simulated chair keeps a latch only with ``keep_latch``."""
        return FaultLatch.in_state_dir(self.state_dir) if self.keep_latch else None

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
        if self._pins is not None:
            self._pins.close()


def hardware_for(config: Config, *, simulate: bool, out: Path | None = None,
                 keep_latch: bool = False) -> ChairHardware:
    """The chair's hardware, or its simulation (files in ``out``)."""
    if simulate:
        return SimulatedHardware(config, out or Path("relaxd-sim"), keep_latch)
    return ChairHardware(config)


def hardware_for_run(options: RunOptions) -> ChairHardware:
    """The hardware a run asks for, with its configuration."""
    return hardware_configured(options.config, simulate=options.simulate, out=options.out,
                               keep_latch=options.keep_latch)


def hardware_configured(config_path: str | Path | None, *, simulate: bool,
                        out: Path | None = None, keep_latch: bool = False) -> ChairHardware:
    """The hardware with its configuration: on the chair the configuration file (required;
    None: ``$RELAXD_CONFIG`` or the installed one); in simulation the defaults unless one is
    named. A bad configuration raises RelaxdError."""
    from relaxd.config import Config, load_config

    if simulate:
        config = load_config(config_path) if config_path else Config()
        return hardware_for(config, simulate=True, out=out, keep_latch=keep_latch)
    return hardware_for(load_config(config_path), simulate=False)


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
