"""Restlessness 0..1 from how much the body moves on its own from frame to frame.

The body region (chest and shoulders) and the head are shrunk to a quarter of their size
(averaging away most of the sensor's noise). The head's shift since the previous frame (its row
and column profiles matched as the breathing meter matches them,
:mod:`relaxd.vision.body.profiles`) is what the chair's vibration, or a shaken camera, moves
everything by: the previous body image is moved by it before the two are compared, so only the
body's own change counts. The mean absolute difference, less its own mean (the chair's light brightening or
dimming the whole region is no movement), per second and smoothed over :data:`SMOOTH_S`, above
the still picture's noise (:data:`FLOOR`), maps to 0..1: ``1 - exp(-(change - FLOOR) / SCALE)``.
A calm, breathing child stays low; fidgeting or standing up reads clearly higher.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from relaxd.vision.body.profiles import Profiles, Reference
from relaxd.vision.faces import Box

#: Time constant of the smoothing, seconds.
SMOOTH_S = 2.0
#: Change per second (grey levels) that a still picture's noise gives; read as no movement.
FLOOR = 6.0
#: Change per second above the floor that reads as a restlessness of 1 - 1/e.
SCALE = 40.0


def shrink(gray: np.ndarray, box: Box) -> np.ndarray:
    """``box`` of ``gray`` at a quarter of its size, as float32."""
    crop = gray[box.y:box.y + box.h, box.x:box.x + box.w]
    return cv2.resize(crop, (max(2, box.w // 4), max(2, box.h // 4)),
                      interpolation=cv2.INTER_AREA).astype(np.float32)


class MovementMeter:
    """Feed :meth:`update` each frame; :attr:`index` is the current restlessness 0..1."""

    def __init__(self) -> None:
        self._previous: tuple[np.ndarray, Reference, Reference, Box, Box] | None = None
        self._t = 0.0
        self._change = 0.0
        self.index = 0.0

    def update(self, t: float, frame: Profiles, body: Box, head: Box) -> float:
        """Take the frame at ``t`` with the body in ``body`` and the head in ``head``; the
        restlessness now."""
        columns, rows = frame.columns(head), frame.rows(head)
        now = (shrink(frame.gray, body), Reference(columns), Reference(rows), body, head)
        dt, before = t - self._t, self._previous
        if before is not None and before[3:] == now[3:] and dt > 0:
            dx, dy = before[1].shift(columns) / 4, before[2].shift(rows) / 4
            change = _own_change(before[0], now[0], dx, dy) / dt
            k = 1.0 - math.exp(-dt / SMOOTH_S)
            self._change += k * (change - self._change)
            self.index = 1.0 - math.exp(-max(0.0, self._change - FLOOR) / SCALE)
        self._previous, self._t = now, t
        return self.index

    def reset(self) -> None:
        """Forget the previous frame and the smoothed change (a new child, or a long gap)."""
        self._previous, self._change, self.index = None, 0.0, 0.0


def _own_change(before: np.ndarray, now: np.ndarray, dx: float, dy: float) -> float:
    """The mean absolute change from ``before`` (moved by ``dx``, ``dy``) to ``now``, less its
    mean, the edges left out."""
    moved = cv2.warpAffine(before, np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32),
                           (now.shape[1], now.shape[0]), borderMode=cv2.BORDER_REPLICATE)
    diff = cv2.subtract(now, moved)[1:-1, 1:-1]
    level = cv2.mean(diff)[0]
    return float(cv2.mean(np.abs(diff - level))[0])
