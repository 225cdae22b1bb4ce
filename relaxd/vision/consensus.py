"""Talking and fleeting expressions: frames with a fast-moving mouth count for less, and the mood
the smoother sees is a robust consensus over a short window rather than frame by frame.

Open-mouth speech looks like fear or surprise to a FER2013 model. :func:`mouth_motion` measures
how much the mouth region of the tracked face crop changed since the previous frame, beyond what
the upper face changed (head motion and light changes move both); :func:`frame_weight` turns it
into a weight. :class:`Consensus` keeps the last ``window_s`` seconds of frames and gives each
mood its weighted median over them: an expression held for less than about half the window, or
seen only on moving-mouth frames among still ones, does not move it. A reaction that lasts
longer passes whole (a strong negative is never hidden, only ~``window_s / 2`` later).
"""

from __future__ import annotations

from collections import deque

import numpy as np

#: Mouth change (mean absolute difference, 0..1) at which a frame counts half.
MOTION_HALF = 0.04
WINDOW_S = 1.5


def mouth_motion(previous: np.ndarray | None, face: np.ndarray) -> float:
    """How fast the mouth moves: mean |change| of the crop's mouth region minus that of its
    eye region, 0..1 (0 for the first frame)."""
    if previous is None or previous.shape != face.shape:
        return 0.0
    h, w = face.shape
    diff = np.abs(face.astype(np.int16) - previous.astype(np.int16)) / 255.0
    mouth = diff[int(h * 0.66):int(h * 0.95), int(w * 0.25):int(w * 0.75)].mean()
    eyes = diff[int(h * 0.2):int(h * 0.45), int(w * 0.15):int(w * 0.85)].mean()
    return float(max(0.0, mouth - eyes))


def frame_weight(motion: float) -> float:
    """1 for a still mouth, 0.5 at :data:`MOTION_HALF`, towards 0 for fast speech."""
    return 1.0 / (1.0 + (motion / MOTION_HALF) ** 2)


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, cum[-1] / 2)])


class Consensus:
    """``update(t, probs3, weight)`` -> the window's per-mood weighted median, renormalised."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self._frames: deque[tuple[float, np.ndarray, float]] = deque()

    def reset(self) -> None:
        self._frames.clear()

    def update(self, t: float, probs3: np.ndarray, weight: float = 1.0) -> np.ndarray:
        self._frames.append((t, np.asarray(probs3, dtype=np.float64), max(weight, 1e-3)))
        while self._frames and self._frames[0][0] < t - self.window_s:
            self._frames.popleft()
        probs = np.array([f[1] for f in self._frames])
        weights = np.array([f[2] for f in self._frames])
        out = np.array([weighted_median(probs[:, m], weights) for m in range(probs.shape[1])])
        total = out.sum()
        return out / total if total > 0 else np.asarray(probs3, dtype=np.float64)


class TalkFilter:
    """One tracked face's frames: the previous crop, the mouth motion, the consensus."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.consensus = Consensus(window_s)
        self._previous: np.ndarray | None = None
        self.last_weight = 1.0

    def update(self, t: float, face: np.ndarray | None, probs3: np.ndarray) -> np.ndarray:
        """``face``: this frame's crop as detected (None: no crop, weight 1)."""
        motion = 0.0 if face is None else mouth_motion(self._previous, face)
        self._previous = face
        self.last_weight = frame_weight(motion)
        return self.consensus.update(t, probs3, self.last_weight)

    def lost(self) -> None:
        """No face: the next face starts afresh."""
        self._previous = None
        self.consensus.reset()
