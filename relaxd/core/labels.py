"""The emotion classes of FER2013 and the one mapping from emotions to moods."""

from __future__ import annotations

from enum import Enum

import numpy as np

#: FER2013's seven classes, in the order of the model's outputs (alphabetical,
#: as in the Kaggle folder layout).
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


class Mood(str, Enum):
    """What the controller reacts to."""

    NEGATIVE = "negative"
    NEUTRAL = "neutral"
    POSITIVE = "positive"
    NO_FACE = "no_face"


#: The moods a face can show, in the order of :func:`mood_probs`'s output.
MOODS: tuple[Mood, ...] = (Mood.NEGATIVE, Mood.NEUTRAL, Mood.POSITIVE)

#: Emotion -> mood. The only place this mapping is written down.
MOOD_OF: dict[str, Mood] = {
    "angry": Mood.NEGATIVE,
    "disgust": Mood.NEGATIVE,
    "fear": Mood.NEGATIVE,
    "sad": Mood.NEGATIVE,
    "neutral": Mood.NEUTRAL,
    "happy": Mood.POSITIVE,
    "surprise": Mood.POSITIVE,
}

#: MOOD_INDEX[i] is the index in MOODS of EMOTIONS[i]'s mood.
MOOD_INDEX: np.ndarray = np.array([MOODS.index(MOOD_OF[e]) for e in EMOTIONS])


def mood_probs(probs7: np.ndarray) -> np.ndarray:
    """Collapse 7 emotion probabilities (``(..., 7)``) to 3 mood probabilities (``(..., 3)``)."""
    probs7 = np.asarray(probs7, dtype=np.float64)
    out = np.zeros(probs7.shape[:-1] + (len(MOODS),))
    for i, m in enumerate(MOOD_INDEX):
        out[..., m] += probs7[..., i]
    return out
