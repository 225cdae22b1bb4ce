"""Face finding (OpenCV's Viola-Jones Haar cascades), following the child's face from frame to
frame, and the one face crop used at run time.

Each frame, :meth:`FaceDetector.track`:

1. follows the child's face: the frontal ``default`` cascade looks for it close to its last box
   (``close_margin``, ``close_sizes``), then the cascade that found it in the last frame if
   another (a face followed in profile stays followed at a close look's cost); when they miss,
   sparse optical flow predicts where the box moved, and one cascade looks in a region around
   that prediction, scaled so the face is ``roi_face_px`` wide: the one that found the face
   last, else the next in turn each frame (frontal ``default``, ``alt2``, profile, mirrored
   profile), so a re-find is spread over frames. Found by none (a glance down, a hand over the
   face), the face is kept where the flow puts it for at most ``coast_frames`` frames, and
   without a frontal find for at most ``unconfirmed_frames``. Only a frontal find makes the
   face fit for the emotion model (:attr:`Detection.frontal`);
2. runs parts of the full-frame search (on the frame scaled once to ``detect_width``, faces at
   least ``min_face_frac`` of the frame wide), cut by :func:`relaxd.vision.facesearch.plan_sweep`
   into ``sweep_parts`` parts of about equal work. Resting, while a frontal find follows the
   face, one part a frame: a whole sweep takes ``sweep_parts`` frames. Otherwise as many parts
   as the frame's budget holds; a part runs at least every other frame.
   :meth:`FaceDetector.find_bound` states how long a newcomer waits to be found.

Every search is counted (:attr:`Detection.work`, in full-frame searches: the sweep's parts by
their windows, a cascade run around a face and the flow by their measured costs,
:data:`relaxd.vision.facesearch.RUN_COST`), and no frame searches more than
:meth:`FaceDetector.frame_budget`, twice a resting frame's work.

A face new to the detector becomes the child's only once the other frontal cascade agrees with
the one whose sweep found it (``alt2`` with ``default``), and a background face never takes over
while the child's face is followed: the followed face counts as seen in every sweep. With nobody
followed, whole sweeps take the cascades of ``empty_sweeps`` in turn (``default``, then
``alt2``): a face that comes looking down, which ``alt2`` sees and ``default`` does not, is
pending, looked for again each frame by the cascade that found it, and the child's once found
``confirm_frames`` frames running. It keeps the child present, and is ``unproven`` (never fit
for the emotion model) until the ``default`` cascade finds it;
:meth:`FaceDetector.looking_down_bound` states how long it waits.

Which face is the child's, when several are seen (the rule, in order):
1. the face followed from the last frame (``rule="tracked"``);
2. otherwise, and at the end of each sweep, the face whose track was seen in the most sweeps
   (``"persistent"``): the child sits in the chair all session, a parent leaning in comes and goes.
   Sweeps count up to ``settled_sweeps``: faces seen that often are all settled, and the next
   rule decides between them, so a face on the wall followed before the child sat down gives way
   to the child's, nearer the camera;
3. tie: the largest (``"largest"``), the child being nearest the chair's camera; the followed
   face's area counts ``keep_area`` times, so that only a clearly larger face takes the choice
   from it and two faces of about one size do not trade it back and forth;
4. tie: the most central (``"central"``). A lone face is chosen with ``rule="only"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from relaxd.vision.facesearch import (
    FLOW_COST,
    FRONTAL,
    HAAR_WINDOW,
    PROFILE,
    REFIND,
    RUN_COST,
    Box,
    Cascades,
    Region,
    SearchFrame,
    SweepPart,
    flow_box,
    flow_patch,
    group,
    load_cascade,
    plan_sweep,
    region_around,
)

__all__ = ["Box", "Detection", "FaceDetector", "crop_face", "to_gray"]

#: The frontal cascade the full search uses (shipped with opencv-python-headless 4.x).
CASCADE_PATH = FRONTAL[0]


@dataclass(frozen=True)
class Detection:
    """One frame's result: the child's face ``box`` (None if no face), the faces ``faces`` this
    frame's searches found (``box`` among them), ``index`` of ``box`` in ``faces``, whether it was
    ``tracked`` (followed from the last frame rather than newly chosen), whether a sweep of the
    full frame ended with this frame (``full_search``), the ``rule`` that chose it (see the
    module's docstring; "" when no face), ``how`` the box was found ("frontal", "alt2",
    "profile" or "flow"), ``work``: this frame's searching, as a fraction of one full search,
    and whether the face is ``unproven`` (see :attr:`frontal`).
    """

    box: Box | None
    faces: tuple[Box, ...]
    index: int | None
    tracked: bool
    full_search: bool
    rule: str
    how: str = ""
    work: float = 0.0
    unproven: bool = False

    @property
    def frontal(self) -> bool:
        """A frontal cascade found the face this frame: fit for the emotion model. A face seen
        only in profile or only followed by flow shows the child is there, not their mood; so
        does a face ``unproven``: one that came looking down or turned (found by ``alt2`` or
        the profile cascade alone) and that the frontal ``default`` cascade has not found yet."""
        return self.how in ("frontal", "alt2") and not self.unproven


@dataclass
class _Track:
    box: Box
    hits: int = 1
    misses: int = 0
    verified: bool = False
    proven: bool = True  # found by the frontal default cascade (or verified by it) at least once


@dataclass
class _Pending:
    """A face a sweep part's ``alt2`` or profile cascade (:data:`REFIND` ``[k]``) found and the
    frontal default cascade did not confirm: followed by cascade ``k`` alone until it has been
    found ``finds`` frames running."""

    box: Box
    k: int
    finds: int = 1


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


@dataclass
class _Sweep:
    """Where the spread full search stands: its plan for one frame size, the next part, and the
    raw windows its parts found so far."""

    size: tuple[int, int] = (0, 0)
    plan: list[SweepPart] = field(default_factory=list)
    next: int = 0
    windows: list[Box] = field(default_factory=list)
    median_share: float = 0.0
    k: int = 0  # the cascade of REFIND this sweep runs
    count: int = 0  # sweeps begun


@dataclass
class _Budget:
    """A frame's searching, counted in full-frame searches: ``spent`` so far, and ``limit``."""

    limit: float
    spent: float = 0.0

    def fits(self, cost: float) -> bool:
        return self.spent + cost <= self.limit + 1e-9

    def spend(self, cost: float) -> None:
        self.spent += cost


