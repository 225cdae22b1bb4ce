"""Face finding, following and cropping: real faces (scikit-image's astronaut, LFW) tilted, looking
down, turned and covered; the child rule; a face-like background that must not win; the work per
frame; edge sizes; the shared real clip against its hand annotation."""

from __future__ import annotations

import importlib.util
import json
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest

from relaxd.vision.faces import Box, Detection, FaceDetector, crop_face, to_gray
from relaxd.vision.facesearch import RUN_COST, SearchFrame, group, plan_sweep

skimage_data = pytest.importorskip("skimage.data")

ASTRONAUT_FACE = (177, 66, 95, 95)  # Haar box in skimage.data.astronaut()


@cache
def _head() -> np.ndarray:
    x, y, w, h = ASTRONAUT_FACE
    img = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    return img[y - h // 2:y + 2 * h, x - w // 2:x + w + w // 2]  # face at (47, 47) in the crop


def clutter(width: int = 640, height: int = 480, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frame = np.full((height, width, 3), 90, np.uint8)
    for _ in range(30):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.rectangle(frame, (x, y), (x + int(rng.integers(5, 80)), y + int(rng.integers(5, 80))),
                      colour, -1)
    return frame


def paste_astronaut(frame: np.ndarray, face_px: int, cx: int, cy: int) -> Box:
    """Put the astronaut's head with its face ``face_px`` wide centred at (cx, cy); its box."""
    s = face_px / ASTRONAUT_FACE[2]
    head = cv2.resize(_head(), None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    fx = int(round((ASTRONAUT_FACE[2] // 2) * s))
    x0, y0 = cx - face_px // 2 - fx, cy - face_px // 2 - fx
    hh, hw = head.shape[:2]
    sx0, sy0 = max(0, -x0), max(0, -y0)
    sx1, sy1 = min(hw, frame.shape[1] - x0), min(hh, frame.shape[0] - y0)
    frame[y0 + sy0:y0 + sy1, x0 + sx0:x0 + sx1] = head[sy0:sy1, sx0:sx1]
    return Box(cx - face_px // 2, cy - face_px // 2, face_px, face_px)


def paste_lfw(frame: np.ndarray, index: int, side: int, x: int, y: int) -> Box:
    face = (skimage_data.lfw_subset()[index] * 255).astype(np.uint8)
    frame[y:y + side, x:x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)[..., None]
    return Box(x, y, side, side)


def settle(det: FaceDetector, frame: np.ndarray) -> list[Detection]:
    """One full sweep's worth of the same frame (the detector spreads its search over frames)."""
    return [det.track(frame) for _ in range(det.sweep_parts + 1)]


def test_to_gray_accepts_gray_bgr_bgra_and_single_channel():
    bgr = clutter(64, 48)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    assert to_gray(gray) is gray
    assert np.array_equal(to_gray(bgr), gray)
    assert np.array_equal(to_gray(cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)), gray)
    assert np.array_equal(to_gray(gray[..., None]), gray)
    with pytest.raises(ValueError):
        to_gray(np.zeros((4, 4, 2), np.uint8))


def test_finds_the_astronaut_the_same_in_gray_and_colour():
    frame = clutter()
    expected = paste_astronaut(frame, 130, 300, 220)
    from_bgr = FaceDetector().find_all(to_gray(frame))
    from_gray = FaceDetector().find_all(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    assert from_bgr == from_gray
    assert len(from_bgr) == 1 and from_bgr[0].iou(expected) > 0.6
    found = settle(FaceDetector(), frame)  # colour straight into the detector
    d = next(d for d in found if d.box is not None)
    assert d.box.iou(from_bgr[0]) > 0.8 and d.rule == "only" and d.how == "frontal"
    assert found[-1].box.iou(from_bgr[0]) > 0.8 and found[-1].frontal and found[-1].tracked


def test_no_face():
    found = settle(FaceDetector(), clutter())
    assert all(d.box is None and d.faces == () and d.rule == "" and not d.frontal for d in found)
    assert any(d.full_search for d in found)
    assert all(FaceDetector().detect(clutter(seed=1)) == [] for _ in range(3))


@pytest.mark.parametrize("shape", [(1, 1), (20, 20), (23, 200), (40, 60), (60, 40, 3)])
def test_tiny_frames_give_no_face_and_no_error(shape):
    det = FaceDetector()
    frame = np.full(shape, 128, np.uint8)
    assert all(d.box is None for d in settle(det, frame))
    assert det.find_all(frame) == []


@pytest.mark.parametrize("height, width, face_px, cx, cy", [(2880, 3840, 720, 2000, 1300),
                                                           (4000, 1500, 900, 700, 2200)])
def test_huge_frame_is_searched_downscaled_in_full_frame_coordinates(height, width, face_px, cx, cy):
    frame = np.full((height, width, 3), 90, np.uint8)
    expected = paste_astronaut(frame, face_px, cx, cy)
    d = settle(FaceDetector(), frame)[-1]
    assert d.box is not None and d.box.iou(expected) > 0.6


def test_follows_the_face_near_its_last_place_and_searches_on_when_lost():
    det = FaceDetector()
    frames = []
    for dx in range(0, 120, 8):
        frame = clutter()
        frames.append((frame, paste_astronaut(frame, 120, 260 + dx, 230)))
    results = [det.track(f) for f, _ in frames]
    first = next(i for i, r in enumerate(results) if r.box is not None)
    assert first < det.sweep_parts and not results[first].tracked
    for r, (_, expected) in zip(results[first + 1:], frames[first + 1:]):
        assert r.tracked and r.frontal and r.rule in ("tracked", "only")
        assert r.box.iou(expected) > 0.5
    lost = [det.track(clutter()) for _ in range(3)]   # gone: nothing to follow, nothing found
    assert all(d.box is None for d in lost)
    back = settle(det, frames[0][0])
    assert back[-1].box.iou(frames[0][1]) > 0.5


def test_two_real_faces_the_largest_is_the_child():
    frame = clutter()
    child = paste_astronaut(frame, 150, 250, 260)
    paste_lfw(frame, 0, 100, 480, 60)
    det = FaceDetector()
    found = settle(det, frame)
    d = next(d for d in found if d.full_search)
    assert len(d.faces) == 2 and d.rule == "largest" and d.box.iou(child) > 0.6, d
    assert d.faces[d.index] == d.box
    assert all(d.box.iou(child) > 0.6 for d in found if d.box is not None)
    det.reset()
    assert settle(det, frame)[-1].box.iou(child) > 0.6


def test_the_sweep_parts_together_find_what_one_full_search_finds():
    frame = clutter()
    paste_astronaut(frame, 150, 250, 260)
    paste_lfw(frame, 0, 100, 480, 60)
    paste_lfw(frame, 1, 70, 40, 380)
    det = FaceDetector()
    gray = to_gray(frame)
    full = det._full_region(640, 480)
    plan = plan_sweep(640, 480, full.scale, full.min_face, det.sweep_parts)
    assert len(plan) >= 0.8 * det.sweep_parts and abs(sum(p.share for p in plan) - 1) < 1e-6
    frame = SearchFrame(gray)          # one frame: the parts cut the frame scaled once
    windows = [b for p in plan for b in det.cascades.search(frame, p.region, raw=True)
               if p.keep_x0 <= b.x < p.keep_x1]
    swept, whole = group(windows, det.min_neighbors), det.find_all(gray)
    assert len(swept) == len(whole) == 3   # each part scales its own levels: a pixel or so apart
    assert all(max(a.iou(b) for b in whole) > 0.9 for a in swept)


def test_the_frame_is_scaled_once_for_every_part_that_reads_it():
    """The sweep's parts cut one copy of the frame at the search's scale, made once a frame from
    the pyramid's half-size level (2x2 means), then bilinear."""
    gray = to_gray(clutter())
    frame = SearchFrame(gray)
    scaled = frame.whole_at(0.375)
    assert frame.whole_at(0.375) is scaled and scaled.shape == (180, 240)
    half = cv2.resize(gray, (320, 240), interpolation=cv2.INTER_AREA)
    assert np.array_equal(scaled, cv2.resize(half, (240, 180), interpolation=cv2.INTER_LINEAR))
    assert np.array_equal(frame.whole_at(0.5), half)


class Scripted(FaceDetector):
    """A detector whose every frame ends a sweep with scripted boxes (all confirmed), to test the
    child rule exactly."""

    def __init__(self, script: list[list[Box]]):
        super().__init__()
        self.script = list(script)

    def _sweep_step(self, frame, budget):
        faces = self.script.pop(0)
        return faces, faces

    def frame_budget(self, followed=True):
        return float("inf")   # scripted sweeps cost nothing: one ends every frame

    def _verify(self, gray, track, budget, again=False):
        track.verified = True
        return True


BLANK = np.zeros((480, 640), np.uint8)
CHILD, PARENT = Box(260, 180, 120, 120), Box(40, 20, 160, 160)


def test_child_rule_persistence_beats_size():
    det = Scripted([[CHILD], [CHILD], [Box(262, 181, 118, 118)], [PARENT, CHILD]])
    rules = [det.track(BLANK) for _ in range(4)]
    assert [r.rule for r in rules[:3]] == ["only"] * 3
    assert rules[3].rule == "persistent" and rules[3].box == CHILD and rules[3].index == 1
    assert all(r.full_search and not r.tracked for r in rules)


def test_child_rule_largest_then_most_central():
    big, small = Box(300, 200, 100, 100), Box(0, 0, 90, 90)
    left, right = Box(200, 190, 100, 100), Box(380, 190, 100, 100)  # centres 250 and 430 vs 320
    det = Scripted([[small, big], [right, left]])
    d = det.track(BLANK)
    assert d.rule == "largest" and d.box == big and d.index == 1
    det.reset()
    det.script = [[right, left]]
    d = det.track(BLANK)
    assert d.rule == "central" and d.box == left


def test_child_leaving_hands_over_after_tracks_expire():
    det = Scripted([[CHILD], [CHILD], [PARENT], [PARENT], [PARENT], [PARENT, CHILD]])
    results = [det.track(BLANK) for _ in range(6)]
    assert results[2].box == PARENT and results[2].rule == "only"
    # the child's track missed 3 full searches and was dropped: back, it starts from 1 hit
    assert results[5].box == PARENT and results[5].rule == "persistent"


def test_crop_face_is_the_square_box_resized():
    gray = (np.arange(200 * 300) % 251).astype(np.uint8).reshape(200, 300)
    crop = crop_face(gray, Box(50, 40, 96, 96))
    assert crop.shape == (48, 48) and crop.dtype == np.uint8
    assert np.array_equal(crop, cv2.resize(gray[40:136, 50:146], (48, 48), interpolation=cv2.INTER_AREA))
    assert np.array_equal(crop_face(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), Box(50, 40, 96, 96)), crop)
    assert crop_face(gray, Box(0, 0, 20, 20), size=64).shape == (64, 64)  # upscaled small face


def test_crop_face_non_square_box_is_squared_about_its_centre():
    gray = (np.arange(200 * 300) % 251).astype(np.uint8).reshape(200, 300)
    assert np.array_equal(crop_face(gray, Box(100, 50, 40, 60), size=60), gray[50:110, 90:150])


def test_crop_face_is_clamped_to_the_frame():
    gray = (np.arange(100 * 120) % 251).astype(np.uint8).reshape(100, 120)
    assert np.array_equal(crop_face(gray, Box(-10, -20, 48, 48)), gray[0:48, 0:48])
    assert np.array_equal(crop_face(gray, Box(100, 70, 48, 48)), gray[52:100, 72:120])
    # larger than the frame: the largest square that fits, as close to the box as possible
    huge = crop_face(gray, Box(50, 50, 400, 400), size=100)
    assert np.array_equal(huge, gray[0:100, 20:120])


# --- a child who tilts, looks down, covers their face and turns; a face-like background ----------

def head_pose(i: int, n: int) -> tuple[float, float, float, bool, float, float]:
    """Frame i of n: roll (degrees), pitch and yaw foreshortening (1: none), a hand over the
    mouth, and the face centre's offset. First half: tilting up to 28 degrees either way while
    swaying; then glancing down (the face foreshortened to 55% and dropping), covered from 60% to
    70% of the way; last quarter: turning (foreshortened sideways to 60%)."""
    s = i / n
    roll = 28 * np.sin(2 * np.pi * s) if s < 0.5 else 0.0
    pitch = 1 - 0.45 * np.sin(np.pi * (s - 0.5) / 0.25) ** 2 if 0.5 <= s < 0.75 else 1.0
    yaw = 1 - 0.4 * np.sin(np.pi * (s - 0.75) / 0.25) ** 2 if s >= 0.75 else 1.0
    return roll, pitch, yaw, 0.6 <= s < 0.7, 30 * np.sin(2 * np.pi * s), 40 * (1 - pitch)


def seated_child(i: int, n: int, background: np.ndarray, face_px: int = 140
                 ) -> tuple[np.ndarray, tuple[float, float]]:
    """The astronaut's head in pose ``head_pose(i, n)`` over ``background``; her face's centre."""
    head, s = _head(), face_px / ASTRONAUT_FACE[2]
    fx = fy = 47 + ASTRONAUT_FACE[2] / 2            # the face's centre in _head()
    roll, pitch, yaw, covered, dx, dy = head_pose(i, n)
    cx, cy = 320 + dx, 220 + dy
    rotate = np.vstack([cv2.getRotationMatrix2D((fx, fy), roll, 1.0), [0, 0, 1]])
    squash = np.array([[s * yaw, 0, cx - fx * s * yaw], [0, s * pitch, cy - fy * s * pitch],
                       [0, 0, 1]])
    m = (squash @ rotate)[:2]
    mask = cv2.warpAffine(np.full(head.shape[:2], 255, np.uint8), m, (640, 480))
    frame = np.where(mask[..., None] > 127, cv2.warpAffine(head, m, (640, 480)), background)
    if covered:
        cv2.ellipse(frame, (int(cx), int(cy + 0.3 * face_px * pitch)),
                    (int(0.4 * face_px), int(0.25 * face_px)), 0, 0, 360, (120, 150, 200), -1)
    return frame, (cx, cy)


def on_child(box: Box, centre: tuple[float, float], face_px: int = 140) -> bool:
    bx, by = box.center
    return abs(bx - centre[0]) < 0.5 * face_px and abs(by - centre[1]) < 0.5 * face_px


def test_keeps_the_face_through_tilts_a_glance_down_a_hand_and_a_turn():
    det, n, background = FaceDetector(), 60, clutter()
    found = []
    for i in range(n):
        frame, centre = seated_child(i, n, background)
        found.append((det.track(frame), centre))
    kept = [d for d, c in found if d.box is not None and on_child(d.box, c)]
    assert len(kept) >= 0.9 * n
    assert all(on_child(d.box, c) for d, c in found if d.box is not None)   # no false face
    roll_max = found[n // 4][0]                        # tilted 28 degrees: no frontal find
    assert roll_max.box is not None and roll_max.how == "flow" and not roll_max.frontal
    covered = found[int(0.65 * n)][0]
    assert covered.box is not None and not covered.frontal
    assert found[-1][0].frontal                       # facing the camera again: fit for the mood
    first = next(i for i, (d, _) in enumerate(found) if d.box is not None)
    assert all(d.tracked for d, _ in found[first + 1:])   # followed, never found anew


def test_a_face_in_the_background_never_takes_over_from_the_child():
    background = clutter()
    poster = paste_lfw(background, 3, 90, 520, 30)      # a face on the wall, seen all along
    det, n = FaceDetector(), 60
    assert settle(det, background)[-1].box.iou(poster) > 0.5   # alone, the poster is a face
    det.reset()
    results = []
    for i in range(n):
        frame, centre = seated_child(i, n, background)
        results.append((det.track(frame), centre))
    chosen = [d for d, _ in results if d.box is not None]
    assert len(chosen) >= 0.9 * n
    assert all(d.box.iou(poster) == 0 for d in chosen)
    assert any(len(d.faces) == 2 for d in chosen)     # the poster was seen, and not chosen


def test_no_frame_searches_more_than_twice_the_median_while_a_child_is_followed():
    """Counted, not timed (:attr:`Detection.work`, in full-frame searches, every search included:
    the close look, flow, re-finds, sweep parts, checks at a sweep's end). A seated child
    followed through tilts, a glance down, a hand and a turn (re-finds), beside a face on the
    wall (checked at each sweep's end), and a face drifting on clutter: after the first find,
    no frame searches more than twice the median frame's, and a frontal follow rests."""
    from relaxd.commands.bench import builtin_frames

    background = clutter()
    paste_lfw(background, 3, 90, 520, 30)
    seated = [seated_child(i % 60, 60, background)[0] for i in range(120)]
    for frames in (seated, list(builtin_frames(90))):
        det = FaceDetector()
        found = [det.track(f) for f in frames]
        first = next(i for i, d in enumerate(found) if d.box is not None)
        work = [d.work for d in found[first + 1:]]
        median = float(np.median(work))
        assert max(work) <= 2 * median, (max(work), median)
        assert max(work) <= det.frame_budget()
        assert sum(d.full_search for d in found) >= 2          # the sweep went on
    resting = [d.work for d in found if d.tracked and d.frontal]
    one_part = max(p.share for p in det._sweep.plan)   # resting: the close look and one part
    assert len(resting) >= 80 and max(resting) <= RUN_COST["close"][0] + one_part + 1e-4
    det.reset()
    nobody = [det.track(clutter(seed=i % 3)).work for i in range(24)]   # nothing to follow
    assert max(nobody) <= det.frame_budget(followed=False)
    assert sum(nobody) >= 1.5                         # the whole frame is searched often


def _appears_after(det: FaceDetector, before: list[np.ndarray], frame: np.ndarray,
                   face: Box, limit: int) -> int | None:
    """Frames from ``frame`` (with ``face``) coming into view to ``face`` being among the faces
    found, after the frames ``before``; None if not within ``limit`` frames."""
    for f in before:
        det.track(f)
    for n in range(1, limit + 1):
        if any(b.iou(face) > 0.5 for b in det.track(frame).faces):
            return n
    return None


def test_a_newcomer_is_found_within_the_stated_bound():
    empty, beside = FaceDetector().find_bound(640, 480)
    assert empty <= 18 and beside <= 72              # 1.2 s and 4.8 s at 15 frames a second
    room = clutter()
    seated = room.copy()
    child = paste_astronaut(seated, 130, 300, 230)
    for wait in (0, 5, 11):                            # the sweep at different places
        det = FaceDetector()
        n = _appears_after(det, [room] * wait, seated, child, empty)
        assert n is not None and det.track(seated).box.iou(child) > 0.5, (wait, n)
    both = seated.copy()
    parent = paste_lfw(both, 0, 100, 480, 60)
    for wait in (40, 57):
        det = FaceDetector()
        n = _appears_after(det, [seated] * wait, both, parent, beside)
        assert n is not None, (wait, n)
        d = det.track(both)
        assert d.box.iou(child) > 0.5 and d.tracked   # the child's face is still the one followed


def _lookdown():
    spec = importlib.util.spec_from_file_location("make_lookdown_video",
                                                  Path(__file__).parent / "data" / "make_lookdown_video.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not module.STILL.is_file():
        pytest.skip(f"no shared still at {module.STILL}")
    return module


@pytest.mark.parametrize("down", [(0.69, 0.04), (0.66, 0.02)])
def test_a_face_that_comes_looking_down_is_kept_and_feeds_no_mood_until_a_frontal_find(down):
    """A real face (a still, foreshortened as when looking down) comes into an empty room looking
    down, where the frontal default cascade does not see it and alt2 does, and looks up after
    four seconds. From alt2's sweeps and confirmed over frames it is kept in nine frames of ten
    (the frontal sweeps alone: 78 %), never on anything else, and fit for the mood only once
    the default cascade has found it."""
    clip, det, background = _lookdown(), FaceDetector(), clutter()
    found = []
    for i in range(clip.FRAMES):
        frame, face = clip.lookdown_frame(i, background, down)
        found.append((det.track(frame), face))
    with_face = [(d, f) for d, f in found if f is not None]
    kept = [d for d, f in with_face if d.box is not None and on_child(d.box, _centre(f))]
    assert len(kept) >= 0.88 * len(with_face), len(kept) / len(with_face)
    assert all(f is not None and on_child(d.box, _centre(f)) for d, f in found
               if d.box is not None)                                   # no false face
    first = next(i for i, (d, _) in enumerate(found) if d.box is not None)
    assert first - clip.ARRIVES <= det.looking_down_bound(640, 480)
    proven = next(i for i, (d, _) in enumerate(found) if d.box is not None and not d.unproven)
    assert not any(d.frontal for d, _ in found[:proven])             # no mood before
    assert found[-1][0].frontal and found[-1][0].tracked
    if down == (0.66, 0.02):                        # deeper: alt2 alone finds and keeps it first
        assert proven - first >= 3 and {d.how for d, _ in found[first:proven]} <= {"alt2", "flow"}


def _centre(face: list[int]) -> tuple[float, float]:
    return face[0] + face[2] / 2, face[1] + face[3] / 2


def test_sweeps_to_see_a_face():
    from relaxd.vision.faces import sweeps_to_see

    assert sweeps_to_see((0,), {0, 1}) == 2 and sweeps_to_see((0, 1), {0, 1}) == 2
    assert sweeps_to_see((0, 1), {1}) == 3 and sweeps_to_see((0, 1, 2, 0, 1, 3), {2}) == 7
    assert sweeps_to_see((0, 1), {2}) is None


# --- the shared real clip, against a hand annotation kept with the tests -------------------------

DATA = Path(__file__).parent / "data"
HAMILTON = Path(__file__).resolve().parents[2] / "shared" / "video" / "short_hamilton_clip.mp4"


def _annotated():
    spec = importlib.util.spec_from_file_location("annotated", DATA / "annotated.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not HAMILTON.is_file(), reason=f"no shared clip at {HAMILTON}")
def test_hamilton_clip_against_its_annotation():
    """Stage, close-ups in profile, audience cut-aways: the annotated frames where a face of at
    least 64 px is in view are mostly found, and the chosen box is hardly ever on no face (the
    one tolerated: a box kept by flow alone, which never feeds the mood)."""
    from relaxd.commands.bench import video_frames

    annotation = json.loads((DATA / "hamilton_faces.json").read_text())
    det, lines = FaceDetector(), []
    for n, image in enumerate(video_frames(HAMILTON, None)):
        d = det.track(image)
        box = None if d.box is None else [d.box.x, d.box.y, d.box.w, d.box.h]
        lines.append({"frame": n, "box": box, "frontal": d.frontal})
    counts = _annotated().score(annotation, lines)
    assert counts["annotated"] == len(annotation["frames"]) == 35 and counts["with_face"] == 29
    assert counts["found"] >= 20           # before: 10, as many as a full search of every frame
    assert counts["false"] <= 1
    is_true = _annotated().is_true
    for key, frame in annotation["frames"].items():
        line = lines[int(key)]
        assert not line["frontal"] or is_true(line["box"], frame["faces"])   # mood: never false


@pytest.mark.skipif(not HAMILTON.is_file(), reason=f"no shared clip at {HAMILTON}")
def test_a_face_followed_in_profile_stays_followed_by_the_profile_cascade():
    """A face found in profile is looked for close by the profile cascade in the next frame, at a
    close look's cost: a real performer in profile is found again frame after frame (before, a
    wide look every other frame: 65 % of the frames after a profile find found the face)."""
    from relaxd.commands.bench import video_frames

    det, hows = FaceDetector(), []
    for image in video_frames(HAMILTON, None):
        d = det.track(image)
        hows.append(d.how if d.box is not None else "")
    after = [b for a, b in zip(hows, hows[1:]) if a == "profile"]
    assert len(after) >= 40
    assert sum(h in ("profile", "frontal", "alt2") for h in after) >= 0.85 * len(after)
