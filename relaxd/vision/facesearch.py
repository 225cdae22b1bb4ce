"""The searches :class:`relaxd.vision.faces.FaceDetector` is built from: cascades, the spread full search,
and optical flow.

- :class:`Cascades`: OpenCV's frontal (``default``, ``alt2``) and profile Haar cascades, the
  profile one also run mirrored for heads turned the other way, searched in any region at any
  scale; :data:`REFIND`, the order they look for a followed face in, and what each run costs.
- :func:`plan_sweep`: the full-frame search cut into parts of about equal work (bands of face sizes,
  the small sizes, which cost most, also cut into overlapping strips), one part run per frame.
- :func:`flow_box`: where a face box moved between two frames (sparse Lucas-Kanade flow, checked
  forwards and backwards), to follow a face that no cascade finds this frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import cv2
import cv2.data  # the cascades' folder: a module of its own to the type checker
import numpy as np

#: The cascades shipped in opencv-python-headless 4.x.
CASCADE_DIR = cv2.data.haarcascades
FRONTAL = ("frontalface_default", "frontalface_alt2")
PROFILE = "profileface"

#: The frontal cascade's own window: nothing smaller can be found.
HAAR_WINDOW = 24

#: The cascades that look for a followed face around where it should be, in the order tried:
#: (cascade, mirrored, how it was found).
REFIND = ((FRONTAL[0], False, "frontal"), (FRONTAL[1], False, "alt2"),
          (PROFILE, False, "profile"), (PROFILE, True, "profile"))

#: What one run of each :data:`REFIND` cascade costs in a region scaled around a face (the face
#: ``roi_face_px`` wide), in full-frame searches of the reference scene (``relaxd bench``'s
#: built-in frames, 640x480, one face on clutter; medians measured on this scene, rounded up):
#: ``close``, the followed face's own place and size (0.15 face widths around, 0.8-1.25 times
#: its size); ``wide``, 0.25 face widths around a guess, 0.7-1.4 times its size. A region on a
#: face costs several times what its windows count (:func:`region_work`): a face's windows pass
#: most of a cascade's stages, and each run has its own set-up.
RUN_COST = {"close": (0.04, 0.032, 0.017, 0.013), "wide": (0.062, 0.047, 0.046, 0.034)}

#: What following a face's corners by optical flow (:func:`flow_box`) costs, in the same unit.
FLOW_COST = 0.02


@dataclass(frozen=True)
class Box:
    """A face rectangle in pixel coordinates of the full frame."""

    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return self.w * self.h

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.w / 2, self.y + self.h / 2

    def iou(self, other: Box) -> float:
        """Intersection over union with ``other`` (0 when apart)."""
        iw = min(self.x + self.w, other.x + other.w) - max(self.x, other.x)
        ih = min(self.y + self.h, other.y + other.h) - max(self.y, other.y)
        if iw <= 0 or ih <= 0:
            return 0.0
        inter = iw * ih
        return inter / (self.area + other.area - inter)

    def inside_fraction(self, width: int, height: int) -> float:
        """The fraction of the box's area inside a ``width`` x ``height`` frame."""
        iw = min(self.x + self.w, width) - max(self.x, 0)
        ih = min(self.y + self.h, height) - max(self.y, 0)
        return max(iw, 0) * max(ih, 0) / max(self.area, 1)


@cache
def load_cascade(name: str) -> cv2.CascadeClassifier:
    """The cascade ``haarcascade_<name>.xml`` (or a path to one), loaded once per process."""
    path = name if name.endswith(".xml") else f"{CASCADE_DIR}haarcascade_{name}.xml"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise ValueError(f"cannot load Haar cascade {path}")
    return cascade


@dataclass(frozen=True)
class Region:
    """Where and how to search: gray[y:y+h, x:x+w] scaled by ``scale``, faces ``min_face`` to
    ``max_face`` pixels wide once scaled (``max_face`` None: up to the region's size)."""

    x: int
    y: int
    w: int
    h: int
    scale: float
    min_face: int
    max_face: int | None = None


