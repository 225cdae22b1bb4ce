"""Face finding (OpenCV's Viola-Jones Haar cascade) and the one face crop used at run time.

Speed at 640x480: the full-frame search runs on a copy downscaled to ``detect_width`` pixels
wide and ignores faces narrower than ``min_face_frac`` of the frame (a child seated in the chair
fills far more). Between full searches the detector only looks in a small region around the last
face, itself scaled so that the face is about ``roi_face_px`` wide. A full search runs every
``full_every`` frames, and at once whenever the face is lost.

Which face is the child's, when several are seen (the rule, in order):
1. the face found again near the last chosen face (``rule="tracked"``);
2. otherwise the face whose track was seen in the most full searches (``"persistent"``): the
   child sits in the chair all session, a parent leaning in comes and goes;
3. tie: the largest (``"largest"``), the child being nearest the chair's camera;
4. tie: the most central (``"central"``). A lone face is chosen with ``rule="only"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

#: The cascade shipped in opencv-python-headless 4.x.
CASCADE_PATH = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"

#: The cascade's own window: nothing smaller can be found.
_HAAR_WINDOW = 24


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


@dataclass(frozen=True)
class Detection:
    """One frame's result: the child's face ``box`` (None if no face), every face ``faces`` found
    by this frame's search, ``index`` of ``box`` in ``faces``, whether it was ``tracked`` (found
    near the last face without a full search), whether a ``full_search`` ran, and the ``rule`` that
    chose it (see the module's docstring; "" when no face)."""

    box: Box | None
    faces: tuple[Box, ...]
    index: int | None
    tracked: bool
    full_search: bool
    rule: str


@dataclass
class _Track:
    box: Box
    hits: int = 1
    misses: int = 0


def to_gray(image: np.ndarray) -> np.ndarray:
    """An HxW uint8 grayscale view or copy of a gray, BGR or BGRA image."""
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise ValueError(f"not an image: shape {image.shape}")


def crop_face(gray: np.ndarray, box: Box, size: int = 48) -> np.ndarray:
    """The model's input: a ``size`` x ``size`` uint8 crop of ``box``, framed like FER2013.

    FER2013's faces are framed like the Haar box (measured: on 433 FER2013 validation faces,
    upscaled 4x and padded, the cascade's box is 0.98 of the image's side, IQR 0.91-1.05,
    centred within 0.5%), so the crop is the box itself, made square around its centre (Haar
    boxes already are), moved inside the frame where it sticks out (shrunk if the frame is
    smaller), then resized with INTER_AREA (INTER_LINEAR when enlarging).
    """
    gray = to_gray(gray)
    height, width = gray.shape
    side = max(1, min(max(box.w, box.h), height, width))
    cx, cy = box.center
    x = int(round(cx - side / 2))
    y = int(round(cy - side / 2))
    x = min(max(x, 0), width - side)
    y = min(max(y, 0), height - side)
    crop = gray[y:y + side, x:x + side]
    interp = cv2.INTER_AREA if side >= size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interp)


