"""Median single-face inference time of an emotion model: ``python tools/bench_emotion.py [MODEL]``.

Times ``EmotionClassifier.classify`` (LUT quantization + invoke + dequantize) on random faces,
after a warm-up, with the given number of threads (default 1, as on the chair).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from relaxd.core.paths import default_model
from relaxd.vision.emotion import DELEGATES, EmotionClassifier


def latency_ms(model: str | Path, runs: int = 500, num_threads: int = 1,
               delegate: str = "none") -> dict[str, float | str]:
    """Median and 90th-percentile milliseconds per ``classify`` call, and the runtime timed."""
    clf = EmotionClassifier(model, num_threads=num_threads, delegate=delegate)
    faces = np.random.default_rng(0).integers(0, 256, (16, clf.input_size, clf.input_size),
                                              dtype=np.uint8)
    for face in faces:
        clf.classify(face)
    times = np.empty(runs)
    for i in range(runs):
        t = time.perf_counter()
        clf.classify(faces[i % len(faces)])
        times[i] = time.perf_counter() - t
    return {"median_ms": float(np.median(times) * 1e3),
            "p90_ms": float(np.percentile(times, 90) * 1e3), "runtime": clf.runtime}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", type=Path, default=default_model())
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--delegate", choices=DELEGATES, default="none",
                   help="none: the built-in kernels, as on the Pi (default); xnnpack; auto")
    args = p.parse_args(argv)
    r = latency_ms(args.model, args.runs, args.threads, args.delegate)
    print(f"{args.model}: median {r['median_ms']:.3f} ms, p90 {r['p90_ms']:.3f} ms "
          f"({args.threads} thread(s), {args.runs} runs, {r['runtime']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
