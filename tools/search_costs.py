"""What each of the face detector's searches costs, in full-frame searches: the figures behind
:data:`relaxd.vision.facesearch.RUN_COST` and :data:`~relaxd.vision.facesearch.FLOW_COST`.

    PYTHONPATH=. python tools/search_costs.py [--video CLIP] [--frames N]

On each frame with a face (``relaxd bench``'s built-in frames by default: the reference scene,
one face on clutter), times the full search (:meth:`FaceDetector.find_all`), each cascade of
:data:`~relaxd.vision.facesearch.REFIND` looking close to the face and wide around it (as
:meth:`FaceDetector.track` does), and the optical flow from the previous frame; prints each
median as a share of the full search's median beside the figure the detector counts. One
thread, as the detector runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

import numpy as np

from relaxd.commands.bench import builtin_frames, video_frames
from relaxd.vision.faces import FaceDetector, one_opencv_thread, to_gray
from relaxd.vision.facesearch import (
    FLOW_COST,
    REFIND,
    RUN_COST,
    Box,
    SearchFrame,
    flow_box,
    flow_patch,
)


def _timed(fn: Callable[..., object], *args: object) -> float:
    start = time.thread_time()
    fn(*args)
    return time.thread_time() - start


def measure(frames: Iterator[np.ndarray], det: FaceDetector) -> dict[str, list[float]]:
    """Seconds each search took, per frame with a face, keyed "full", "flow", "close k",
    "wide k"."""
    times: dict[str, list[float]] = defaultdict(list)
    previous: tuple[tuple[np.ndarray, tuple[int, int]], Box] | None = None
    for image in frames:
        gray = to_gray(image)
        frame = SearchFrame(gray)
        faces = det.find_all(gray)
        times["full"].append(_timed(det.find_all, gray))
        if not faces:
            previous = None
            continue
        box = faces[0]
        for k, (name, mirrored, _) in enumerate(REFIND):
            cascade = det.cascade_path if k == 0 else name
            for kind, region in (("close", det.close_region(box)), ("wide", det.wide_region(box))):
                times[f"{kind} {k}"].append(_timed(
                    det.cascades.search, frame, region, cascade, mirrored))
        if previous is not None:
            (patch, origin), before = previous
            times["flow"].append(_timed(flow_box, patch, gray, before, origin))
        kept = flow_patch(gray, box)
        previous = None if kept is None else (kept, box)
    return times


def report(times: dict[str, list[float]]) -> list[str]:
    """One line per search: its median milliseconds, its share of the full search, the share
    the detector counts."""
    full = statistics.median(times["full"])
    lines = [f"full search  {1000 * full:7.3f} ms  (1)"]
    stated = {"flow": FLOW_COST, **{f"{kind} {k}": RUN_COST[kind][k]
                                    for kind in RUN_COST for k in range(len(REFIND))}}
    for key, counted in stated.items():
        if times.get(key):
            median = statistics.median(times[key])
            lines.append(f"{key:11s}  {1000 * median:7.3f} ms  {median / full:.3f} "
                         f"(counted {counted:.3f})")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--video", help="a clip instead of the built-in frames")
    p.add_argument("--frames", type=int, default=60, help="frames to measure (default 60)")
    args = p.parse_args(argv)
    one_opencv_thread()
    frames = (video_frames(args.video, args.frames) if args.video
              else builtin_frames(args.frames))
    print("\n".join(report(measure(frames, FaceDetector()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
