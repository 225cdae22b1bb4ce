"""The child's calm breathing rate (age default, learned from calm sessions only, bounded), how
closely a session followed the chair's tempo, and tempo-following as calm evidence for the
recommender but never for the face's baseline."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaxd.children.profile import breathing_line
from relaxd.children.recommend import SessionScore, score_session
from relaxd.children.session import ChildSession
from relaxd.children.store import ChildStore
from relaxd.control.body import (
    ADULT_CALM,
    CALM_BOUNDS,
    CALM_STEP,
    age_from_birth_year,
    calm_breathing,
    default_calm_breathing,
    following,
    learn_calm_breathing,
    own_calm_rate,
)
from relaxd.control.controller import Caps
from relaxd.control.scenario import load_scenario
from relaxd.core.paths import resource_dir
from relaxd.records.events import EventLog
from relaxd.records.sessions import SessionSink
from relaxd.vision.baseline import Baseline


def test_the_age_default_comes_from_the_birth_year_and_an_adult_rate_without_one():
    assert age_from_birth_year(2018, 2026) == 7.5
    assert calm_breathing(None, age_from_birth_year(2018, 2026)) == 21  # Fleming: 6-8 years
    assert calm_breathing(None, age_from_birth_year(2022, 2026)) == 25  # 3-4 years
    assert calm_breathing(None, None) == ADULT_CALM
    assert calm_breathing(None, 30.0) == ADULT_CALM


def test_a_learned_rate_moves_a_step_a_calm_session_within_the_bounds():
    age = 7.5  # default 21
    assert learn_calm_breathing(None, age, 18.0, calm=True) == 21 - CALM_STEP
    assert learn_calm_breathing(None, age, 20.5, calm=True) == 20.5
    assert learn_calm_breathing(19.0, age, 30.0, calm=True) == 19 + CALM_STEP
    low = CALM_BOUNDS[0] * 21
    rate = None
    for _ in range(10):  # a child read breathing slowly session after session
        rate = learn_calm_breathing(rate, age, 8.0, calm=True)
    assert rate == pytest.approx(low, abs=0.1)  # rounded to 0.1
    assert calm_breathing(5.0, age) == pytest.approx(low)  # a stored value out of bounds


def test_only_calm_sessions_with_a_rate_teach():
    assert learn_calm_breathing(20.0, 7.5, 26.0, calm=False) == 20.0
    assert learn_calm_breathing(None, 7.5, 26.0, calm=False) is None
    assert learn_calm_breathing(20.0, 7.5, None, calm=True) == 20.0


def test_following_is_the_share_of_reports_within_two_a_minute_of_the_tempo():
    assert following([(7.5, 7.0), (8.9, 7.0), (12.0, 7.0), (None, 7.0), (9.0, None)]) \
        == pytest.approx(2 / 3)
    assert following([(7.0, 7.0), (7.0, 7.0)]) is None  # too few reports


def test_breathing_at_the_tempo_is_not_the_childs_own_calm_rate():
    at_tempo = [(7.0, 7.0, True)] * 10
    own = [(18.0, 7.0, True), (19.0, 7.0, True), (20.0, None, True), (30.0, 7.0, False)]
    assert own_calm_rate(at_tempo) is None
    assert own_calm_rate(at_tempo + own) == 19.0


def _events(breathing: float, tempo: float, mood: str = "neutral",
            halt: bool = False) -> list[dict]:
    out = [{"t": 0.0, "type": "session", "state": "start", "scenario": "A"},
           {"t": 0.0, "type": "mood", "mood": mood}]
    out += [{"t": 30.0 + 5 * i, "type": "vitals", "breathing": breathing, "pulse": None,
             "movement": 0.1, "quality": {"breathing": 0.8, "pulse": 0.0}, "tempo": tempo}
            for i in range(20)]
    if halt:
        out.append({"t": 140.0, "type": "decision", "action": "halt"})
    return out + [{"t": 150.0, "type": "mood", "mood": mood}]


def test_a_session_score_records_tempo_following_and_its_own_calm_rate():
    along = score_session(_events(7.2, 7.0))
    assert along.following == 1.0 and along.calm_breathing is None
    own = score_session(_events(19.0, 7.0))
    assert own.following == 0.0 and own.calm_breathing == 19.0
    assert score_session(_events(19.0, 7.0, mood="negative")).calm_breathing is None


def test_following_is_calm_evidence_for_the_recommender_but_calm_comes_first():
    calm, along = SessionScore("A", calm=1.0), SessionScore("A", calm=1.0, following=1.0)
    assert along.reward > calm.reward
    upset = SessionScore("B", calm=0.5, following=1.0)
    assert upset.reward < SessionScore("A", calm=0.9).reward
    # never calm evidence for the face's baseline on its own
    assert not score_session(_events(7.0, 7.0, halt=True)).calm_evidence


def _session(store: ChildStore, tmp_path: Path, breathing: float,
             halt: bool = False) -> ChildSession:
    child = store.get("ada")
    scenario = load_scenario(resource_dir("scenarios") / "gentle-start.yaml")
    cs = ChildSession(store, child, scenario, "test", Caps(), Baseline(0.0))
    sink = SessionSink(tmp_path, scenario="A", source="test")
    cs.link(sink.session_id)
    log = EventLog([sink])
    for e in _events(breathing, 7.0, halt=halt):
        log.emit(e["t"], e["type"], **{k: v for k, v in e.items() if k not in ("t", "type")})
    log.close()
    return cs


def test_a_childs_calm_rate_is_learned_from_calm_sessions_and_shown(tmp_path):
    store = ChildStore(tmp_path)
    store.add("ada", "Ada", birth_year=2018)
    assert "21 / min (the age default for born 2018; not learned yet)" in breathing_line(
        store.get("ada"), 2026)
    _session(store, tmp_path, 17.0).finish()  # calm, own rate 17: 21 -> 19
    store = ChildStore(tmp_path)
    assert store.get("ada").learned["calm_breathing"] == 21 - CALM_STEP
    _session(store, tmp_path, 30.0, halt=True).finish()  # a halt teaches nothing
    store = ChildStore(tmp_path)
    child = store.get("ada")
    assert child.learned["calm_breathing"] == 21 - CALM_STEP
    line = breathing_line(child, 2026)
    assert "19.0 / min (learned from calm sessions, kept within 16..27 around the age default " \
        "for born 2018, 21)" in line, line
    store.close()


def test_the_adult_default_is_said_when_no_birth_year_is_recorded(tmp_path):
    store = ChildStore(tmp_path)
    child = store.add("bo")
    assert "14 / min (the adult default: birth year not recorded; not learned yet)" \
        in breathing_line(child)
    assert default_calm_breathing(None) == 14
    store.close()
