"""The child at the station's Start (and ``relaxd start``): the profiles a caregiver chooses
from, the scenario for the child (``auto``: the recommendation, with its reason in plain words),
and the same checks as ``relaxd --child`` (:func:`relaxd.children.session.child_session`): guardian
consent for the camera or for manual mode, the child's longest session and minutes a day, and
their limits as the controller's caps (no pulsing light for a photosensitive child).

Called by :class:`relaxd.daemon.link.ControlLink` on the control socket's thread, never on the
loop's (loading every child's sessions for a recommendation takes a while): problems raise
:class:`relaxd.core.errors.RelaxdError` with a one-line reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relaxd.children.session import ChildSession, recommend_for
from relaxd.children.store import CHILDREN_DB, Child, ChildStore, check_before_session, check_id, steady_light
from relaxd.control.controller import Caps
from relaxd.control.library import installed_scenarios, load_named
from relaxd.control.scenario import Scenario
from relaxd.vision.baseline import Baseline

AUTO = "auto"


def _consent(child: Child) -> str | None:
    """``camera`` (camera or manual sessions), ``manual`` (manual mode only), or None."""
    if not child.consent_by:
        return None
    return "camera" if child.consent_scope == "camera" else "manual"


def child_listing(state_dir: Path) -> list[dict[str, Any]]:
    """The chair's children for the Start screen: id, name (the station is on the chair; logs
    and alerts carry only the id), consent (camera | manual | None) and its line."""
    if not (Path(state_dir) / CHILDREN_DB).exists():
        return []
    store = ChildStore(state_dir)
    try:
        return [{"id": c.id, "name": c.name, "consent": _consent(c),
                 "consent_line": c.consent_line()} for c in store.all()]
    finally:
        store.close()


def choose(store: ChildStore, child: Child, wanted: str,
           dirs: list[Path]) -> tuple[Scenario, str]:
    """The scenario for this session and why: ``auto`` the recommendation among the installed
    scenarios in ``dirs``, else the named one (:mod:`relaxd.control.library`)."""
    if wanted == AUTO:
        return recommend_for(store, child, installed_scenarios(dirs))
    return load_named(wanted, dirs), "chosen by the caregiver"


def recommendation(state_dir: Path, child_id: str, dirs: list[Path]) -> dict[str, Any]:
    """What ``auto`` would play for the child now, and why (the Start screen shows it)."""
    store = ChildStore(state_dir)
    try:
        scenario, why = choose(store, store.get(check_id(child_id)), AUTO, dirs)
    finally:
        store.close()
    return {"child": child_id, "scenario": scenario.name, "why": why}


def prepare(state_dir: Path, child_id: str, wanted: str, dirs: list[Path],
            installation: Caps, camera: bool) -> ChildSession:
    """The checked session for this child: refused (RelaxdError, one line) without consent
    for the camera (or for manual mode), when the scenario is longer than their longest
    session or does not fit in today's minutes. The caller finishes it (it holds the store)."""
    store = ChildStore(state_dir)
    try:
        child = store.get(check_id(child_id))
        scenario, why = choose(store, child, wanted or AUTO, dirs)
        check_before_session(store, child, scenario, camera)
    except Exception:
        store.close()
        raise
    if child.limits.no_pulse:
        scenario = steady_light(scenario)
    return ChildSession(store, child, scenario, why, child.limits.caps(installation),
                        Baseline(float(child.learned.get("baseline", 0.0))))
