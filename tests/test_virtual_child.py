"""The virtual child's model: colour families, drift times, frame probabilities, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from relaxd.core.errors import RelaxdError
from relaxd.core.labels import Mood
from relaxd.sim.virtual_child import ChildModel, Playing, VirtualChild, colour_family


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


def test_bad_file_is_one_line():
    with pytest.raises(RelaxdError, match="face_bias"):
        ChildModel.from_dict({"name": "x", "face_bias": {"negative": 2}})
    with pytest.raises(RelaxdError, match="unknown aspect"):
        ChildModel.from_dict({"name": "x", "likes": {"smell": "rose"}})
