"""The chair's temperature watch: the Pi's SoC temperature and the firmware's throttling flags.

Two levels above normal (deploy/SAFETY.md, H7)::

    ok -> warm      at warn_c or more, for confirm_s   -> the caregiver is alerted
    -> too hot      at halt_c or more, for confirm_s   -> every output 0, idle until a
                                                          deliberate start once it has cooled
    too hot -> cooled  at halt_c - cool_by_c or less, for confirm_s (a Start may play again)
    warm -> ok         below warn_c - cool_by_c, for confirm_s

Three parts, so that the rules can be tested over time without files or threads:

- :class:`ThermalJudge` is pure: fed :class:`Sample` s (time, temperature, throttling bitmask),
  it returns what changed (:class:`Change`).
- :class:`SysfsReader` reads the two sysfs files the settings name (either may be None): the
  temperature in millidegrees (``/sys/class/thermal/thermal_zone0/temp``) and the firmware's
  throttling bitmask in hex (``/sys/devices/platform/soc/soc:firmware/get_throttled``). A missing
  or unreadable file is logged once, never raised. ``vcgencmd`` is never run.
- :class:`ThermalWatch` joins them for the daemon. On the chair its samples come from a
  :class:`BackgroundSampler` thread, once every ``read_every_s``, so a slow firmware read never
  holds the loop; tests use a :class:`PolledSampler` on their own clock.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Callable, Literal, Protocol, TypeVar

from relaxd.core.errors import RelaxdError
from relaxd.safety.settings import ThermalSettings

log = logging.getLogger(__name__)


#: The firmware's throttling bits; the same bit + 16 means "has occurred since boot".
THROTTLE_BITS = {0: "under-voltage", 1: "arm frequency capped", 2: "throttled",
                 3: "soft temperature limit"}
SINCE_BOOT_SHIFT = 16

#: A throttling flag is reported again, while it stays or when it comes back, after this long.
THROTTLE_REPEAT_S = 600.0

#: No new reading for this many read periods: the temperature is reported unknown.
STALE_PERIODS = 10


class Level(str, Enum):
    OK = "ok"
    WARM = "warm"
    TOO_HOT = "too hot"


@dataclass(frozen=True)
class Sample:
    """One reading: when (seconds, any monotonic clock), the temperature (None: unknown) and
    the throttling bitmask (None: not read)."""

    at: float
    temp_c: float | None
    throttled: int | None = None


ChangeKind = Literal["warm", "too hot", "cooled", "normal", "throttled", "unknown"]


@dataclass(frozen=True)
class Change:
    """What a sample changed, in words for the caregiver and the log."""

    kind: ChangeKind
    detail: str


def throttle_flags(mask: int | None) -> tuple[list[str], list[str]]:
    """The flags set now, and those that have occurred since boot, by name."""
    if mask is None:
        return [], []
    now = [name for bit, name in THROTTLE_BITS.items() if mask >> bit & 1]
    since = [name for bit, name in THROTTLE_BITS.items() if mask >> (bit + SINCE_BOOT_SHIFT) & 1]
    return now, since


# --- the rules (pure) ---------------------------------------------------------------------------


class ThermalJudge:
    """The levels over time, with hysteresis in temperature (``cool_by_c``) and in time
    (``confirm_s``), so a reading near a threshold never makes the level flap."""

    def __init__(self, settings: ThermalSettings) -> None:
        self.settings = settings
        self.level = Level.OK
        self.temp_c: float | None = None
        self.throttled: int | None = None
        self._last_at: float | None = None
        self._pending: tuple[Level, float] | None = None  # the level readings point to, since
        self._throttle_told: dict[str, float] = {}  # flag -> when it was last reported

    @property
    def too_hot_reason(self) -> str | None:
        """Why no session may start now (None: it may)."""
        if self.level is not Level.TOO_HOT:
            return None
        return (f"the chair is too hot ({_degrees(self.temp_c)}); a Start plays again once it "
                f"has cooled to {self.settings.halt_c - self.settings.cool_by_c:g} °C")

    def update(self, sample: Sample) -> list[Change]:
        """Take one sample (an older or repeated one changes nothing); what changed."""
        if self._last_at is not None and sample.at <= self._last_at:
            return []
        self._last_at = sample.at
        changes = self._throttle_changes(sample)
        self.temp_c = sample.temp_c
        if sample.temp_c is not None:
            changes.extend(self._level_changes(sample.at, sample.temp_c))
        return changes

    def _target(self, temp_c: float) -> Level:
        """The level this temperature calls for, from the current one (hysteresis)."""
        s = self.settings
        if temp_c >= s.halt_c:
            return Level.TOO_HOT
        if self.level is Level.TOO_HOT and temp_c > s.halt_c - s.cool_by_c:
            return Level.TOO_HOT
        if temp_c >= s.warn_c:
            return Level.WARM
        if self.level is not Level.OK and temp_c >= s.warn_c - s.cool_by_c:
            return Level.WARM
        return Level.OK

    def _level_changes(self, t: float, temp_c: float) -> list[Change]:
        target = self._target(temp_c)
        if target is self.level:
            self._pending = None
            return []
        if self._pending is None or self._pending[0] is not target:
            self._pending = (target, t)
        if t - self._pending[1] < self.settings.confirm_s:
            return []
        old, self.level, self._pending = self.level, target, None
        return [self._change(old, target, temp_c)]

    def _change(self, old: Level, new: Level, temp_c: float) -> Change:
        s, now = self.settings, _degrees(temp_c)
        if new is Level.TOO_HOT:
            return Change("too hot", f"SoC {now}, at or above {s.halt_c:g} °C")
        if old is Level.TOO_HOT:
            return Change("cooled", f"the chair has cooled to {now}: a caregiver's Start may "
                                    "play again")
        if new is Level.WARM:
            return Change("warm", f"the chair is warm: SoC {now} (alert at {s.warn_c:g} °C); "
                                  f"every output stops at {s.halt_c:g} °C")
        return Change("normal", f"the chair's temperature is normal again: SoC {now}")

    def _throttle_changes(self, sample: Sample) -> list[Change]:
        """The flags set now that were not reported in the last THROTTLE_REPEAT_S seconds (a
        flag that stays set is reported again that often)."""
        self.throttled = sample.throttled
        now, _ = throttle_flags(sample.throttled)
        fresh = [flag for flag in now
                 if sample.at - self._throttle_told.get(flag, -THROTTLE_REPEAT_S) >= THROTTLE_REPEAT_S]
        for flag in fresh:
            self._throttle_told[flag] = sample.at
        if not fresh:
            return []
        return [Change("throttled", "the Pi's firmware reports " + ", ".join(fresh)
                       + f" (get_throttled {sample.throttled:#x}); it may slow down")]

    def status(self) -> dict[str, object]:
        """For the station: the temperature, the level and the throttling flags set now."""
        temp = None if self.temp_c is None else round(self.temp_c, 1)
        return {"temp_c": temp, "level": self.level.value,
                "throttled": throttle_flags(self.throttled)[0]}


def _degrees(temp_c: float | None) -> str:
    return "temperature unknown" if temp_c is None else f"{temp_c:.1f} °C"


# --- reading sysfs ------------------------------------------------------------------------------


def read_temp_c(path: Path) -> float:
    """The temperature in ``path`` (millidegrees Celsius, as the kernel writes it), in °C;
    RelaxdError with the reason when it cannot be read or is not a whole number."""
    text = _read(path)
    try:
        return int(text) / 1000.0
    except ValueError:
        raise RelaxdError(f"not a temperature in millidegrees: {text[:20]!r}", path) from None


def read_throttled(path: Path) -> int:
    """The firmware's throttling bitmask in ``path`` (hex, with or without 0x)."""
    text = _read(path)
    try:
        return int(text, 16)
    except ValueError:
        raise RelaxdError(f"not a hex bitmask: {text[:20]!r}", path) from None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise RelaxdError(f"cannot read: {getattr(exc, 'strerror', None) or exc}", path) from None