@dataclass(eq=False)
class FaceDetector:
    """Finds faces in grayscale frames and follows the child's face from frame to frame.

    ``detect_width``: the full-frame search runs on at most ``detect_width`` x
    ``0.75 * detect_width`` pixels; ``min_face_frac``: smallest face, as a
    fraction of the frame's width; ``full_every``: a full search at least every this many frames;
    ``roi_margin``: the region searched around the last face extends this many face widths on each
    side; ``roi_face_px``: the face's width in that region once scaled; ``scale_factor`` and
    ``min_neighbors``: the cascade's own parameters.
    """

    detect_width: int = 240
    min_face_frac: float = 0.1
    full_every: int = 15
    roi_margin: float = 0.35
    roi_face_px: int = 32
    scale_factor: float = 1.1
    min_neighbors: int = 5
    cascade_path: str = CASCADE_PATH
    _cascade: cv2.CascadeClassifier = field(init=False, repr=False)
    _tracks: list[_Track] = field(init=False, repr=False, default_factory=list)
    _current: _Track | None = field(init=False, repr=False, default=None)
    _since_full: int = field(init=False, repr=False, default=0)

    def __post_init__(self) -> None:
        self._cascade = cv2.CascadeClassifier(self.cascade_path)
        if self._cascade.empty():
            raise ValueError(f"cannot load Haar cascade {self.cascade_path}")

    def reset(self) -> None:
        """Forget the faces followed so far (a new session)."""
        self._tracks, self._current, self._since_full = [], None, 0

    def find_all(self, gray: np.ndarray) -> list[Box]:
        """Every face in the whole frame, largest first (stateless full search)."""
        gray = to_gray(gray)
        height, width = gray.shape
        scale = min(1.0, self.detect_width / width, self.detect_width * 0.75 / height)
        min_face = max(_HAAR_WINDOW, int(round(self.min_face_frac * width * scale)))
        return self._search(gray, 0, 0, width, height, scale, min_face, None)

    def detect(self, gray: np.ndarray) -> list[Box]:
        """The faces of this frame's search, the child's first (see :meth:`track`)."""
        d = self.track(gray)
        if d.index is None:
            return list(d.faces)
        return [d.faces[d.index]] + [b for i, b in enumerate(d.faces) if i != d.index]

    def track(self, gray: np.ndarray) -> Detection:
        """Find the child's face in this frame: near the last one if possible, else everywhere."""
        gray = to_gray(gray)
        self._since_full += 1
        if self._current is not None and self._since_full < self.full_every:
            found = self._search_near(gray, self._current.box)
            if found:
                best = max(found, key=lambda b: b.iou(self._current.box))
                self._current.box = best
                self._current.hits += 1
                return Detection(best, tuple(found), found.index(best), True, False, "tracked")
        return self._full(gray)

    def _full(self, gray: np.ndarray) -> Detection:
        self._since_full = 0
        faces = self.find_all(gray)
        seen = self._match(faces)
        if not seen:
            self._current = None
            return Detection(None, tuple(faces), None, False, True, "")
        height, width = gray.shape[:2]
        fx, fy = width / 2, height / 2

        def key(tr: _Track) -> tuple[int, int, float]:
            cx, cy = tr.box.center
            return tr.hits, tr.box.area, -((cx - fx) ** 2 + (cy - fy) ** 2)

        ranked = sorted(seen, key=key, reverse=True)
        best = ranked[0]
        if len(ranked) == 1:
            rule = "only"
        else:
            (h0, a0, _), (h1, a1, _) = key(best), key(ranked[1])
            rule = "persistent" if h0 > h1 else "largest" if a0 > a1 else "central"
        self._current = best
        return Detection(best.box, tuple(faces), faces.index(best.box), False, True, rule)

    def _match(self, faces: list[Box]) -> list[_Track]:
        """Update the tracks with a full search's faces; return the tracks seen in it."""
        pairs = sorted(((f.iou(t.box), i, j) for i, f in enumerate(faces)
                        for j, t in enumerate(self._tracks)), reverse=True)
        face_track: dict[int, _Track] = {}
        used: set[int] = set()
        for overlap, i, j in pairs:
            if overlap < 0.3:
                break
            if i not in face_track and j not in used:
                face_track[i] = self._tracks[j]
                used.add(j)
        for j, tr in enumerate(self._tracks):
            if j not in used:
                tr.misses += 1
        self._tracks = [t for t in self._tracks if t.misses <= 2]
        seen = []
        for i, f in enumerate(faces):
            tr = face_track.get(i)
            if tr is None:
                tr = _Track(f)
                self._tracks.append(tr)
            else:
                tr.box, tr.hits, tr.misses = f, tr.hits + 1, 0
            seen.append(tr)
        return seen

    def _search_near(self, gray: np.ndarray, last: Box) -> list[Box]:
        height, width = gray.shape[:2]
        margin = int(round(self.roi_margin * last.w))
        x0, y0 = max(0, last.x - margin), max(0, last.y - margin)
        x1, y1 = min(width, last.x + last.w + margin), min(height, last.y + last.h + margin)
        scale = min(1.0, self.roi_face_px / last.w)
        min_face = max(_HAAR_WINDOW, int(round(0.7 * last.w * scale)))
        max_face = int(round(1.4 * last.w * scale))
        return self._search(gray, x0, y0, x1 - x0, y1 - y0, scale, min_face, max_face)

    def _search(self, gray: np.ndarray, x0: int, y0: int, w: int, h: int, scale: float,
                min_face: int, max_face: int | None) -> list[Box]:
        """Faces in gray[y0:y0+h, x0:x0+w] searched at ``scale``, in full-frame pixels."""
        sw, sh = int(round(w * scale)), int(round(h * scale))
        if min(sw, sh) < min_face:
            return []
        region = gray[y0:y0 + h, x0:x0 + w]
        if scale != 1.0:
            region = cv2.resize(region, (sw, sh), interpolation=cv2.INTER_AREA)
        found = self._cascade.detectMultiScale(
            region, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(min_face, min_face),
            maxSize=(max_face, max_face) if max_face else (min(sw, sh), min(sw, sh)))
        boxes = [Box(x0 + int(round(x / scale)), y0 + int(round(y / scale)),
                     int(round(bw / scale)), int(round(bh / scale))) for x, y, bw, bh in found]
        return sorted(boxes, key=lambda b: b.area, reverse=True)
