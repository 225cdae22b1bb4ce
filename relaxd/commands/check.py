"""``relaxd check``: is this chair ready? One ``ok``/``FAIL`` line per part, exit 1 on any failure.

Checks: the configuration and its scenario, the camera (opens, gives a frame; WARN when no face
is in view or the chest region below it is out of the picture), the emotion model
(loads, classifies a face), each output pin (claimed and driven), the e-stop's sense line
(readable, released: a broken wire to an NC contact reads pressed), the reset button (not
stuck), the audio output (opens), the state directory (writable, SQLite opens), the daemon's
fault latch (nothing latched from before), the caregiver station (with ``ui.enabled``, while
relaxd runs: the daemon answers on its control socket, else the station's STOP cannot reach the
chair), the SoC temperature (WARN from ``thermal.warn_c``, FAIL from ``thermal.halt_c`` or when
unreadable) and the firmware's throttling flags (WARN when any is set). ``--simulate`` checks the
simulated parts instead: mock GPIO pins, a WAV file output, a synthetic frame source, a
temporary state directory, and temperature files only where the configuration names plain files
(never the laptop's own /sys).

Every check is a small function returning a :class:`Check`; none raises.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sqlite3
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple, TextIO

import numpy as np

from relaxd.config import Config, load_config
from relaxd.core.errors import RelaxdError
from relaxd.daemon.hardware import ChairHardware, hardware_for
from relaxd.safety.estop import open_button
from relaxd.safety.latch import FaultLatch
from relaxd.safety.settings import SafetySettings, ThermalSettings
from relaxd.safety.thermal import read_temp_c, read_throttled, throttle_flags

#: Checks of the actuators' outputs (their polarity is ``actuators.active_high``).
ACTUATOR_CHECKS = ("light red", "light green", "light blue", "vibration")

#: Less free space than this in the state directory fails the check.
MIN_FREE_BYTES = 100 * 1024 * 1024


class Check(NamedTuple):
    """One line of the report."""

    name: str
    ok: bool
    detail: str
    warn: bool = False  # passed, but worth a look: printed WARN, the exit status stays 0


def _message(exc: BaseException) -> str:
    return str(exc).strip() or type(exc).__name__


def attempt(name: str, fn: Callable[[], str]) -> Check:
    """Run ``fn`` (returning the detail of a pass); any exception is a FAIL with its message."""
    try:
        return Check(name, True, fn())
    except Exception as exc:  # noqa: BLE001 - a check reports every failure, never raises
        return Check(name, False, _message(exc))


# Configuration

def check_config(path: str | Path | None) -> tuple[Check, Config]:
    """Load the configuration; on failure the other checks go on with the defaults."""
    try:
        config = load_config(path)
    except Exception as exc:  # noqa: BLE001 - a check reports every failure, never raises
        return Check("config", False, f"{_message(exc)} (other checks use the defaults)"), Config()
    detail = f"{config.path} valid" if config.path else "no config file: using the defaults"
    return Check("config", True, detail), config


def check_scenario(path: Path) -> Check:
    """The scenario file exists and validates."""
    def run() -> str:
        from relaxd.control.scenario import load_scenario

        scenario = load_scenario(path)
        return f"{path} valid ({len(scenario.phases)} phases, {scenario.duration:g} s)"
    return attempt("scenario", run)


# Camera and model

def check_camera(open_source: Callable[[], Any]) -> Check:
    """The source opens and delivers one frame."""
    def run() -> str:
        source = open_source()
        try:
            start = time.monotonic()
            frame = source.read()
            took = time.monotonic() - start
        finally:
            source.close()
        if frame is None:
            raise RelaxdError(f"{source.name}: ended before giving a frame")
        height, width = frame.image.shape[:2]
        return f"{source.name}: {width}x{height} frame in {took:.2f} s"
    return attempt("camera", run)


#: Frames ``camera view`` reads looking for a face before it says none is in view.
VIEW_FRAMES = 15


def check_camera_view(open_source: Callable[[], Any], frames: int = VIEW_FRAMES) -> Check:
    """Where the body signals are read: a face in view with the chest region below it in the
    picture (breathing and movement need it). WARN, not FAIL: nobody may be seated, and the
    face's mood is read without the chest."""
    from relaxd.vision.body.regions import place
    from relaxd.vision.faces import FaceDetector, to_gray

    try:
        source, detector = open_source(), FaceDetector()
    except Exception as exc:  # noqa: BLE001 - the camera check above says what failed
        return Check("camera view", True, f"not checked: {_message(exc)}", warn=True)
    try:
        for _ in range(frames):
            frame = source.read()
            if frame is None or not hasattr(frame, "image"):
                break
            gray = to_gray(frame.image)
            box = detector.track(gray).box
            if box is not None:
                return _view(box, place(box, gray.shape[1], gray.shape[0]).chest is not None)
    except Exception as exc:  # noqa: BLE001 - the camera check above says what failed
        return Check("camera view", True, f"not checked: {_message(exc)}", warn=True)
    finally:
        source.close()
    return Check("camera view", True, "no face in view: seat someone to check that the chest "
                 "is in the picture", warn=True)


