"""Talking and fleeting expressions: mouth motion weights and the windowed consensus."""

from __future__ import annotations

import numpy as np

from relaxd.vision.consensus import Consensus, TalkFilter, frame_weight, mouth_motion

NEU, NEG = np.array([0.2, 0.7, 0.1]), np.array([0.85, 0.1, 0.05])


def test_a_fleeting_negative_does_not_pass_a_sustained_one_does():
    c = Consensus(1.5)
    outs = [c.update(i / 10, NEG if 10 <= i < 14 else NEU) for i in range(30)]
    assert all(np.argmax(o) == 1 for o in outs)
    c = Consensus(1.5)
    outs = [c.update(i / 10, NEG if i >= 10 else NEU) for i in range(30)]
    assert np.argmax(outs[-1]) == 0 and outs[-1][0] >= 0.8  # whole, not weakened


def test_moving_mouth_weighs_less_than_still_face():
    rng = np.random.default_rng(0)
    face = rng.integers(60, 200, (48, 48), dtype=np.uint8)
    talking = face.copy()
    talking[34:44, 16:32] = 20
    assert mouth_motion(None, face) == 0.0 and mouth_motion(face, face) == 0.0
    assert frame_weight(mouth_motion(face, talking)) < 0.2
    shifted = np.roll(face, 2, axis=1)  # the whole face moved: not speech
    assert mouth_motion(face, shifted) < 0.02


def test_talk_filter_outvotes_talking_frames_with_still_ones():
    rng = np.random.default_rng(1)
    face = rng.integers(60, 200, (48, 48), dtype=np.uint8)
    open_ = face.copy()
    open_[34:44, 16:32] = 20
    f = TalkFilter(1.5)
    for i in range(15):  # still, calm face, then talking frames that read negative
        talking = i >= 8 and i % 2 == 0
        out = f.update(i / 10, open_ if talking else face, NEG if talking else NEU)
    assert np.argmax(out) == 1
