"""The virtual child's model: colour families, drift times, frame probabilities, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from relaxd.core.errors import RelaxdError
from relaxd.core.labels import MOODS, Mood
from relaxd.core.paths import resource_dir
from relaxd.core.yamlspec import SpecError
from relaxd.sim.child_body import WINDOW_S
from relaxd.sim.virtual_child import Caregiver, ChildModel, Playing, VirtualChild, colour_family, load_child


@pytest.mark.parametrize("rgb, family", [((255, 0, 0), "red"), ((255, 154, 64), "orange"),
                                         ((48, 96, 255), "blue"), ((96, 192, 128), "green"),
                                         ((80, 176, 160), "teal"), ((58, 48, 192), "blue"),
                                         ((200, 200, 210), "white"), ((160, 40, 200), "purple")])
def test_colour_families(rgb, family):
    assert colour_family(rgb) == family


ADA = {"name": "Ada", "resting": "neutral", "face_bias": {"negative": 0.3},
       "likes": {"colour": "blue", "vibration": "wave"}, "dislikes": {"audio": "tone"}, "seed": 3}


def _drift(playing, seconds):
    child = VirtualChild(ChildModel.from_dict(ADA))
    for t in np.arange(0, seconds + 0.01, 0.5):
        child.feel(float(t), playing)
    return child.mood


def test_liked_is_positive_within_a_minute_disliked_negative_within_30_s():
    liked, disliked = Playing(colour="blue"), Playing(colour="blue", audio="tone")
    assert _drift(liked, 25) is Mood.NEUTRAL and _drift(liked, 45) is Mood.POSITIVE
    assert _drift(disliked, 10) is Mood.NEUTRAL and _drift(disliked, 20) is Mood.NEGATIVE
    assert _drift(Playing(colour="red"), 200) is Mood.NEUTRAL


def test_frame_probabilities_bias_and_seeded_swaps():
    model = ChildModel.from_dict(ADA)
    rng = np.random.default_rng(0)
    frames = np.array([model.frame_probs(1, rng) for _ in range(4000)])
    plain = np.array([0.45, 0.7, 0.15]) / 1.3
    swapped = ~np.isclose(frames, plain).all(axis=1)
    assert abs(swapped.mean() - 0.15) < 0.02
    np.testing.assert_allclose(frames.sum(axis=1), 1.0)
    again = np.array([model.frame_probs(1, np.random.default_rng(0)) for _ in range(1)])
    np.testing.assert_allclose(again[0], frames[0])


def test_a_bad_file_says_file_line_col_for_every_problem(tmp_path):
    path = tmp_path / "kid.yaml"
    path.write_text("name: Kid\nface_bias: {negative: 2}\nlikes: {smell: rose, colour: blu}\n"
                    "breathing: {calm: 20, upset: 18}\nflat_afect: true\n"
                    "caregiver: {marks: 1.5}\n")
    with pytest.raises(SpecError) as err:
        load_child(path)
    lines = str(err.value).splitlines()
    assert lines == [
        f"{path}:2:23: 'negative' is 2.0, outside 0..1",
        f"{path}:3:9: unknown key 'smell'",
        f"{path}:4:23: upset 18 must be faster than calm 20",
        f"{path}:5:1: unknown key 'flat_afect' (did you mean 'flat_affect'?)",
        f"{path}:6:20: 'marks' is 1.5, outside 0..1"], lines
    path.write_text("name: Kid\nlikes: {colour: [blue, blu]}\n")
    with pytest.raises(SpecError, match=r":2:9: colour 'blu' is not one of red, orange"):
        load_child(path)
    with pytest.raises(RelaxdError, match="missing required key 'name'"):
        ChildModel.from_dict({"resting": "neutral"})


def test_the_bundled_virtual_child_reads():
    model = load_child(resource_dir("scenarios") / "children" / "ada.yaml")
    assert model.name == "Ada" and ("colour", "blue") in model.likes


def test_with_flat_affect_the_face_reads_neutral_while_the_child_is_upset():
    flat = ChildModel.from_dict({**ADA, "flat_affect": True, "face_bias": {}})
    child = VirtualChild(flat)
    child.x = -1.0
    assert child.mood is Mood.NEGATIVE
    rng = np.random.default_rng(0)
    tops = [int(np.argmax(child.face(rng))) for _ in range(200)]
    assert tops.count(MOODS.index(Mood.NEUTRAL)) / 200 > 0.8
    plain = VirtualChild(ChildModel.from_dict({**ADA, "face_bias": {}}))
    plain.x = -1.0
    tops = [int(np.argmax(plain.face(rng))) for _ in range(200)]
    assert tops.count(MOODS.index(Mood.NEGATIVE)) / 200 > 0.8


def _vitals(model: ChildModel, x: float, tempo: float | None, seconds: float = 60):
    body, v = VirtualChild(model).body(), None
    for t in np.arange(0, seconds + 0.01, 0.5):
        v = body.update(float(t), x, tempo)
        if t < WINDOW_S:
            assert v is None  # the first window is not full yet
    return v


def test_the_body_breathes_fast_and_moves_when_upset_and_follows_the_tempo_when_liking():
    model = ChildModel.from_dict({**ADA, "breathing": {"calm": 20, "upset": 34},
                                  "restless": 0.9})
    calm, upset = _vitals(model, 0.0, 7.0), _vitals(model, -1.0, 7.0)
    liking, unpaced = _vitals(model, 1.0, 7.0), _vitals(model, 1.0, None)
    assert abs(calm.breathing - 20) < 2 and abs(upset.breathing - 34) < 2
    assert abs(liking.breathing - 7) < 2 and abs(unpaced.breathing - 17) < 2
    assert upset.movement > 0.8 and calm.movement < 0.15 and liking.movement < 0.15
    assert upset.pulse is None and upset.event()["quality"]["breathing"] > 0.5


def test_the_caregiver_marks_halts_at_the_files_rate_and_says_what_was_seen():
    marks = Caregiver(0.8, np.random.default_rng([3, 1]))
    seen = [marks.on_halt(upset=i % 2 == 0) for i in range(1000)]
    assert 0.75 < sum(s is not None for s in seen) / 1000 < 0.85
    assert {s for i, s in enumerate(seen) if s and i % 2 == 0} == {"upset"}
    assert {s for i, s in enumerate(seen) if s and i % 2} == {"misread"}
    assert Caregiver(0.0, np.random.default_rng(0)).on_halt(True) is None