#: What one of the files reads as (a temperature, a bitmask).
Value = TypeVar("Value")


@dataclass
class SysfsReader:
    """Reads the settings' files into a :class:`Sample`; each file's trouble is logged once
    (again only after it was read well), never raised."""

    temp_path: Path | None
    throttled_path: Path | None
    now: Callable[[], float] = time.monotonic
    _troubled: set[Path] = field(default_factory=set, init=False)

    def read(self) -> Sample:
        at = self.now()
        return Sample(at, self._quietly(read_temp_c, self.temp_path),
                      self._quietly(read_throttled, self.throttled_path))

    def _quietly(self, read: Callable[[Path], Value], path: Path | None) -> Value | None:
        if path is None:
            return None
        try:
            value = read(path)
        except RelaxdError as exc:
            if path not in self._troubled:
                self._troubled.add(path)
                log.warning("thermal watch: %s", exc)
            return None
        self._troubled.discard(path)
        return value


# --- sampling -----------------------------------------------------------------------------------


class Sampler(Protocol):
    def latest(self) -> Sample | None:
        """The newest sample (None before the first)."""

    def close(self) -> None: ...


class PolledSampler:
    """Reads in the caller's thread, at most once every ``every`` seconds of ``reader.now``."""

    def __init__(self, reader: SysfsReader, every: float) -> None:
        self.reader, self.every = reader, every
        self._sample: Sample | None = None

    def latest(self) -> Sample | None:
        if self._sample is None or self.reader.now() - self._sample.at >= self.every:
            self._sample = self.reader.read()
        return self._sample

    def close(self) -> None:
        pass


