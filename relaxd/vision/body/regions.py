"""Where the body signals are read, placed from the face box: the chest and shoulders below
the face (breathing, movement), the face's skin (pulse), and the head itself (the reference the
chest's own motion is measured against).

A region is a :class:`relaxd.vision.faces.Box` clipped to the frame; the chest counts as out of
view when less than :data:`MIN_CHEST_SHARE` of it lies inside the picture.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from relaxd.vision.faces import Box

#: The chest region, in face heights below the face's top and face widths either side of it.
CHEST_TOP, CHEST_BOTTOM, CHEST_SIDE = 1.15, 2.3, 0.6

#: The share of the chest region that must lie inside the frame for breathing to be read.
MIN_CHEST_SHARE = 0.5


@dataclass(frozen=True)
class Regions:
    """The regions of one face: ``chest`` None when out of the camera's view."""

    head: Box
    skin: Box
    chest: Box | None


def clip(box: Box, width: int, height: int) -> Box | None:
    """``box`` cut to a ``width`` x ``height`` frame; None when nothing of it is left."""
    x0, y0 = max(0, box.x), max(0, box.y)
    x1, y1 = min(width, box.x + box.w), min(height, box.y + box.h)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    return Box(x0, y0, x1 - x0, y1 - y0)


@lru_cache(maxsize=16)
def place(face: Box, width: int, height: int) -> Regions:
    """The regions for ``face`` in a ``width`` x ``height`` frame (remembered: a still child's
    face box repeats from frame to frame)."""
    skin = Box(face.x + face.w // 4, face.y + face.h // 8, face.w // 2, face.h * 5 // 8)
    side = int(face.w * CHEST_SIDE)
    wanted = Box(face.x - side, face.y + int(face.h * CHEST_TOP), face.w + 2 * side,
                 int(face.h * (CHEST_BOTTOM - CHEST_TOP)))
    chest = clip(wanted, width, height)
    if chest is not None and chest.w * chest.h < MIN_CHEST_SHARE * wanted.w * wanted.h:
        chest = None
    head = clip(face, width, height) or face
    return Regions(head, clip(skin, width, height) or head, chest)