@dataclass(frozen=True)
class Cascades:
    """Haar cascades with shared search parameters (``scale_factor``, ``min_neighbors``)."""

    frontal: str = FRONTAL[0]
    scale_factor: float = 1.1
    min_neighbors: int = 5

    def search(self, gray: np.ndarray, region: Region, name: str | None = None,
               mirrored: bool = False, raw: bool = False,
               scaled_before: ScaledRegions | None = None) -> list[Box]:
        """Faces found by cascade ``name`` (default: the frontal one) in ``region``, largest
        first, in full-frame pixels; ``mirrored``: search the region flipped left to right;
        ``raw``: every window the cascade accepts, not grouped into faces; ``scaled_before``:
        this frame's regions already scaled, where the same pixels are found again."""
        scaled = scaled_region(gray, region, scaled_before)
        if scaled is None:
            return []
        image, x0, y0 = scaled
        sh, sw = image.shape
        if mirrored:
            image = cv2.flip(image, 1)
        top = min(sw, sh) if region.max_face is None else region.max_face
        found = load_cascade(name or self.frontal).detectMultiScale(
            image, scaleFactor=self.scale_factor, minNeighbors=0 if raw else self.min_neighbors,
            minSize=(region.min_face, region.min_face), maxSize=(top, top))
        s = region.scale
        boxes = [Box(x0 + int(round((sw - x - bw if mirrored else x) / s)),
                     y0 + int(round(y / s)), int(round(bw / s)), int(round(bh / s)))
                 for x, y, bw, bh in found]
        return sorted(boxes, key=lambda b: b.area, reverse=True)


#: One frame's scaled regions by their place and size (see :func:`scaled_region`).
ScaledRegions = dict[tuple[int, int, int, int, int, int], np.ndarray]


def scaled_region(gray: np.ndarray, region: Region, scaled_before: ScaledRegions | None = None
                  ) -> tuple[np.ndarray, int, int] | None:
    """The region's pixels inside the frame at its scale, with their top-left corner in the frame;
    None when too small to hold its smallest face. ``scaled_before`` (one frame's): the same
    pixels scaled once, kept for the next search of them."""
    height, width = gray.shape[:2]
    x0, y0 = max(0, region.x), max(0, region.y)
    x1, y1 = min(width, region.x + region.w), min(height, region.y + region.h)
    sw, sh = int(round((x1 - x0) * region.scale)), int(round((y1 - y0) * region.scale))
    if min(sw, sh) < region.min_face:
        return None
    image = gray[y0:y1, x0:x1]
    if region.scale != 1.0:
        key = (x0, y0, x1, y1, sw, sh)
        made = None if scaled_before is None else scaled_before.get(key)
        image = made if made is not None else cv2.resize(image, (sw, sh),
                                                         interpolation=cv2.INTER_AREA)
        if scaled_before is not None:
            scaled_before[key] = image
    return image, x0, y0


def region_around(box: Box, margin: float, face_px: int, lo: float = 0.7,
                  hi: float = 1.4) -> Region:
    """The region around ``box`` widened by ``margin`` face widths on each side, scaled so the
    face is ``face_px`` wide, for faces ``lo`` to ``hi`` times its size."""
    m = int(round(margin * box.w))
    scale = min(1.0, face_px / max(box.w, 1))
    return Region(box.x - m, box.y - m, box.w + 2 * m, box.h + 2 * m, scale,
                  max(HAAR_WINDOW, int(round(lo * box.w * scale))),
                  int(round(hi * box.w * scale)))


def _level_sizes(min_face: int, max_face: int, factor: float) -> list[int]:
    """The window sizes detectMultiScale tries between ``min_face`` and ``max_face``."""
    sizes: list[int] = []
    k = 0
    while (size := int(round(HAAR_WINDOW * factor ** k))) <= max_face:
        if size >= min_face and (not sizes or size != sizes[-1]):
            sizes.append(size)
        k += 1
    return sizes


def _level_cost(size: int, sw: float, sh: float) -> float:
    """Relative work of one pyramid level: its windows, stepped 2 pixels below 2x, then 1
    (measured per window: about 8x as much work once the step is 1)."""
    f = size / HAAR_WINDOW
    windows = max(0.0, sw / f - HAAR_WINDOW) * max(0.0, sh / f - HAAR_WINDOW)
    return windows * (0.25 if f <= 2 else 2.0)


def region_work(region: Region, width: int, height: int, factor: float = 1.1) -> float:
    """The relative work of searching ``region`` of a ``width`` x ``height`` frame (the unit of
    :func:`plan_sweep`), counted from its size, not timed."""
    w = (min(width, region.x + region.w) - max(0, region.x)) * region.scale
    h = (min(height, region.y + region.h) - max(0, region.y)) * region.scale
    top = int(min(w, h)) if region.max_face is None else region.max_face
    return sum(_level_cost(s, w, h) for s in _level_sizes(region.min_face, top, factor))


@dataclass(frozen=True)
class SweepPart:
    """One part of the spread full search: ``region``, its ``share`` of the whole search's work,
    and the band of window positions it owns: raw windows whose left edge lies in
    ``[keep_x0, keep_x1)`` (full-frame pixels), so that no window is counted twice."""

    region: Region
    share: float
    keep_x0: int
    keep_x1: int


