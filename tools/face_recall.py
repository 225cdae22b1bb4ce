"""How often the full-frame search finds a real face of each size, and how many faces it finds
where there are none: FER2013 validation faces pasted on cluttered scenes.

    PYTHONPATH=. python tools/face_recall.py [--fer ../shared/fer2013] [--faces 300]

Each face (every k-th of the validation images, so all classes come) is enlarged to 64, 72, 84,
100 and 130 pixels (the detector's smallest face at 640x480 is 64) and pasted at a random place
on one of five cluttered 640x480 scenes (``relaxd bench``'s). A face counts as found when a box
overlaps it by IoU > 0.4; a box overlapping it by 0.1 or less is a false face. FER2013's faces
are cropped tight, so the cascade misses many at any size: compare runs, not the rates
themselves.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from relaxd.commands.bench import cluttered_background
from relaxd.vision.faces import Box, FaceDetector, one_opencv_thread, to_gray

SIZES = (64, 72, 84, 100, 130)
DEFAULT_FER = Path(__file__).resolve().parents[2] / "shared" / "fer2013"


def recall(files: list[Path], sizes: tuple[int, ...] = SIZES, seed: int = 1
           ) -> tuple[dict[int, float], int]:
    """The share of ``files``' faces found at each size, and the false faces over all."""
    rng = np.random.default_rng(seed)
    scenes = [to_gray(cluttered_background(np.random.default_rng(i))) for i in range(5)]
    det, found, false = FaceDetector(), dict.fromkeys(sizes, 0), 0
    for size in sizes:
        for i, path in enumerate(files):
            face = cv2.resize(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), (size, size),
                              interpolation=cv2.INTER_LINEAR)
            frame = scenes[i % len(scenes)].copy()
            x = int(rng.integers(20, frame.shape[1] - size - 20))
            y = int(rng.integers(20, frame.shape[0] - size - 20))
            frame[y:y + size, x:x + size] = face
            boxes, truth = det.find_all(frame), Box(x, y, size, size)
            found[size] += any(b.iou(truth) > 0.4 for b in boxes)
            false += sum(b.iou(truth) <= 0.1 for b in boxes)
    return {s: round(n / max(len(files), 1), 3) for s, n in found.items()}, false


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fer", type=Path, default=DEFAULT_FER, help="FER2013 in the Kaggle layout")
    p.add_argument("--faces", type=int, default=300, help="faces per size (default 300)")
    args = p.parse_args(argv)
    files = sorted((args.fer / "val").glob("*/*.jpg"))
    if not files:
        print(f"relaxd: no FER2013 validation images under {args.fer / 'val'}", file=sys.stderr)
        return 2
    one_opencv_thread()
    chosen = files[::max(1, len(files) // args.faces)][:args.faces]
    rates, false = recall(chosen)
    print(json.dumps({"faces": len(chosen), "found": rates, "false_faces": false}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