@dataclass(eq=False)
class FaceDetector:
    """Finds faces in grayscale frames and follows the child's face from frame to frame.

    ``detect_width``: the full-frame search runs on at most ``detect_width`` x
    ``0.75 * detect_width`` pixels; ``min_face_frac``: smallest face, as a fraction of the frame's
    width; ``sweep_parts``: the full search is cut into about this many parts, one a frame while
    resting; ``empty_pace``: with nobody followed, the share of the full search a frame runs at
    most; ``close_margin`` and ``close_sizes``: where the followed face is looked for first
    (face widths on each side, and its size's range); ``roi_margin`` and ``wide_sizes``: the
    same for the region searched around the face's predicted box (a re-find, a check);
    ``roi_face_px``: the face's width in those regions once scaled; ``coast_frames``: frames a face
    is kept by optical flow alone; ``unconfirmed_frames``: frames a face is kept without a frontal
    find (in profile, or by flow); ``empty_sweeps``: with nobody followed, the cascades
    (:data:`REFIND` indices) whole sweeps take in turn, so that a face that comes looking down
    (``alt2``) or turned (the profile cascades) is found too; ``confirm_frames``: frames running
    such a face must be found by its cascade before it is the child's (see :class:`_Pending`);
    ``settled_sweeps``: sweeps after which a face's persistence no longer counts (see the
    module's child rule); ``keep_area``: how many times the followed face's area a face must
    have to take the choice from it by size (see the module's child rule); ``scale_factor`` and
    ``min_neighbors``: the cascades' own parameters; ``close_neighbors``: the close look's
    ``min_neighbors`` (at the followed face's own place and size fewer agreeing windows
    suffice, so a tilted face stays fit for the mood a frame or two longer);
    ``cascade_path``: the full search's cascade (a name under cv2.data or a path).
    """

    detect_width: int = 240
    min_face_frac: float = 0.1
    sweep_parts: int = 36
    empty_pace: float = 1 / 6
    roi_margin: float = 0.25
    close_margin: float = 0.15
    close_sizes: tuple[float, float] = (0.87, 1.15)
    wide_sizes: tuple[float, float] = (0.8, 1.25)
    roi_face_px: int = 48
    coast_frames: int = 45
    unconfirmed_frames: int = 150
    empty_sweeps: tuple[int, ...] = (0, 1)
    confirm_frames: int = 3
    settled_sweeps: int = 4
    keep_area: float = 1.5
    scale_factor: float = 1.1
    min_neighbors: int = 5
    close_neighbors: int = 4
    cascade_path: str = CASCADE_PATH
    _cascades: Cascades = field(init=False, repr=False)
    _close_cascades: Cascades = field(init=False, repr=False)
    _tracks: list[_Track] = field(init=False, repr=False, default_factory=list)
    _current: _Track | None = field(init=False, repr=False, default=None)
    _sweep: _Sweep = field(init=False, repr=False, default_factory=_Sweep)
    _patch: tuple[np.ndarray, tuple[int, int]] | None = field(init=False, repr=False, default=None)
    _coasted: int = field(init=False, repr=False, default=0)
    _unconfirmed: int = field(init=False, repr=False, default=0)
    _refind: int = field(init=False, repr=False, default=0)
    _starved: bool = field(init=False, repr=False, default=False)
    _pending: _Pending | None = field(init=False, repr=False, default=None)
    _awaiting: _Track | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self._cascades = Cascades(self.cascade_path, self.scale_factor, self.min_neighbors)
        self._close_cascades = Cascades(self.cascade_path, self.scale_factor,
                                        self.close_neighbors)
        for name in dict.fromkeys((self.cascade_path, *FRONTAL, PROFILE)):
            load_cascade(name)

    def reset(self) -> None:
        """Forget the faces followed so far (a new session)."""
        self._tracks, self._current, self._sweep = [], None, _Sweep()
        self._patch, self._coasted, self._unconfirmed = None, 0, 0
        self._refind, self._starved, self._pending, self._awaiting = 0, False, None, None

    def find_all(self, gray: np.ndarray) -> list[Box]:
        """Every face in the whole frame, largest first (stateless full search, in one go)."""
        gray = to_gray(gray)
        return self._cascades.search(SearchFrame(gray), self._full_region(*gray.shape[::-1]))

    def detect(self, gray: np.ndarray) -> list[Box]:
        """The faces of this frame's search, the child's first (see :meth:`track`: a frame of a
        sequence; for a single still image use :meth:`find_all`)."""
        d = self.track(gray)
        if d.index is None:
            return list(d.faces)
        return [d.faces[d.index]] + [b for i, b in enumerate(d.faces) if i != d.index]

    def track(self, gray: np.ndarray) -> Detection:
        """Find the child's face in this frame: follow it from the last frame, search parts of
        the full frame, and choose among new faces when none is followed (see the module), all
        within :meth:`frame_budget`."""
        frame = SearchFrame(to_gray(gray))
        self._plan_for(frame.gray)
        budget = _Budget(self.frame_budget(followed=self._current is not None))
        switched = self._recheck(frame, budget)
        how = self._follow(self._current, frame, budget) if self._current is not None else ""
        if not how:
            self._current, self._patch = None, None
            how = self._confirm(frame, budget)
        followed = None if switched else self._current
        rule = switched or ("tracked" if how else "")
        part, swept = self._sweep_on(frame, budget, how)
        if how in ("flow", "profile") and followed is not None:
            how = self._snap(followed, part) or how
        if swept is not None:
            rule = self._end_sweep(frame, swept, budget)
        elif self._current is None and part:
            rule = self._choose(frame, part, budget)
        return self._result(frame.gray, followed, part, swept, rule, how, budget.spent)

    def _result(self, gray: np.ndarray, followed: _Track | None, part: list[Box],
                swept: list[Box] | None, rule: str, how: str, work: float) -> Detection:
        """The frame's :class:`Detection`, the followed face's state brought up to date."""
        cur = self._current
        if cur is None:
            return Detection(None, tuple(part if swept is None else swept), None, False,
                             swept is not None, "", "", round(work, 4))
        box = cur.box
        if cur is not followed:
            how = REFIND[self._sweep.k][2] if box in part else "sweep"
            self._coasted = self._unconfirmed = 0
            self._pending = None
        cur.proven = cur.proven or how == "frontal"
        self._unconfirmed = 0 if how in ("frontal", "alt2") else self._unconfirmed + 1
        self._remember(gray, box)
        faces = [f for f in (part if swept is None else swept) if f == box or f.iou(box) < 0.3]
        if box not in faces:
            faces.insert(0, box)
        return Detection(box, tuple(faces), faces.index(box), cur is followed,
                         swept is not None, rule, how, round(work, 4), not cur.proven)

    def frame_budget(self, followed: bool = True) -> float:
        """The most searching a frame does, in full searches: while a face is followed, twice a
        resting frame's (the face looked for close by, and a sweep part of the median share);
        with nobody followed, ``empty_pace`` of the sweep and one check of a find."""
        if not followed:
            return self.empty_pace + RUN_COST["wide"][1]
        return 2 * (RUN_COST["close"][0] + self._sweep.median_share)

    def find_bound(self, width: int, height: int) -> tuple[int, int]:
        """The most frames from a face coming into view to its being found: in an empty chair
        (as many parts a frame as :meth:`frame_budget` holds, with room to check a find), and
        beside a face followed frontally (the resting pace, one part a frame). Two whole sweeps:
        a face that comes during one is in every part of the next, whose end counts it (with
        nobody followed, the part that holds it chooses it at once). Beside a face followed
        only by flow or in profile the sweep runs a part at least every other frame: at most
        twice the second figure. In an empty chair the sweeps take :attr:`empty_sweeps` in
        turn: a frontal face waits for one by either frontal cascade."""
        sweeps = sweeps_to_see(self.empty_sweeps, {0, 1}) or 0
        return sweeps * self._empty_sweep_frames(width, height), 2 * len(self._sweep.plan)

    def looking_down_bound(self, width: int, height: int, k: int = 1) -> int | None:
        """The most frames, in an empty chair, from a face that only cascade ``REFIND[k]`` sees
        (``alt2``: one looking down) coming into view to its being the child's: until a sweep
        by that cascade has run over it whole, then :attr:`confirm_frames` less one (the
        sweep's find is the first). None when no sweep of :attr:`empty_sweeps` runs it."""
        sweeps = sweeps_to_see(self.empty_sweeps, {k})
        if sweeps is None:
            return None
        return sweeps * self._empty_sweep_frames(width, height) + self.confirm_frames - 1

    def _empty_sweep_frames(self, width: int, height: int) -> int:
        """Frames one sweep takes with nobody followed (as many parts a frame as the budget
        holds, at least one)."""
        self._plan_for(np.zeros((height, width), np.uint8))
        searching, left = 0, 0.0
        for part in self._sweep.plan:
            if left < part.share:          # a new frame: at least one part, up to the budget
                searching, left = searching + 1, self.empty_pace
            left -= part.share
        return searching

    @property
    def cascades(self) -> Cascades:
        """The cascades every search runs, with the detector's parameters."""
        return self._cascades

    def close_region(self, box: Box) -> Region:
        """Where a face followed at ``box`` in the last frame is looked for first: within
        :attr:`close_margin` face widths, :attr:`close_sizes` times its size."""
        return region_around(box, self.close_margin, self.roi_face_px, *self.close_sizes)

    def wide_region(self, box: Box) -> Region:
        """Where a face is looked for around a guess ``box`` (a re-find, a check): within
        :attr:`roi_margin` face widths, :attr:`wide_sizes` times its size."""
        return region_around(box, self.roi_margin, self.roi_face_px, *self.wide_sizes)

    def _full_region(self, width: int, height: int) -> Region:
        scale = min(1.0, self.detect_width / width, self.detect_width * 0.75 / height)
        min_face = max(HAAR_WINDOW, int(round(self.min_face_frac * width * scale)))
        return Region(0, 0, width, height, scale, min_face, from_whole=True)

    def _follow(self, cur: _Track, frame: SearchFrame, budget: _Budget) -> str:
        """Find the followed face ``cur`` again, or keep it by flow; how, or "" when it is lost.

        The frontal cascade looks close to the last box first, then the cascade that found the
        face in the last frame, if another (a face followed in profile or looking down); when
        they miss, optical flow predicts the box and one cascade of :data:`REFIND` looks around
        the prediction: the one that found the face last, else the next in turn each frame (a
        re-find spread over frames), none while the sweep waits for its part."""
        if self._unconfirmed >= self.unconfirmed_frames:
            return ""
        box = self._look(frame, cur.box, budget, 0, close=True)
        if box is not None:
            cur.box, self._coasted, self._refind = box, 0, 0
            return "frontal"
        last = self._last_cascade()
        if last and (box := self._look(frame, cur.box, budget, last, close=True)) is not None:
            cur.box = box
            return REFIND[last][2]
        budget.spend(FLOW_COST)
        predicted = None if self._patch is None else flow_box(self._patch[0], frame.gray, cur.box,
                                                              self._patch[1])
        moved_to = predicted if predicted is not None and predicted.iou(cur.box) < 0.7 else None
        k = self._refind
        if not self._starved:   # the turn passes on if this cascade is not found or does not fit
            self._refind = (k + 1) % len(REFIND)
            if budget.fits(RUN_COST["wide"][k]):
                box = self._look(frame, cur.box if moved_to is None else moved_to, budget, k)
                if box is not None:
                    cur.box, self._coasted, self._refind = box, 0, k
                    return REFIND[k][2]
        height, width = frame.gray.shape
        if (predicted is None or self._coasted >= self.coast_frames
                or predicted.inside_fraction(width, height) < 0.5):
            return ""
        cur.box, self._coasted = predicted, self._coasted + 1
        return "flow"

    def _confirm(self, frame: SearchFrame, budget: _Budget) -> str:
        """With nobody followed, look again for the pending face (one that came looking down or
        turned) with the cascade that found it; found :attr:`confirm_frames` frames running, it
        becomes the child's face, unproven until the frontal cascade finds it. How, or ""."""
        p = self._pending
        if p is None or not budget.fits(RUN_COST["wide"][p.k]):
            return ""
        box = self._look(frame, p.box, budget, p.k)
        if box is None:
            self._pending = None
            return ""
        p.box, p.finds = box, p.finds + 1
        if p.finds < self.confirm_frames:
            return ""
        self._pending, track = None, _Track(box, verified=True, proven=False)
        self._tracks.append(track)
        self._current, self._refind, self._coasted, self._unconfirmed = track, p.k, 0, 0
        return REFIND[p.k][2]

    def _look(self, frame: SearchFrame, guess: Box, budget: _Budget, k: int,
              close: bool = False) -> Box | None:
        """The face cascade ``REFIND[k]`` finds around ``guess``; None if none overlaps it.
        ``close``: only where a face followed from the last frame can be (:attr:`close_margin`,
        :attr:`close_sizes`), else where :meth:`wide_region` says."""
        region = self.close_region(guess) if close else self.wide_region(guess)
        cascades = self._close_cascades if close else self._cascades
        name, mirrored, _ = REFIND[k]
        found = cascades.search(frame, region, self.cascade_path if k == 0 else name, mirrored)
        budget.spend(RUN_COST["close" if close else "wide"][k])
        best = max(found, key=guess.iou, default=None)
        return best if best is not None and best.iou(guess) >= 0.2 else None

    def _sweep_on(self, frame: SearchFrame, budget: _Budget,
                  how: str) -> tuple[list[Box], list[Box] | None]:
        """This frame's parts of the sweep: the faces they found, and the sweep's when it ended.

        Resting, while a frontal find follows the face: one part (a whole sweep takes
        ``sweep_parts`` frames). Otherwise as many parts as the frame's budget holds (with
        nobody followed, room kept to check a find, and until a part finds a face). A part
        runs whatever the budget when the last frame ran none."""
        part: list[Box] = []
        swept, ran = None, 0
        while swept is None and self._sweep.plan and not (part and self._current is None):
            reserve = 0.0 if how else RUN_COST["wide"][1]
            if not (budget.fits(self._sweep.plan[self._sweep.next].share + reserve)
                    or (self._starved and ran == 0)):
                break
            more, swept = self._sweep_step(frame, budget)
            part, ran = part + more, ran + 1
            if how in ("frontal", "alt2"):
                break
        self._starved = ran == 0 and bool(self._sweep.plan)
        return part, swept

    def _snap(self, cur: _Track, part: list[Box]) -> str:
        """A face ``cur`` followed without a frontal find moves to this frame's sweep part's
        find over it, if any; how the part found it then, else ""."""
        box = max(part, key=cur.box.iou, default=None)
        if box is None or box.iou(cur.box) < 0.3:
            return ""
        cur.box, self._coasted = box, 0
        return REFIND[self._sweep.k][2]

    def _plan_for(self, gray: np.ndarray) -> None:
        """The sweep's plan for this frame's size (made again when the size changes)."""
        height, width = gray.shape
        if self._sweep.size != (width, height):
            full = self._full_region(width, height)
            plan = plan_sweep(width, height, full.scale, full.min_face, self.sweep_parts,
                              self.scale_factor)
            self._sweep = _Sweep((width, height), plan,
                                 median_share=float(np.median([p.share for p in plan] or [0.0])))
            self._awaiting = None   # a box of the old size

    def _sweep_step(self, frame: SearchFrame,
                    budget: _Budget) -> tuple[list[Box], list[Box] | None]:
        """Run the next part of the sweep: its new faces, and every face of the sweep when it
        ended with this part (else None)."""
        sw = self._sweep
        if sw.next == 0:  # a sweep begins: with nobody followed, the next cascade in turn
            sw.k = 0 if self._current is not None else self.empty_sweeps[
                sw.count % len(self.empty_sweeps)]
            sw.count += self._current is None
        part = sw.plan[sw.next]
        budget.spend(part.share)
        name, mirrored, _ = REFIND[sw.k]
        windows = [b for b in self._cascades.search(
                       frame, part.region, self.cascade_path if sw.k == 0 else name, mirrored,
                       raw=True)
                   if part.keep_x0 <= b.x < part.keep_x1]
        sw.windows.extend(windows)
        sw.next += 1
        found = group(windows, self.min_neighbors)
        if sw.next < len(sw.plan):
            return found, None
        swept, sw.windows, sw.next = group(sw.windows, self.min_neighbors), [], 0
        return found, swept

    def _verify(self, frame: SearchFrame, track: _Track, budget: _Budget,
                again: bool = False) -> bool:
        """Whether the other frontal cascade (``alt2``, or ``default`` for a sweep by another)
        agrees there is a face at the track's box: once enough for a face found in this frame;
        ``again``, in this frame, for one a whole sweep found (its windows come from the sweep's
        frames, the face may have moved or gone since). A check the frame's budget cannot hold
        waits (False) for a later frame."""
        if again or not track.verified:
            k = self._other_frontal()
            if not budget.fits(RUN_COST["wide"][k]):
                return False
            found = self._cascades.search(frame, self.wide_region(track.box), FRONTAL[k])
            budget.spend(RUN_COST["wide"][k])
            track.verified = any(f.iou(track.box) >= 0.3 for f in found)
        return track.verified

    def _check(self, frame: SearchFrame, track: _Track, budget: _Budget,
               again: bool = False) -> bool:
        """:meth:`_verify`; with nobody followed, a face a sweep by ``alt2`` or a profile cascade
        found that the frontal cascade then does not see becomes the pending face (it may have
        come looking down or turned: see :meth:`_confirm`)."""
        spent = budget.spent
        if self._verify(frame, track, budget, again):
            return True
        if (self._sweep.k != 0 and budget.spent > spent and self._current is None
                and self._pending is None):
            self._pending = _Pending(track.box, self._sweep.k)
        return False

    def _choose(self, frame: SearchFrame, part: list[Box], budget: _Budget) -> str:
        """With no face followed: take the child's among this part's faces; the rule, or ""."""
        candidates = []
        for box in part:
            track = max(self._tracks, key=lambda t: t.box.iou(box), default=None)
            if track is None or track.box.iou(box) < 0.3:
                track = _Track(box, hits=0)   # counted by the sweep's end, like every face
            track.box = box
            if self._check(frame, track, budget):
                candidates.append(track)
        if not candidates:
            return ""
        ranked = self._rank(candidates, frame.gray.shape)
        rule = self._rule(ranked, frame.gray.shape)
        self._current, self._pending = ranked[0], None
        if ranked[0] not in self._tracks:
            self._tracks.append(ranked[0])
        return rule

    def _end_sweep(self, frame: SearchFrame, swept: list[Box], budget: _Budget) -> str:
        """The sweep ended: count where each face was seen and choose the child's again."""
        cur = self._current
        others = [f for f in swept if cur is None or f.iou(cur.box) < 0.3]
        seen = self._match(others)
        if cur is not None:
            cur.hits, cur.misses = cur.hits + 1, 0
            seen.append(cur)
        ranked, kept, self._awaiting = self._rank(seen, frame.gray.shape), [], None
        for i, track in enumerate(ranked):
            spent = budget.spent
            if track is cur or self._check(frame, track, budget, again=True):
                kept.append(track)
            elif budget.spent == spent and cur in ranked[i + 1:] and self._awaiting is None:
                self._awaiting = track   # ranked above the followed face: checked when there is room
        rule = self._rule(kept, frame.gray.shape) if kept else ""
        self._current = kept[0] if kept else None
        return rule

    def _recheck(self, frame: SearchFrame, budget: _Budget) -> str:
        """First in a frame after a sweep's end: check the face it ranked above the followed one
        and had no room to check, once a frame has room for the check and for following the
        face (a sweep's end sets the face afresh). If it passes it becomes the child's, followed
        from its sweep's box; the rule that chose it, else ""."""
        track, cur = self._awaiting, self._current
        if track is None or cur is None:
            self._awaiting = None
            return ""
        if not budget.fits(RUN_COST["wide"][self._other_frontal()] + self._follow_cost()):
            return ""
        self._awaiting = None
        if not self._check(frame, track, budget, again=True):
            return ""
        rule = self._rule([track, cur], frame.gray.shape)
        self._current, self._patch, self._coasted, self._refind = track, None, 0, 0
        return rule

    def _follow_cost(self) -> float:
        """What following the face spends before it asks the budget: the close looks (frontal,
        and by the cascade that found it in the last frame) and the flow."""
        last = self._last_cascade()
        return RUN_COST["close"][0] + (RUN_COST["close"][last] if last else 0.0) + FLOW_COST

    def _last_cascade(self) -> int:
        """The cascade (:data:`REFIND` index) that found the followed face in the last frame,
        if not the frontal ``default`` one; 0 otherwise (or when flow alone kept it)."""
        return self._refind if not self._coasted else 0

    def _other_frontal(self) -> int:
        """The frontal cascade (:data:`REFIND` index) that checks a face the sweep's found."""
        return 1 if self._sweep.k == 0 else 0

    def _rank(self, tracks: list[_Track], shape: tuple[int, ...]) -> list[_Track]:
        return sorted(tracks, key=lambda t: self._key(t, shape), reverse=True)

    def _key(self, track: _Track, shape: tuple[int, ...]) -> tuple[int, float, float]:
        """The child rule's order, the followed face's area counted :attr:`keep_area` times: a
        face of about its size (boxes of one face vary by a cascade step or two between
        searches) never takes the choice from it, so the choice does not flap between two."""
        favour = self.keep_area if track is self._current else 1.0
        return _key(track, shape, self.settled_sweeps, favour)

    def _rule(self, ranked: list[_Track], shape: tuple[int, ...]) -> str:
        if len(ranked) == 1:
            return "only"
        (h0, a0, _), (h1, a1, _) = (self._key(t, shape) for t in ranked[:2])
        return "persistent" if h0 > h1 else "largest" if a0 > a1 else "central"

    def _match(self, faces: list[Box]) -> list[_Track]:
        """Update the tracks (but the followed one) with a sweep's faces; the tracks seen in it."""
        tracks = [t for t in self._tracks if t is not self._current]
        pairs = sorted(((f.iou(t.box), i, j) for i, f in enumerate(faces)
                        for j, t in enumerate(tracks)), reverse=True)
        face_track: dict[int, _Track] = {}
        used: set[int] = set()
        for overlap, i, j in pairs:
            if overlap < 0.3:
                break
            if i not in face_track and j not in used:
                face_track[i] = tracks[j]
                used.add(j)
        for j, tr in enumerate(tracks):
            if j not in used:
                tr.misses += 1
        self._tracks = [t for t in self._tracks if t.misses <= 2]
        seen = []
        for i, f in enumerate(faces):
            track = face_track.get(i)
            if track is None:
                track = _Track(f)
                self._tracks.append(track)
            else:
                track.box, track.hits, track.misses = f, track.hits + 1, 0
            seen.append(track)
        return seen

    def _remember(self, gray: np.ndarray, box: Box) -> None:
        """Keep the frame around ``box`` for the next frame's optical flow."""
        self._patch = flow_patch(gray, box)


