"""The body signals' figures on deterministic clips made from a real still (docs/vitals.md).

    PYTHONPATH=. python tools/vitals_figures.py [--still ../shared/video/obama.jpg] [--quick]

Clips are 90 s at 15 fps, 640x480 (relaxd.sim.bodyclip); reports every 5 s from 30 s on. The
face box comes from relaxd's own detector on the still. Prints each goal's figure and the body
signals' cost per frame beside the face detector's on the same frames.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from relaxd.sim.bodyclip import Clip, ClipSpec, padded_still
from relaxd.vision.body.vitals import BodySignals, mean_colour
from relaxd.vision.faces import Box, FaceDetector, to_gray

DEFAULT_STILL = Path(__file__).resolve().parents[2] / "shared" / "video" / "obama.jpg"
REPORT_FROM, REPORT_EVERY = 30.0, 5.0


def face_of(still) -> Box:
    detector = FaceDetector()
    for _ in range(12):
        found = detector.track(to_gray(still))
    assert found.box is not None, "no face in the still"
    return found.box


def run_clip(still, face: Box, spec: ClipSpec, costs: dict[str, list[float]] | None = None):
    """[(t, vitals, true breaths a minute over the window)] every report, and movement by time."""
    clip, body, detector = Clip(still, face, spec), BodySignals(), FaceDetector()
    reports, movement = [], []
    for f in clip:
        gray = to_gray(f.image)
        t0 = time.perf_counter()
        if costs is not None:
            detector.track(gray)
        t1 = time.perf_counter()
        v = body.update(f.t, gray, face, mean_colour(f.image), f.chair)
        t2 = time.perf_counter()
        if costs is not None:
            costs["detect"].append(t1 - t0)
            costs["body"].append(t2 - t1)
        movement.append((f.t, v.movement))
        if f.t >= REPORT_FROM and abs(f.t / REPORT_EVERY - round(f.t / REPORT_EVERY)) < 1e-9:
            truth = (clip.breaths(f.t) - clip.breaths(f.t - 30)) * 2
            reports.append((f.t, v, truth))
    return reports, movement


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--still", type=Path, default=DEFAULT_STILL)
    ap.add_argument("--quick", action="store_true", help="fewer clips")
    args = ap.parse_args()
    still = padded_still(args.still, (640, 480))
    face = face_of(still)
    rates = [(6, 62), (9, 75), (12, 88), (16, 100), (20, 70)][: 2 if args.quick else 5]
    costs: dict[str, list[float]] = {"detect": [], "body": []}
    breathing_ok = breathing_n = pulse_ok = pulse_n = 0
    for i, (b, p) in enumerate(rates):
        for tempo in (None, 7.0, float(b) if b <= 20 else None):
            spec = ClipSpec(breathing=b, pulse=p, tempo=tempo, seed=i)
            reports, _ = run_clip(still, face, spec, costs if i == 0 and tempo else None)
            for _, v, truth in reports:
                breathing_n += 1
                pulse_n += 1
                breathing_ok += v.breathing is not None and abs(v.breathing - truth) <= 2
                pulse_ok += v.pulse is not None and abs(v.pulse - p) <= 6
            print(f"breathing {b}/min pulse {p}/min chair tempo {tempo}: breathing "
                  f"{[None if v.breathing is None else round(v.breathing, 1) for _, v, _ in reports]}"
                  f" pulse {[None if v.pulse is None else round(v.pulse) for _, v, _ in reports]}")
    photo_unknown = photo_n = chair_read = chair_n = 0
    for seed in range(2 if args.quick else 4):
        for spec, kind in ((ClipSpec(seed=10 + seed), "photo"),
                           (ClipSpec(tempo=5.0 + 2 * seed, seed=20 + seed), "chair")):
            reports, _ = run_clip(still, face, spec)
            for _, v, _ in reports:
                if kind == "photo":
                    photo_n += 2
                    photo_unknown += (v.pulse is None) + (v.breathing is None)
                else:
                    chair_n += 1
                    chair_read += v.breathing is not None
    calm = run_clip(still, face, ClipSpec(breathing=12, tempo=7.0, seed=30))[1]
    calm_still = run_clip(still, face, ClipSpec(breathing=12, seed=31))[1]
    fidget_spec = ClipSpec(breathing=12, fidget=((40.0, 50.0), (60.0, 70.0)), seed=32)
    fidget = run_clip(still, face, fidget_spec)[1]
    in_fidget = [m for t, m in fidget if any(a + 2 <= t < b for a, b in fidget_spec.fidget)]
    calm_level = statistics.mean(m for t, m in calm if t >= REPORT_FROM)
    calm_still_level = statistics.mean(m for t, m in calm_still if t >= REPORT_FROM)
    print(f"breathing within 2/min: {breathing_ok} of {breathing_n} "
          f"({breathing_ok / breathing_n:.0%}) [goal >= 80 %]")
    print(f"pulse within 6/min: {pulse_ok} of {pulse_n} ({pulse_ok / pulse_n:.0%}) [goal >= 60 %]")
    print(f"photograph read unknown (breathing and pulse): {photo_unknown} of {photo_n} "
          f"({photo_unknown / photo_n:.0%}) [goal >= 90 %]")
    print(f"chair light and vibration alone read as breathing: {chair_read} of {chair_n} "
          "[goal 0]")
    print(f"movement: fidget {statistics.mean(in_fidget):.3f}, calm under the chair "
          f"{calm_level:.3f}, calm without it {calm_still_level:.3f} "
          f"(ratio {statistics.mean(in_fidget) / max(calm_level, 1e-9):.1f}x) [goal >= 3x]")
    print(f"cost per frame, median: face detector {1000 * statistics.median(costs['detect']):.3f} "
          f"ms, body signals {1000 * statistics.median(costs['body']):.3f} ms "
          f"(p95 {1000 * sorted(costs['body'])[int(0.95 * len(costs['body']))]:.3f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
