"""The body signals' cost per frame (:meth:`BodySignals.update` alone) on real footage.

    PYTHONPATH=. python tools/body_cost.py [--seconds 45] [--profile]

Sources: the Hamilton clip (640x480 as ``relaxd bench`` makes it, the face from relaxd's own
detector), and a clip made by :mod:`relaxd.sim.bodyclip` from each of the Obama and Biden stills
(breathing, pulse, the chair's light and vibration running). Frames are made outside the timed
part; OpenCV runs on one thread, as in the daemon. Prints each source's median and 95th
percentile in milliseconds; ``--profile`` also prints cProfile's busiest functions.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from relaxd.sim.bodyclip import Clip, ClipSpec, padded_still
from relaxd.vision.body.vitals import BodySignals, ChairOutputs, mean_colour
from relaxd.vision.camera import CAMERA_SIZE, VideoFileSource
from relaxd.vision.faces import Box, FaceDetector, one_opencv_thread, to_gray

VIDEO = Path(__file__).resolve().parents[2] / "shared" / "video"
Frame = tuple[float, np.ndarray, Box | None, ChairOutputs]


def video_frames(path: Path) -> Iterator[Frame]:
    """The video's frames at 640x480 with the face relaxd's detector follows (None: no face)."""
    source, detector, n = VideoFileSource(path), FaceDetector(), 0
    try:
        while (frame := source.read()) is not None:
            image = cv2.resize(frame.image, CAMERA_SIZE, interpolation=cv2.INTER_AREA)
            yield n / 30.0, image, detector.track(to_gray(image)).box, ChairOutputs()
            n += 1
    finally:
        source.close()


def still_frames(path: Path, seconds: float) -> Iterator[Frame]:
    """A clip of the still breathing 12 a minute, pulse 70, the chair running at 7 a minute."""
    still = padded_still(path, CAMERA_SIZE)
    detector = FaceDetector()
    for _ in range(12):
        face = detector.track(to_gray(still)).box
    if face is None:
        raise SystemExit(f"no face in {path}")
    spec = ClipSpec(breathing=12, pulse=70, tempo=7.0, seconds=seconds, seed=1)
    for f in Clip(still, face, spec):
        yield f.t, f.image, face, f.chair


def body_costs(frames: Iterator[Frame], profile: cProfile.Profile | None) -> list[float]:
    """Seconds :meth:`BodySignals.update` took on each frame with a face."""
    body, costs = BodySignals(), []
    for t, image, face, chair in frames:
        gray = to_gray(image)
        if face is None:
            body.lost(t)
            continue
        colour = mean_colour(image)
        if profile is not None:
            profile.enable()
        t0 = time.perf_counter()
        body.update(t, gray, face, colour, chair)
        costs.append(time.perf_counter() - t0)
        if profile is not None:
            profile.disable()
    return costs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=45.0, help="length of the stills' clips")
    ap.add_argument("--profile", action="store_true", help="also print cProfile's top functions")
    args = ap.parse_args()
    one_opencv_thread()  # as the daemon and relaxd bench run
    profile = cProfile.Profile() if args.profile else None
    sources = {"hamilton": lambda: video_frames(VIDEO / "short_hamilton_clip.mp4"),
               "obama": lambda: still_frames(VIDEO / "obama.jpg", args.seconds),
               "biden": lambda: still_frames(VIDEO / "biden.jpg", args.seconds)}
    for name, frames in sources.items():
        costs = sorted(body_costs(frames(), profile))
        print(f"{name}: {len(costs)} frames, body median {1000 * statistics.median(costs):.3f} ms,"
              f" p95 {1000 * costs[int(0.95 * len(costs))]:.3f} ms")
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
