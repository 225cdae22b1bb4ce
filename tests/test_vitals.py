"""The body signals on deterministic clips made in memory from a real still (a chest rising
and falling at a known rate, a faint pulse tint, the chair's light and vibration, fidgeting,
a photograph); time comes from the frames. The full figures: tools/vitals_figures.py."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from relaxd.sim.bodyclip import Clip, ClipSpec, padded_still
from relaxd.vision.body.profiles import Profiles, Reference, normalised
from relaxd.vision.body.regions import place
from relaxd.vision.body.vitals import BodySignals, ChairOutputs, Vitals, mean_colour
from relaxd.vision.camera import Frame, mean_rgb
from relaxd.vision.faces import Box, to_gray

STILL = Path(__file__).resolve().parents[2] / "shared" / "video" / "obama.jpg"
FACE = Box(270, 36, 141, 141)  # relaxd's detector on the padded still

needs_still = pytest.mark.skipif(not STILL.exists(), reason=f"{STILL} (shared video) absent")


def play(spec: ClipSpec) -> tuple[Vitals, list[float], Clip]:
    """The vitals after the clip, the movement each frame, and the clip."""
    clip, body = Clip(padded_still(STILL, spec.size), FACE, spec), BodySignals()
    movement = []
    for f in clip:
        v = body.update(f.t, to_gray(f.image), FACE, mean_colour(f.image), f.chair)
        movement.append(v.movement)
    return v, movement, clip


@needs_still
def test_breathing_and_pulse_are_read_under_the_chairs_light_and_vibration():
    v, _, clip = play(ClipSpec(breathing=10, pulse=84, tempo=6, seconds=34))
    truth = (clip.breaths(34) - clip.breaths(4)) * 2
    assert v.breathing is not None and abs(v.breathing - truth) <= 2, v
    assert v.pulse is not None and abs(v.pulse - 84) <= 6, v
    assert v.breathing_quality > 0.45 and v.pulse_quality > 0.4


@needs_still
def test_the_chairs_light_and_vibration_alone_are_never_read_as_breathing():
    v, _, _ = play(ClipSpec(tempo=7, seconds=34, seed=3))
    assert v.breathing is None and v.why, v


@needs_still
def test_a_photograph_has_neither_breathing_nor_pulse():
    v, _, _ = play(ClipSpec(seconds=34, seed=5))
    assert v.breathing is None and v.pulse is None, v


@needs_still
def test_fidgeting_reads_far_above_a_calm_childs_restlessness():
    _, calm, _ = play(ClipSpec(breathing=12, tempo=7, seconds=12, seed=1))
    _, fidget, _ = play(ClipSpec(breathing=12, fidget=((4.0, 12.0),), seconds=12, seed=2))
    assert np.mean(fidget[-60:]) >= 3 * np.mean(calm[-60:]) and np.mean(fidget[-60:]) > 0.6


def test_the_chest_out_of_the_cameras_view_is_said():
    assert place(Box(270, 36, 141, 141), 640, 480).chest is not None
    assert place(Box(270, 300, 141, 141), 640, 480).chest is None  # the face low in the frame


def test_a_regions_colour_from_the_yuv420_buffer_matches_the_colour_frame():
    """Only the region's planes are read from the Pi camera's buffer."""
    rng = np.random.default_rng(0)
    bgr = cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), (31, 31), 0)
    bgr[100:200, 300:400] = (40, 120, 200)
    yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    for box in (Box(300, 100, 100, 100), Box(10, 10, 200, 100)):
        got = mean_rgb(Frame(yuv[:480], yuv420=yuv), box)
        want = mean_rgb(Frame(bgr), box)
        assert got is not None and want is not None
        assert np.allclose(got, want, atol=1.5), (got, want)
    assert mean_rgb(Frame(yuv[:480]), Box(0, 0, 10, 10)) is None  # gray, no buffer: no colour


def test_a_vitals_event_has_the_documented_fields():
    e = Vitals(12.34, None, 0.12345, 0.8, 0.1).event()
    assert e == {"breathing": 12.3, "pulse": None, "movement": 0.123,
                 "quality": {"breathing": 0.8, "pulse": 0.1}}


def test_no_frame_computes_both_rates():
    """The breathing's and the pulse's spectral estimates take turns, half a second apart: the
    once-a-second work is spread over two frames."""
    body, calls = BodySignals(), []
    for meter in (body.breathing, body.pulse):
        original = meter.estimate
        meter.estimate = lambda original=original, meter=meter: (calls.append((t, meter)),
                                                                  original())[1]
    gray = np.full((480, 640), 128, np.uint8)
    colour = mean_colour(np.full((480, 640, 3), 128, np.uint8))
    for n in range(15 * 4):
        t = n / 15
        body.update(t, gray, FACE, colour, ChairOutputs())
    times = [t for t, _ in calls]
    assert len(times) == len(set(times)) == 8
    assert [m for _, m in calls] == [body.breathing, body.pulse] * 4


def test_a_regions_profiles_are_its_rows_and_columns_means_made_once():
    gray = np.random.default_rng(1).integers(0, 256, (120, 160), dtype=np.uint8)
    box, frame = Box(30, 20, 70, 50), Profiles(gray)
    crop = gray[20:70, 30:100].astype(np.float64)
    assert np.allclose(frame.rows(box), normalised(crop.sum(axis=1), 70))
    assert np.allclose(frame.columns(box), normalised(crop.sum(axis=0), 50))
    assert len(frame.rows(box)) == 50 - 6 and len(frame.columns(box)) == 70 - 6
    assert frame.rows(box) is frame.rows(box)  # the breathing and movement meters share it


def test_a_profile_moved_a_known_distance_is_found_that_far_from_its_reference():
    """Sub-pixel, either way: a textured region whose picture moved down by a fraction of a row
    (new rows coming into view) is matched to within 0.05 row."""
    texture = cv2.GaussianBlur(np.random.default_rng(0).normal(0, 50, (400, 1)), (0, 0), 3)[:, 0]
    seen = lambda moved: np.interp(np.arange(100, 200) - moved, np.arange(400.0), texture)  # noqa: E731
    reference = Reference(normalised(seen(0.0), 1))
    for moved in (-4.6, -1.0, 0.0, 0.3, 2.5, 5.2):
        assert abs(reference.shift(normalised(seen(moved), 1)) - moved) < 0.05, moved
