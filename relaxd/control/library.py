"""The scenario library: the one place that finds an installed scenario.

Every caller (the command line, ``--child``, ``relaxd start``, the station, the recommender, a
therapist's pin, forbid and allow-again) looks a scenario up here, by its file's stem or by its
``name`` (case-insensitive), through the folders in order (uploads first, then the configured
folder, then the bundled scenarios): an earlier folder wins. An unknown name is refused at once,
with the installed scenarios listed by file stem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import yaml

from relaxd.control.scenario import Scenario, load_scenario
from relaxd.core.errors import RelaxdError
from relaxd.core.paths import default_scenario, resource_dir


class UnknownScenario(RelaxdError):
    """No installed scenario by that name; the message lists the installed ones (one line)."""


def bundled_folders(configured: Path | None = None) -> list[Path]:
    """The folders the chair searches without a station: the configured scenario's folder
    (if any), then the bundled scenarios."""
    folders = [Path(configured).parent] if configured else []
    return folders + [resource_dir("scenarios")]


def scenario_files(dirs: Iterable[Path]) -> dict[str, Path]:
    """Every installed scenario by its file's stem; an earlier folder wins."""
    found: dict[str, Path] = {}
    for folder in dirs:
        for path in sorted(Path(folder).glob("*.yaml")) if Path(folder).is_dir() else ():
            found.setdefault(path.stem, path)
    return found


def scenario_key(name: str) -> str:
    """What a lookup compares: a file's stem, a file name or a scenario's ``name``, without
    ``.yaml`` and case (two scenarios with the same key answer to the same name)."""
    return name.strip().removesuffix(".yaml").casefold()


def find_scenario(name: str, dirs: Iterable[Path]) -> Path:
    """The installed scenario file whose stem or ``name`` is ``name`` (case-insensitive)."""
    files = scenario_files(dirs)
    wanted = scenario_key(name)
    for stem, path in files.items():
        if scenario_key(stem) == wanted:
            return path
    for path in files.values():
        if scenario_key(_title(path)) == wanted:
            return path
    raise UnknownScenario(f"no scenario {name!r}; installed: "
                          + (", ".join(sorted(files)) or "none"))


def load_named(name: str, dirs: Iterable[Path]) -> Scenario:
    """:func:`find_scenario`, loaded and checked."""
    return load_scenario(find_scenario(name, dirs))


def installed_scenarios(dirs: Iterable[Path]) -> list[Scenario]:
    """Every installed scenario, loaded, the chair's default first, then by file name (the
    recommender's random draws follow this order)."""
    default = default_scenario().name
    paths = sorted(scenario_files(dirs).values(), key=lambda p: (p.name != default, p.name))
    if not paths:
        raise RelaxdError("no scenarios (*.yaml) installed")
    return [load_scenario(path) for path in paths]


def _title(path: Path) -> str:
    """A scenario file's ``name`` (empty when the file cannot be read as one)."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return ""
    return str(data.get("name", "")) if isinstance(data, dict) else ""