def _view(face: Any, chest: bool) -> Check:
    if chest:
        return Check("camera view", True, f"face at {face.x},{face.y} ({face.w}x{face.h}) "
                     "with the chest below it in view")
    return Check("camera view", True, "the chest is out of the camera's view: breathing and "
                 "movement cannot be read (aim the camera lower or seat the child higher)",
                 warn=True)


def sample_face() -> tuple[np.ndarray, str]:
    """A 48x48 gray face and where it came from: the bundled astronaut photo (found and
    cropped like a camera frame), else a drawn one."""
    import cv2

    from relaxd.core.paths import ASTRONAUT_HEAD
    from relaxd.vision.faces import FaceDetector, crop_face, to_gray

    photo = cv2.imread(str(ASTRONAUT_HEAD))
    if photo is not None:
        gray = to_gray(photo)
        boxes = FaceDetector().find_all(gray)   # one still: the whole search at once
        if boxes:
            return crop_face(gray, boxes[0]), "astronaut photo"

    face = np.full((48, 48), 90, np.uint8)
    cv2.ellipse(face, (24, 25), (17, 21), 0, 0, 360, (190,), -1)
    for x in (17, 31):
        cv2.circle(face, (x, 20), 3, (40,), -1)
    cv2.ellipse(face, (24, 34), (8, 4), 0, 0, 180, (60,), 2)
    return face, "drawn face"


def check_model(path: Path, threads: int = 1) -> Check:
    """The model loads and classifies a face into 7 probabilities summing to 1."""
    def run() -> str:
        from relaxd.core.labels import EMOTIONS
        from relaxd.vision.emotion import EmotionClassifier

        classifier = EmotionClassifier(path, threads)
        face, origin = sample_face()
        start = time.monotonic()
        probs = classifier.classify(face)
        took = time.monotonic() - start
        if probs.shape != (len(EMOTIONS),) or not np.isfinite(probs).all() \
                or abs(float(probs.sum()) - 1) > 1e-3:
            raise RelaxdError(f"bad output {np.round(probs, 3).tolist()}", path)
        top = int(np.argmax(probs))
        return (f"{path.name}: {origin} -> {EMOTIONS[top]} {probs[top]:.2f} "
                f"in {took * 1000:.0f} ms")
    return attempt("model", run)


# GPIO

def check_output_pin(name: str, pin: int, factory: Any, active_high: bool = True,
                     pulse: bool = True) -> Check:
    """The pin can be claimed and driven (a 10 % pulse for 50 ms, then off and released);
    without ``pulse`` (an actuator while the chair is latched) only claimed and driven off."""
    def run() -> str:
        from gpiozero import PWMOutputDevice

        device = PWMOutputDevice(pin, active_high=active_high, pin_factory=factory)
        try:
            if not pulse:
                device.value = 0
                return f"GPIO{pin} claimed and held off (latched: not pulsed)"
            device.value = 0.1
            time.sleep(0.05)
            if abs(device.value - 0.1) > 1e-6:
                raise RelaxdError(f"GPIO{pin} reads back {device.value}, not 0.1")
            device.value = 0
        finally:
            device.close()
        return f"GPIO{pin} claimed and driven"
    return attempt(name, run)


