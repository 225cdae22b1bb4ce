"""Mood smoothing: averaging over time, hysteresis, dwell and the no-face timeout, at their edges."""

from __future__ import annotations

import math

import pytest

from relaxd.core.labels import Mood
from relaxd.vision.mood import MoodReading, MoodSmoother
from relaxd.vision.settings import MoodSettings

NEG, NEU, POS = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)

# Binary-exact numbers so that edges are hit exactly.
EXACT = MoodSettings(window_s=1.0, max_gap_s=0.5, enter_threshold=0.5, switch_margin=0.25,
                     min_dwell_s=2.0, no_face_timeout_s=2.0)
# No dwell, and a window so short that the average is the latest sample (1 - exp(-500) == 1.0).
INSTANT = MoodSettings(window_s=0.001, max_gap_s=0.5, enter_threshold=0.5, switch_margin=0.25,
                       min_dwell_s=0.0, no_face_timeout_s=2.0)


def test_defaults_are_valid_and_safe():
    s = MoodSettings()
    assert s.no_face_timeout_s > 0 and s.min_dwell_s > 0 and 0 < s.enter_threshold <= 1


@pytest.mark.parametrize("field, value", [("window_s", 0), ("max_gap_s", -1), ("no_face_timeout_s", 0),
                                          ("min_dwell_s", -0.1), ("enter_threshold", 1.5),
                                          ("switch_margin", -0.1), ("window_s", math.nan)])
def test_settings_outside_their_limits_are_refused(field, value):
    settings = MoodSettings(**{field: value})
    assert [key for key, _ in settings.check()] == [field]
    with pytest.raises(ValueError, match=f"'{field}' is "):
        MoodSmoother(settings)


def test_settings_load_from_yaml_with_positions(tmp_path):
    from relaxd.core.yamlspec import SpecError, load
    path = tmp_path / "mood.yaml"
    path.write_text("window_s: 1.5\nmin_dwell_s: 4\n")
    assert load(MoodSettings, path) == MoodSettings(window_s=1.5, min_dwell_s=4.0)
    path.write_text("window_s: 1.5\nswitch_margin: 2\n")
    with pytest.raises(SpecError, match=r"mood.yaml:2:16: 'switch_margin' is 2.0, outside 0..1"):
        load(MoodSettings, path)


def test_before_any_face_neutral_with_zero_confidence():
    r = MoodSmoother(EXACT).update(0.0, None)
    assert r == MoodReading(Mood.NEUTRAL, 0.0, None, False, False, 0.0)


def test_first_face_is_taken_at_once_and_normalised():
    r = MoodSmoother(EXACT).update(5.0, (0.0, 1.0, 3.0))
    assert r.mood is Mood.POSITIVE and r.changed and r.face
    assert r.probs == (0.0, 0.25, 0.75) and r.confidence == 0.75 and r.since == 5.0


def test_bad_probabilities_are_rejected():
    m = MoodSmoother(EXACT)
    for bad in [(0.5, 0.5), (-0.1, 0.6, 0.5), (0.0, 0.0, 0.0), (math.nan, 0.5, 0.5)]:
        with pytest.raises(ValueError):
            m.update(0.0, bad)


def test_exponential_average_is_frame_rate_independent():
    """A step held for T seconds moves the average by 1 - exp(-T/window) at any sampling."""
    finals = []
    for times in ([1.0], [0.1 * k for k in range(1, 11)], [0.05, 0.3, 0.31, 0.7, 1.0]):
        m = MoodSmoother(MoodSettings(window_s=1.0, max_gap_s=1.0, min_dwell_s=100))
        m.update(0.0, NEU)
        for t in times:
            r = m.update(t, POS)
        finals.append(r.probs[2])
    for p in finals:
        assert p == pytest.approx(1 - math.exp(-1.0), abs=1e-12)


def test_time_going_backwards_does_not_move_the_average():
    m = MoodSmoother(EXACT)
    m.update(1.0, NEU)
    assert m.update(0.5, POS).probs == (0.0, 1.0, 0.0)


def test_switch_needs_enter_threshold_exactly():
    m = MoodSmoother(INSTANT)
    m.update(0.0, NEU)
    # positive leads neutral by 0.25 (margin met) but is below 0.5: stays
    r = m.update(0.5, (0.375, 0.1875, 0.4375))
    assert r.mood is Mood.NEUTRAL and not r.changed
    # exactly 0.5, leading neutral by exactly 0.25: switches
    r = m.update(1.0, (0.25, 0.25, 0.5))
    assert r.mood is Mood.POSITIVE and r.changed and r.since == 1.0


