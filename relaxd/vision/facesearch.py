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
#: built-in frames, 640x480, one face on clutter; medians measured there by
#: ``tools/search_costs.py``, rounded up): ``close``, the followed face's own place and size
#: (:meth:`relaxd.vision.faces.FaceDetector.close_region`); ``wide``, around a guess
#: (:meth:`~relaxd.vision.faces.FaceDetector.wide_region`). A region on a face costs several
#: times what its windows count (:func:`region_work`): a face's windows pass most of a
#: cascade's stages, and each run has its own set-up.
RUN_COST = {"close": (0.03, 0.028, 0.014, 0.011), "wide": (0.052, 0.042, 0.039, 0.03)}

#: What following a face's corners by optical flow (:func:`flow_box`) costs, in the same unit.
FLOW_COST = 0.028


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
    ``max_face`` pixels wide once scaled (``max_face`` None: up to the region's size).
    ``from_whole``: cut from the whole frame scaled once (:meth:`SearchFrame.whole_at`), as the
    full search's parts are, rather than scaled on its own."""

    x: int
    y: int
    w: int
    h: int
    scale: float
    min_face: int
    max_face: int | None = None
    from_whole: bool = False


@dataclass(frozen=True)
class Cascades:
    """Haar cascades with shared search parameters (``scale_factor``, ``min_neighbors``)."""

    frontal: str = FRONTAL[0]
    scale_factor: float = 1.1
    min_neighbors: int = 5

    def search(self, frame: SearchFrame, region: Region, name: str | None = None,
               mirrored: bool = False, raw: bool = False) -> list[Box]:
        """Faces found by cascade ``name`` (default: the frontal one) in ``region`` of ``frame``,
        largest first, in full-frame pixels; ``mirrored``: search the region flipped left to
        right; ``raw``: every window the cascade accepts, not grouped into faces."""
        scaled = frame.scaled(region)
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
        boxes = [Box(int(round(x0 + (sw - x - bw if mirrored else x) / s)),
                     int(round(y0 + y / s)), int(round(bw / s)), int(round(bh / s)))
                 for x, y, bw, bh in found]
        return sorted(boxes, key=lambda b: b.area, reverse=True)


class SearchFrame:
    """One frame as the searches read it: the gray frame, and the whole frame at each scale a
    full search reads, made once however many of its parts read it.

    The whole frame is scaled from a pyramid of halves (each level the mean of the 2x2 blocks of
    the one above: tens of microseconds where an arbitrary shrink of the frame by pixel areas
    takes hundreds), the level with the fewest pixels still as fine as the result, then by a
    ratio of 0.5 to 1: bilinear from :data:`BILINEAR_FROM` up, by pixel areas below. A region
    around a face is small, and scaled on its own by pixel areas.
    """

    #: The least ratio from a pyramid level that is scaled bilinearly (after the 2x2 means the
    #: level is already smooth enough that sampling it does not alias).
    BILINEAR_FROM = 0.75

    def __init__(self, gray: np.ndarray) -> None:
        self.gray = gray
        self._levels = [gray]
        self._whole: dict[float, np.ndarray] = {}

    def whole_at(self, scale: float) -> np.ndarray:
        """The whole frame scaled by ``scale`` (at most 1)."""
        made = self._whole.get(scale)
        if made is None:
            height, width = self.gray.shape[:2]
            size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
            n = 0
            while scale * 2 ** (n + 1) <= 1 and min(self._level(n).shape[:2]) >= 2:
                n += 1   # a level one pixel thin has no halves
            source = self._level(n)
            ratio = size[0] / source.shape[1]
            made = source if size == source.shape[1::-1] else cv2.resize(
                source, size,
                interpolation=cv2.INTER_LINEAR if ratio >= self.BILINEAR_FROM else cv2.INTER_AREA)
            self._whole[scale] = made
        return made

    def scaled(self, region: Region) -> tuple[np.ndarray, float, float] | None:
        """The region's pixels inside the frame at its scale, with their top-left corner in the
        frame's pixels; None when too small to hold its smallest face."""
        height, width = self.gray.shape[:2]
        x0, y0 = max(0, region.x), max(0, region.y)
        x1, y1 = min(width, region.x + region.w), min(height, region.y + region.h)
        s = region.scale
        if region.from_whole and s != 1.0:
            whole = self.whole_at(s)
            sx0, sy0 = int(round(x0 * s)), int(round(y0 * s))
            image = whole[sy0:int(round(y1 * s)), sx0:int(round(x1 * s))]
            if min(image.shape[:2]) < region.min_face:
                return None
            return image, sx0 / s, sy0 / s
        sw, sh = int(round((x1 - x0) * s)), int(round((y1 - y0) * s))
        if min(sw, sh) < region.min_face:
            return None
        image = self.gray[y0:y1, x0:x1]
        if s != 1.0:
            image = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
        return image, x0, y0

    def _level(self, n: int) -> np.ndarray:
        """Level ``n`` of the pyramid of halves (0: the frame itself)."""
        while len(self._levels) <= n:
            top = self._levels[-1]
            h, w = top.shape[0] // 2, top.shape[1] // 2
            self._levels.append(cv2.resize(top[:2 * h, :2 * w], (max(w, 1), max(h, 1)),
                                           interpolation=cv2.INTER_AREA))
        return self._levels[n]


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
        strips = max(1, min(round(cost / target), (sw - big) // max(big // 2, 1)))
        edges = [int(round(k * (sw - big) / strips)) for k in range(strips)] + [sw]
        for x0, x1 in zip(edges, edges[1:]):
            right = sw if x1 == sw else x1 + big
            plan.append(SweepPart(
                Region(int(x0 / scale), 0, int(math.ceil((right - x0) / scale)), height, scale,
                       small, big, from_whole=True),
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


def flow_patch(gray: np.ndarray, box: Box) -> tuple[np.ndarray, tuple[int, int]] | None:
    """The part of ``gray`` around ``box`` (half a face width on each side) that
    :func:`flow_box` follows into the next frame, copied, with its top-left corner; None when
    the box lies outside the frame."""
    height, width = gray.shape
    m = box.w // 2
    x0, y0 = max(0, box.x - m), max(0, box.y - m)
    x1, y1 = min(width, box.x + box.w + m), min(height, box.y + box.h + m)
    return (gray[y0:y1, x0:x1].copy(), (x0, y0)) if x1 > x0 and y1 > y0 else None


def _shrink_by(image: np.ndarray, m: int) -> np.ndarray:
    """``image`` shrunk ``m`` times, each pixel the mean of an ``m`` x ``m`` block (the rows and
    columns that make no whole block are left out)."""
    h, w = image.shape[0] // m, image.shape[1] // m
    return cv2.resize(image[:h * m, :w * m], (w, h), interpolation=cv2.INTER_AREA)


def flow_box(prev: np.ndarray, gray: np.ndarray, box: Box, origin: tuple[int, int],
             face_px: int = 64, min_points: int = 8, max_error: float = 0.5) -> Box | None:
    """Where ``box`` (full-frame pixels) moved from ``prev`` (a patch of the previous frame with
    its top-left at ``origin``) to ``gray`` (the whole new frame); None when too few corners
    inside the box can be followed forwards and back to within ``max_error`` pixels of a face
    ``face_px`` wide. Both patches are shrunk by the least whole number that brings the face to
    ``face_px`` wide or less (averaging whole blocks of pixels: several times cheaper than a
    fractional shrink)."""
    ox, oy = origin
    ph, pw = prev.shape
    new = gray[oy:oy + ph, ox:ox + pw]
    if new.shape != prev.shape:
        return None
    m = max(1, math.ceil(box.w / face_px))
    k = 1 / m
    if m > 1:
        prev, new = _shrink_by(prev, m), _shrink_by(new, m)
    max_error *= box.w * k / face_px
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