def check_estop(settings: SafetySettings, factory: Any,
                rest_buttons: Callable[[], None] | None = None) -> Check:
    """The e-stop's sense line is readable and reads released (a broken wire to a normally
    closed contact reads pressed). ``rest_buttons``: a simulation's hands let go first."""
    def run() -> str:
        contact = f"{settings.estop_contact.upper()} contact"
        button = open_button(settings.estop_pin, active_when_open=settings.estop_contact == "nc",
                             bounce_time=settings.bounce_time, pin_factory=factory)
        try:
            if rest_buttons is not None:
                rest_buttons()
            pressed = button.is_pressed
        finally:
            button.close()
        if pressed:
            raise RelaxdError(
                f"GPIO{settings.estop_pin} ({contact}) reads pressed at start: twist the e-stop "
                "free; if it is released, check the wiring (a broken wire reads pressed)")
        return f"GPIO{settings.estop_pin} ({contact}) readable, released"
    return attempt("e-stop", run)


def check_reset_button(settings: SafetySettings, factory: Any) -> Check:
    """The chair's reset button is readable and not stuck pressed."""
    def run() -> str:
        button = open_button(settings.reset_pin, active_when_open=False,
                             bounce_time=settings.bounce_time, pin_factory=factory)
        try:
            pressed = button.is_pressed
        finally:
            button.close()
        if pressed:
            raise RelaxdError(f"GPIO{settings.reset_pin} reads pressed: the reset button is "
                              "held or stuck, or its wire is shorted to GND")
        return f"GPIO{settings.reset_pin} readable, released"
    return attempt("reset button", run)


def check_latch(state_dir: Path, settings: SafetySettings) -> Check:
    """No e-stop or fault is latched from before (the daemon's latch file in the state dir)."""
    def run() -> str:
        latch = FaultLatch.in_state_dir(state_dir)
        if latch.reason is not None:
            raise RelaxdError(
                f"latched: {latch.reason}; once the child is safe, start relaxd and hold the "
                f"chair's reset button (GPIO{settings.reset_pin}) {settings.hold_to_reset:g} s, "
                "then let go (the chair is then idle; a start is its own act): twisting the "
                "e-stop free never clears anything")
        return "nothing latched"
    return attempt("latch", run)


# Audio and storage

def check_audio(open_output: Callable[[], Any]) -> Check:
    """The output opens and takes a tenth of a second of silence."""
    def run() -> str:
        output = open_output()
        try:
            output.play(None, 0.0)
            output.advance(0.1)
        finally:
            output.close()
        return f"{type(output).__name__} opens"
    return attempt("audio", run)


def check_state_dir(path: Path) -> Check:
    """The folder exists, is writable, has space, and SQLite works in it."""
    def run() -> str:
        if not path.is_dir():
            raise RelaxdError("no such folder (install.sh and systemd's StateDirectory= make it)",
                              path)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".relaxd-check-", suffix=".sqlite") as f:
            db = sqlite3.connect(f.name)
            try:
                db.execute("CREATE TABLE t (x INTEGER)")
                db.execute("INSERT INTO t VALUES (1)")
                db.commit()
            finally:
                db.close()
        free = shutil.disk_usage(path).free
        if free < MIN_FREE_BYTES:
            raise RelaxdError(f"only {free / 1e6:.0f} MB free", path)
        return f"{path} writable, SQLite opens, {free / 1e9:.1f} GB free"
    return attempt("state dir", run)


# Temperature