def plan_sweep(width: int, height: int, scale: float, min_face: int, parts: int,
               factor: float = 1.1) -> list[SweepPart]:
    """The full-frame search of a ``width`` x ``height`` frame at ``scale`` cut into about
    ``parts`` parts of similar work that together scan exactly the full search's windows.

    Consecutive face sizes are grouped into bands ending nearest each multiple of one part's
    work; a band worth more
    (the smallest faces cost most) is cut into strips, each owning the windows that start in it.
    Largest faces first: they are the cheapest to search, and the child's. The parts return raw
    windows; grouping all of a sweep's windows (:func:`group`) gives what one search would.
    """
    sw, sh = int(round(width * scale)), int(round(height * scale))
    sizes = _level_sizes(min_face, min(sw, sh), factor)
    if not sizes:
        return []
    costs = [_level_cost(s, sw, sh) for s in sizes]
    total, target = sum(costs), sum(costs) / max(parts, 1)
    bands, start, done = [], 0, 0.0
    for i, cost in enumerate(costs):
        done += cost
        if done >= (round((done - cost) / target) + 1) * target - cost / 2 or i == len(sizes) - 1:
            bands.append((sizes[start], sizes[i], sum(costs[start:i + 1])))
            start = i + 1
    plan = []
    for small, big, cost in reversed(bands):
        strips = max(1, min(round(cost / target), (sw - big) // max(big, 1)))
        edges = [int(round(k * (sw - big) / strips)) for k in range(strips)] + [sw]
        for x0, x1 in zip(edges, edges[1:]):
            right = sw if x1 == sw else x1 + big
            plan.append(SweepPart(
                Region(int(x0 / scale), 0, int(math.ceil((right - x0) / scale)), height, scale,
                       small, big),
                cost / strips / total, int(round(x0 / scale)),
                width if x1 == sw else int(round(x1 / scale))))
    return plan


def group(boxes: list[Box], min_neighbors: int) -> list[Box]:
    """Raw cascade windows merged as detectMultiScale merges them (at least ``min_neighbors``
    overlapping windows per face), largest first."""
    if not boxes:
        return []
    rects = [[b.x, b.y, b.w, b.h] for b in boxes]
    grouped, _ = cv2.groupRectangles(rects, min_neighbors, 0.2)
    found = [Box(*(int(v) for v in r)) for r in grouped]
    return sorted(found, key=lambda b: b.area, reverse=True)


def flow_box(prev: np.ndarray, gray: np.ndarray, box: Box, origin: tuple[int, int],
             face_px: int = 64, min_points: int = 8, max_error: float = 0.5) -> Box | None:
    """Where ``box`` (full-frame pixels) moved from ``prev`` (a patch of the previous frame with
    its top-left at ``origin``) to ``gray`` (the whole new frame); None when too few corners
    inside the box can be followed forwards and back to within ``max_error`` pixels. Both patches
    are scaled so that the face is ``face_px`` wide."""
    ox, oy = origin
    ph, pw = prev.shape
    new = gray[oy:oy + ph, ox:ox + pw]
    if new.shape != prev.shape:
        return None
    k = min(1.0, face_px / max(box.w, 1))
    if k < 1.0:
        size = (max(1, int(round(pw * k))), max(1, int(round(ph * k))))
        prev = cv2.resize(prev, size, interpolation=cv2.INTER_AREA)
        new = cv2.resize(new, size, interpolation=cv2.INTER_AREA)
    mask = np.zeros_like(prev)
    x0, y0 = (box.x - ox) * k, (box.y - oy) * k
    inset = box.w * k / 8
    cv2.rectangle(mask, (int(x0 + inset), int(y0 + inset)),
                  (int(x0 + box.w * k - inset), int(y0 + box.h * k - inset)), 255, -1)
    pts = cv2.goodFeaturesToTrack(prev, 30, 0.01, 3, mask=mask)
    if pts is None or len(pts) < min_points:
        return None
    # No guess for the points' new places (None): cv2's stubs wrongly demand an array there.
    fwd, st1, _ = cv2.calcOpticalFlowPyrLK(  # type: ignore[call-overload]
        prev, new, pts, None, winSize=(11, 11), maxLevel=2)
    back, st2, _ = cv2.calcOpticalFlowPyrLK(  # type: ignore[call-overload]
        new, prev, fwd, None, winSize=(11, 11), maxLevel=2)
    error = np.linalg.norm(back - pts, axis=2)[:, 0]
    good = (st1[:, 0] == 1) & (st2[:, 0] == 1) & (error < max_error)
    if good.sum() < min_points:
        return None
    a, b = pts[good, 0], fwd[good, 0]
    dx, dy = np.median(b - a, axis=0) / k
    da, db = a - a.mean(axis=0), b - b.mean(axis=0)
    ratio = np.linalg.norm(db, axis=1) / np.maximum(np.linalg.norm(da, axis=1), 1e-6)
    s = float(np.clip(np.median(ratio), 0.8, 1.25))
    cx, cy = box.center
    w = int(round(box.w * s))
    return Box(int(round(cx + dx - w / 2)), int(round(cy + dy - w / 2)), w, w)
