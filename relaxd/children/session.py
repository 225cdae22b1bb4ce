"""A session for one child: the profile, its checks, the scenario chosen and why,
the child's caps and baseline. :func:`child_session` is the one hook ``relaxd.daemon.build``
calls; it returns None when no child is named (the chair as before).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from relaxd.children.recommend import SCORED_EVENTS, SessionScore, recommend, score_session
from relaxd.children.store import Child, ChildStore, check_before_session, check_id, steady_light
from relaxd.control.body import age_from_birth_year, calm_breathing, learn_calm_breathing
from relaxd.control.controller import Caps
from relaxd.control.library import bundled_folders, installed_scenarios, load_named
from relaxd.control.scenario import Scenario, load_scenario
from relaxd.core.errors import RelaxdError
from relaxd.core.options import RunOptions
from relaxd.vision.baseline import Baseline

log = logging.getLogger(__name__)


@dataclass
class ChildSession:
    """What the session needs to know about its child; ``link`` and ``finish`` record it."""

    store: ChildStore
    child: Child
    scenario: Scenario
    why: str
    caps: Caps
    baseline: Baseline
    virtual: Any = None  # a relaxd.sim.virtual_child.ChildModel with --virtual-child
    linked: list[int] = field(default_factory=list)

    @property
    def age(self) -> float | None:
        """The child's expected age today, from the birth year (None: not recorded)."""
        return age_from_birth_year(self.child.birth_year, date.today().year)

    @property
    def calm_breathing(self) -> float:
        """The child's calm breathing rate: learned, else the age default (adult without)."""
        return calm_breathing(self.child.learned.get("calm_breathing"), self.age)

    @property
    def start_info(self) -> dict[str, Any]:
        """For the ``session`` start event: the id only (never the name), why, and what the
        chair compares the child's face and breathing with."""
        return {"child": self.child.id, "why": self.why,
                "baseline": round(self.baseline.learned, 3),
                "calm_breathing": round(self.calm_breathing, 1)}

    def link(self, session_id: int) -> None:
        self.store.link(session_id, self.child.id, self.scenario.name, self.why)
        self.linked.append(session_id)

    def finish(self) -> None:
        """After the session: remember the child's baseline correction and calm breathing,
        each of which moves only after calm sessions."""
        scores = self._scores()
        learned = self.child.learned
        learned["baseline"] = round(self.baseline.updated(
            bool(scores) and all(sc.calm_evidence for sc in scores)), 3)
        rate = learned.get("calm_breathing")
        for sc in scores:
            rate = learn_calm_breathing(rate, self.age, sc.calm_breathing, sc.calm_evidence)
        if rate is not None:
            learned["calm_breathing"] = rate
        self.store.save(self.child)
        self.store.close()

    def _scores(self) -> list[SessionScore]:
        """This run's sessions, scored, oldest first."""
        mine = [s for s in self.store.sessions(self.child.id, SCORED_EVENTS)
                if s["id"] in self.linked]
        return [score_session(s["events"]) for s in mine]


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-")[:32] or "virtual"


def _profile(store: ChildStore, child_id: str, add_unknown: bool, virtual: Any,
             retention_days: int) -> Child:
    child = store.find(check_id(child_id))
    if child is not None:
        return child
    if not add_unknown:
        raise RelaxdError(f"no child '{child_id}' on this chair (relaxd children add)")
    child = store.add(child_id, virtual.name if virtual else None, retention_days=retention_days,
                      birth_year=virtual.birth_year if virtual else None)
    store.consent(child, "simulation (virtual child)", "camera")
    return store.get(child_id)


def choose_scenario(store: ChildStore, child: Child, wanted: str | None,
                    folder: Path, default: Path) -> tuple[Scenario, str]:
    """``auto``: the recommendation; a name of an installed scenario or a file: that one."""
    dirs = _folders(folder, default)
    if wanted and wanted != "auto":
        if Path(wanted).is_file():
            return load_scenario(wanted), "chosen by the caregiver"
        return load_named(wanted, dirs), "chosen by the caregiver"
    if wanted is None:
        return load_scenario(default), "the chair's default scenario"
    return recommend_for(store, child, installed_scenarios(dirs))


def _folders(folder: Path, default: Path) -> list[Path]:
    """Where a child's scenario is looked up: the folder asked for, then the chair's."""
    return list(dict.fromkeys([Path(folder), *bundled_folders(default)]))


def recommend_for(store: ChildStore, child: Child,
                  installed: list[Scenario]) -> tuple[Scenario, str]:
    """The recommendation among ``installed`` (those that fit the child's limits), and why."""
    installed = [s for s in installed if fits(child, s)]
    if not installed:
        raise RelaxdError(f"child {child.id}: no installed scenario fits their limits")
    mine = [score_session(s["events"], s["scenario"])
            for s in store.sessions(child.id, SCORED_EVENTS)]
    everyone = [score_session(s["events"], s["scenario"]) for c in store.all() if c.id != child.id
                for s in store.sessions(c.id, SCORED_EVENTS)]
    rng = np.random.default_rng(len(mine) * 7919 + sum(map(ord, child.id)))
    lim = child.limits
    choice = recommend([s.name for s in installed], mine, everyone, rng,
                       baseline_now=float(child.learned.get("baseline", 0.0)),
                       pinned=lim.pinned, forbidden=lim.forbidden, allowed_again=lim.allowed_again)
    by_name = {s.name: s for s in installed}
    if choice.scenario not in by_name:
        raise RelaxdError(f"child {child.id}: pinned scenario '{choice.scenario}' is not installed")
    return by_name[choice.scenario], choice.why


def fits(child: Child, scenario: Scenario) -> bool:
    limit = child.limits.session_min
    return limit is None or scenario.duration + scenario.rules.fade_out <= limit * 60


def child_session(options: RunOptions, config: Any, camera: bool, virtual: Any = None, *,
                  state_dir: Path, add_unknown: bool = False) -> ChildSession | None:
    """The child named by ``--child`` (or the ``virtual`` child of a ``--virtual-child`` file,
    a :class:`relaxd.sim.virtual_child.ChildModel`), checked, from the store in ``state_dir``;
    None if none. ``add_unknown`` (the hardware's choice: simulation) makes a profile for a
    child the store does not have, else one is refused."""
    child_id = options.child or (virtual and _slug(virtual.name))
    if not child_id:
        if options.scenario in ("auto",) or options.scenarios:
            raise RelaxdError("--scenario auto and --scenarios need --child ID")
        return None
    store = ChildStore(state_dir)
    child = _profile(store, child_id, add_unknown, virtual, config.children.retention_days)
    folder = options.scenarios if options.scenarios else \
        Path(config.scenario).parent
    scenario, why = choose_scenario(store, child, options.scenario, folder, config.scenario)
    check_before_session(store, child, scenario, camera)
    if child.limits.no_pulse:
        scenario = steady_light(scenario)
    caps = child.limits.caps(config.actuators.caps())
    log.info("child %s: %s", child.id, why)  # the id only: logs never carry a name
    return ChildSession(store, child, scenario, why, caps,
                        Baseline(float(child.learned.get("baseline", 0.0))), virtual)