def check_temperature(settings: ThermalSettings, simulated: bool = False) -> Check:
    """The SoC temperature: readable and below ``warn_c``; WARN from ``warn_c``, FAIL from
    ``halt_c`` (the daemon would stop every output) or when it cannot be read."""
    path = settings.temp_path
    if path is None:
        if simulated:
            return Check("temperature", True, "simulated: no file named (a laptop's own /sys "
                                              "is never read)")
        return Check("temperature", True, "not watched (thermal.temp_path: null)", warn=True)
    try:
        temp = read_temp_c(path)
    except RelaxdError as exc:
        return Check("temperature", False, f"{exc}: the chair's temperature is not watched")
    limits = f"(alert at {settings.warn_c:g} °C, every output off at {settings.halt_c:g} °C)"
    if temp >= settings.halt_c:
        return Check("temperature", False, f"SoC {temp:.1f} °C: too hot, let it cool {limits}")
    warm = temp >= settings.warn_c
    return Check("temperature", True, f"SoC {temp:.1f} °C{': warm' if warm else ''} {limits}",
                 warn=warm)


def check_throttling(settings: ThermalSettings) -> Check:
    """The firmware's throttling flags (under-voltage, frequency capped, throttled, soft
    temperature limit), now and since boot: WARN when any is set or the file cannot be read."""
    path = settings.throttled_path
    if path is None:
        return Check("throttling", True, "not read (thermal.throttled_path: null)")
    try:
        mask = read_throttled(path)
    except RelaxdError as exc:
        return Check("throttling", True, str(exc), warn=True)
    now, since_boot = throttle_flags(mask)
    if not now and not since_boot:
        return Check("throttling", True, f"none now or since boot ({mask:#x})")
    said = ([f"now: {', '.join(now)}"] if now else []) + \
        ([f"since boot: {', '.join(since_boot)}"] if since_boot else [])
    return Check("throttling", True, "; ".join(said) + f" ({mask:#x})", warn=True)


# Running them all

def _real_factory(scratch: Path) -> Any:
    """gpiozero's default pin factory (lgpio on the Pi). lgpio makes its notification FIFO in
    the current folder when imported, so that happens in ``scratch``, writable from anywhere."""
    from gpiozero import Device

    with warnings.catch_warnings(), contextlib.chdir(scratch):
        warnings.simplefilter("ignore")  # fallback notices; the final error says enough
        return Device.ensure_pin_factory()


def _synthetic_source(folder: Path) -> Callable[[], Any]:
    """An image-folder source of 640x480 frames with the sample face in it, the chest's place
    below it in the picture."""
    import cv2

    from relaxd.vision.camera import ImageFolderSource

    frame = np.full((480, 640), 128, np.uint8)
    face, _ = sample_face()
    frame[40:200, 240:400] = cv2.resize(face, (160, 160))  # the chest below it in view
    for i in range(VIEW_FRAMES):  # the face search spreads over frames
        cv2.imwrite(str(folder / f"frame{i:02d}.png"), frame)
    return lambda: ImageFolderSource(folder)


def run_checks(config_path: str | Path | None, simulate: bool) -> Iterator[Check]:
    """Every check in order (see the module's docstring), on the hardware ``simulate`` asks
    for: every real/simulated difference below is the hardware object's."""
    config_check, config = check_config(config_path)
    yield config_check
    yield check_scenario(config.scenario)
    with tempfile.TemporaryDirectory(prefix="relaxd-check-") as tmp:
        scratch = Path(tmp)
        hw = hardware_for(config, simulate=simulate, out=scratch / "state")
        yield from _hardware_checks(config, hw, scratch)


def _hardware_checks(config: Config, hw: ChairHardware, scratch: Path) -> Iterator[Check]:
    kept = hw.kept_latch()
    frames = _synthetic_source(scratch) if hw.simulated else config.camera.open
    yield check_camera(frames)
    yield check_camera_view(frames)
    yield check_model(config.model.path, config.model.threads)
    yield from _pin_checks(config, hw, scratch, latched=kept is not None and kept.latched)
    if hw.simulated:
        hw.state_dir.mkdir()
    yield check_audio(hw.audio_output)
    yield check_state_dir(hw.state_dir)
    if kept is not None:
        yield check_latch(config.state_dir, config.safety)
    yield check_temperature(hw.thermal_settings(), hw.simulated)
    yield check_throttling(hw.thermal_settings())
    yield check_station(config, hw.simulated)
    yield from check_station_certificate(config)


