"""The run's options, parsed once by the command line: nothing below it sees its parser."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from relaxd.core.errors import RelaxdError

#: Options that only mean something in simulation, and why (refused before anything opens).
SIMULATION_ONLY = {
    "keep_latch": "on the chair the latch is always kept",
    "ui": "on the chair: ui.enabled in the configuration",
    "trace": "it records a simulated chair's outputs",
    "virtual_child": "a virtual child stands in for a real one",
    "bridge": "on the chair: relaxd-bridge.service",
    "bridge_password_file": "on the chair: password_file in the clinic: section",
}


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """``relaxd [--simulate] ...``: where frames or moods come from, which scenario and child,
    and what simulation keeps. Paths are as given (relative to the working folder)."""

    config: Path | None = None  # the configuration file (None: $RELAXD_CONFIG or the installed)
    simulate: bool = False  # mock pins and a WAV file instead of the chair's hardware
    video: Path | None = None
    images: Path | None = None
    camera: int | None = None  # a webcam's number
    mood_script: Path | None = None  # moods and the caregiver's hands on a timeline
    virtual_child: Path | None = None  # a virtual child's file (simulation)
    scenario: str | None = None  # a file, an installed scenario's stem or name, or "auto"
    child: str | None = None
    scenarios: Path | None = None  # where "auto" chooses from
    speed: float | None = None  # scripts and files: times real time (inf: as fast as possible)
    events: Path | None = None  # JSON Lines of every event
    trace: Path | None = None  # CSV of every output as driven, each tick
    out: Path = Path("relaxd-sim")  # simulation: the WAV file, records, latch
    keep_latch: bool = False
    ui: bool = False
    ui_port: int = 0
    bridge: str | None = None  # the clinic's broker URL: a bridge beside the simulated chair
    chair_id: str | None = None  # the simulated chair's id on the broker
    bridge_password_file: Path | None = None  # its broker password
    quiet: bool = False
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.simulate:
            return
        for name, why in SIMULATION_ONLY.items():
            if getattr(self, name):
                raise RelaxdError(f"--{name.replace('_', '-')} needs --simulate ({why})")

    @property
    def asks_for_child(self) -> bool:
        """Whether the run concerns a child's profile: a child named, real or virtual, or a
        choice that needs one (``--scenario auto``, ``--scenarios``)."""
        return bool(self.child or self.virtual_child or self.scenario == "auto" or self.scenarios)

    @classmethod
    def of(cls, values: Any) -> RunOptions:
        """From any object with these attributes (the command line's parsed arguments): each
        value converted once to its field's type."""
        given = {f.name: getattr(values, f.name, None) for f in fields(cls)}
        paths = {"config", "video", "images", "mood_script", "virtual_child", "scenarios",
                 "events", "trace", "out", "bridge_password_file"}
        kept = {name: Path(v) if name in paths else v
                for name, v in given.items() if v is not None}
        return cls(**kept)  # type: ignore[arg-type]  # each value is its field's type