def sweeps_to_see(cycle: tuple[int, ...], seen_by: set[int]) -> int | None:
    """Whole sweeps, their cascades taking ``cycle`` in turn, from a face coming into view to a
    sweep by one of ``seen_by`` having run over it whole: the one under way (which may have
    passed it), then the longest wait for the next that sees it. None when none does."""
    at = [i for i, k in enumerate(cycle) if k in seen_by]
    if not at:
        return None
    gaps = [(b - a) % len(cycle) or len(cycle) for a, b in zip(at, at[1:] + at[:1])]
    return 1 + max(gaps)


def _key(track: _Track, shape: tuple[int, ...], settled: int,
         favour: float = 1.0) -> tuple[int, float, float]:
    """The child rule's order: hits in sweeps (up to ``settled``), then area (times
    ``favour``), then nearness to the frame's centre."""
    height, width = shape[:2]
    cx, cy = track.box.center
    return (min(track.hits, settled), track.box.area * favour,
            -((cx - width / 2) ** 2 + (cy - height / 2) ** 2))


def one_opencv_thread() -> None:
    """OpenCV works on one thread, as the figures in the model card and ``relaxd bench`` were
    measured: the detector's many small region searches gain nothing from a thread pool, and
    the Pi's other cores stay free for the sound, the station and the bridge."""
    cv2.setNumThreads(1)