def check_station(config: Config, simulated: bool) -> Check:
    """The caregiver station (relaxd.station.health)."""
    from relaxd.safety.latch import RunMarker
    from relaxd.station.health import station_report

    running = RunMarker.in_state_dir(config.state_dir).owner_alive()
    return Check("station", *station_report(config.ui, simulated, daemon_running=running))


def check_station_certificate(config: Config) -> Iterator[Check]:
    """The tablets' TLS certificate: fingerprint, names, a warning a month before it expires."""
    from relaxd.station.health import certificate_report

    report = certificate_report(config.ui)
    if report is not None:
        yield Check("station certificate", *report)


def _pin_checks(config: Config, hw: ChairHardware, scratch: Path,
                latched: bool = False) -> Iterator[Check]:
    """Each output pin, the e-stop's line and the reset button, on the hardware's pins; no
    actuator is pulsed while the chair is ``latched``."""
    try:
        factory = hw.pin_factory if hw.simulated else _real_factory(scratch)
    except Exception as exc:  # noqa: BLE001 - no GPIO at all (not a Pi, no lgpio)
        yield Check("gpio", False, f"no GPIO pin factory: {_message(exc)}")
        return
    try:
        for name, pin in output_pins(config).items():
            actuator = name in ACTUATOR_CHECKS
            high = config.actuators.active_high if actuator else True
            yield check_output_pin(name, pin, factory, high, pulse=not (latched and actuator))
        yield check_estop(config.safety, factory, hw.rest_buttons)
        yield check_reset_button(config.safety, factory)
    finally:
        factory.close()


def output_pins(config: Config) -> dict[str, int]:
    """Check name -> BCM pin of every output: lights, vibration, alert buzzer and LED."""
    a, alerts = config.actuators, config.alerts
    pins = {"light red": a.red_pin, "light green": a.green_pin, "light blue": a.blue_pin,
            "vibration": a.vibration_pin, "buzzer": alerts.buzzer_pin,
            "alert LED": alerts.led_pin}
    return {name: pin for name, pin in pins.items() if pin is not None}


def report(checks: Iterable[Check], out: TextIO | None = None) -> int:
    """Print each check (to stdout) as it finishes; 0 when all passed, else 1."""
    out = out or sys.stdout
    failed = warned = 0
    for check in checks:
        first, *more = check.detail.splitlines() or [""]
        mark = "FAIL" if not check.ok else "WARN" if check.warn else "ok"
        print(f"{mark:<5} {check.name:<14} {first}", file=out)
        for line in more:  # e.g. one FILE:LINE:COL problem a line
            print(" " * 21 + line, file=out)
        out.flush()
        failed += not check.ok
        warned += check.ok and check.warn
    warnings = f"{warned} warning{'s' if warned != 1 else ''}" if warned else ""
    if failed:
        print((f"{warnings}, " if warned else "")
              + f"{failed} check{'s' if failed != 1 else ''} failed", file=out)
    else:
        print("all checks passed" + (f" ({warnings})" if warned else ""), file=out)
    return 1 if failed else 0


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``relaxd check`` (also accepted before the word ``check``)."""
    parser.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="configuration file (default: $RELAXD_CONFIG or /etc/relaxd/config.yaml)")
    parser.add_argument("--simulate", action="store_true", default=argparse.SUPPRESS,
                        help="check the simulated parts (mock pins, WAV output, synthetic frames)")


def run(args: argparse.Namespace) -> int:
    """``relaxd check``: print the report; exit status 1 when anything failed."""
    return report(run_checks(getattr(args, "config", None), getattr(args, "simulate", False)))