def test_switch_needs_margin_exactly():
    m = MoodSmoother(INSTANT)
    m.update(0.0, NEU)
    r = m.update(0.5, (0.0, 0.375 + 2 ** -10, 0.625 - 2 ** -10))  # lead just below 0.25
    assert r.mood is Mood.NEUTRAL
    r = m.update(1.0, (0.0, 0.375, 0.625))  # lead exactly 0.25
    assert r.mood is Mood.POSITIVE


def test_hysteresis_holds_the_current_mood_in_the_band():
    m = MoodSmoother(INSTANT)
    m.update(0.0, POS)
    # neutral becomes the favourite but does not lead by the margin: positive is kept
    for k in range(1, 20):
        r = m.update(k * 0.1, (0.0, 0.5625, 0.4375) if k % 2 else (0.0, 0.59375, 0.40625))
        assert r.mood is Mood.POSITIVE and r.confidence in (0.4375, 0.40625)


def test_minimum_dwell_exactly():
    m = MoodSmoother(EXACT)                      # min_dwell_s = 2
    m.update(0.0, NEG)                           # NEGATIVE since 0
    r = m.update(1.0, POS)
    r = m.update(1.5, POS)
    assert r.probs[2] >= 0.5 and r.probs[2] - r.probs[0] >= 0.25   # thresholds met ...
    assert r.mood is Mood.NEGATIVE                                  # ... dwell not yet
    r = m.update(2.0, POS)
    assert r.mood is Mood.POSITIVE and r.since == 2.0 and r.changed
    for t in (2.5, 3.0, 3.5):
        assert m.update(t, NEG).mood is Mood.POSITIVE
    r = m.update(4.0, NEG)
    assert r.mood is Mood.NEGATIVE and r.since == 4.0


def test_no_face_keeps_last_mood_until_timeout_then_no_face():
    m = MoodSmoother(EXACT)                      # timeout 2 s
    m.update(0.0, POS)
    m.update(1.0, POS)
    r = m.update(2.0, None)
    assert r.mood is Mood.POSITIVE and not r.face and r.confidence == 0.5   # fading linearly
    r = m.update(3.0, None)                      # exactly the timeout: kept
    assert r.mood is Mood.POSITIVE and r.confidence == 0.0 and not r.changed
    r = m.update(math.nextafter(3.0, 4.0), None)  # just after: gone
    assert r.mood is Mood.NO_FACE and r.changed and r.confidence == 0.0 and r.probs is None
    assert r.since == math.nextafter(3.0, 4.0)
    r = m.update(10.0, None)
    assert r.mood is Mood.NO_FACE and not r.changed


def test_no_face_from_the_start_counts_from_the_first_update():
    m = MoodSmoother(EXACT)
    assert m.update(1.0, None).mood is Mood.NEUTRAL
    assert m.update(3.0, None).mood is Mood.NEUTRAL
    assert m.update(3.25, None).mood is Mood.NO_FACE


def test_face_back_after_no_face_restarts_at_once():
    m = MoodSmoother(EXACT)
    m.update(0.0, POS)
    m.update(5.0, None)
    r = m.update(5.5, NEG)
    assert r.mood is Mood.NEGATIVE and r.changed and r.probs == NEG and r.since == 5.5


def test_short_dropouts_do_not_reset_the_average():
    m = MoodSmoother(EXACT)
    m.update(0.0, POS)
    m.update(1.0, None)
    r = m.update(1.5, NEU)  # 1.5 s since the last face, capped to max_gap_s = 0.5
    assert r.mood is Mood.POSITIVE
    assert r.probs[1] == pytest.approx(1 - math.exp(-0.5), abs=1e-12)


def test_a_face_present_without_a_mood_sample_holds_the_mood_and_the_presence():
    sm = MoodSmoother(MoodSettings(no_face_timeout_s=1.0, min_dwell_s=0))
    first = sm.update(0.0, [0.8, 0.1, 0.1])
    assert first.mood is Mood.NEGATIVE
    held = [sm.present(t) for t in (0.5, 2.0, 4.0)]   # turned away for 4 s: no timeout
    assert all(r.mood is Mood.NEGATIVE and r.face and r.confidence == first.confidence
               for r in held)
    assert sm.update(4.5, None).mood is Mood.NEGATIVE   # 0.5 s after the last presence
    assert sm.update(6.0, None).mood is Mood.NO_FACE
    back = sm.present(6.5)                               # present again, still no sample
    assert back.mood is Mood.NEUTRAL and back.confidence == 0.0 and back.changed
    assert sm.update(7.0, [0.1, 0.1, 0.8]).mood is Mood.POSITIVE   # restarted: taken at once