class BackgroundSampler:
    """Reads on a thread of its own every ``every`` seconds; :meth:`latest` never waits."""

    def __init__(self, reader: SysfsReader, every: float) -> None:
        self.reader, self.every = reader, every
        self._sample: Sample | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="relaxd-thermal", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                self._sample = self.reader.read()
            except Exception:  # noqa: BLE001 - the watch goes on; a stale sample is reported
                log.exception("thermal watch: reading failed")
            if self._stop.wait(self.every):
                return

    def latest(self) -> Sample | None:
        return self._sample

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


# --- the daemon's watch -------------------------------------------------------------------------


class ThermalWatch:
    """The judge fed from a sampler, for :class:`relaxd.daemon.loop.Session` (its ``thermal``):
    :meth:`poll` once a tick. A sample older than ``STALE_PERIODS`` read periods (a read that
    hangs) counts as an unknown temperature, reported once."""

    def __init__(self, settings: ThermalSettings, sampler: Sampler,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.judge = ThermalJudge(settings)
        self.sampler, self.now = sampler, now
        self._stale = False

    @classmethod
    def open(cls, settings: ThermalSettings) -> ThermalWatch | None:
        """The chair's watch: the settings' files, read on a thread of its own (None when
        neither file is named)."""
        if settings.temp_path is None and settings.throttled_path is None:
            return None
        reader = SysfsReader(settings.temp_path, settings.throttled_path)
        return cls(settings, BackgroundSampler(reader, settings.read_every_s))

    @property
    def too_hot_reason(self) -> str | None:
        return self.judge.too_hot_reason

    def poll(self) -> list[Change]:
        """What changed since the last call (nothing when no new sample has come)."""
        sample = self.sampler.latest()
        if sample is None:
            return []
        now = self.now()
        if now - sample.at > STALE_PERIODS * self.judge.settings.read_every_s:
            return self._went_stale(now)
        self._stale = False
        return self.judge.update(sample)

    def _went_stale(self, now: float) -> list[Change]:
        if self._stale:
            return []
        self._stale = True
        self.judge.update(Sample(now, None, None))
        return [Change("unknown", "no temperature reading for "
                                  f"{STALE_PERIODS * self.judge.settings.read_every_s:g} s: the "
                                  "chair's temperature is not watched")]

    def status(self) -> dict[str, object]:
        return self.judge.status()

    def close(self) -> None:
        self.sampler.close()


def without_sysfs(settings: ThermalSettings) -> ThermalSettings:
    """The settings for a simulated chair: a path under /sys (the laptop's own sensors) is not
    read; plain files named in the configuration are, to rehearse a hot chair."""
    def kept(path: Path | None) -> Path | None:
        return None if path is None or Path(path).is_relative_to("/sys") else path
    return replace(settings, temp_path=kept(settings.temp_path),
                   throttled_path=kept(settings.throttled_path))
