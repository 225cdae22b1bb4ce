"""Score a ``relaxd bench --faces`` file against a hand annotation (``hamilton_faces.json``).

    python tests/data/annotated.py tests/data/hamilton_faces.json faces.jsonl

A frame "has a face" when some annotated face is at least 64 px wide (the detector's smallest at
640x480) with three quarters of it inside the frame. A chosen box is false when its centre lies
in no annotated face of about its size (0.5-2x as wide).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def inside(face: list[int], width: int, height: int) -> float:
    x, y, w, h = face
    iw = min(x + w, width) - max(x, 0)
    ih = min(y + h, height) - max(y, 0)
    return max(iw, 0) * max(ih, 0) / (w * h)


def is_true(box: list[int], faces: list[list[int]]) -> bool:
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    return any(x <= cx <= x + w and y <= cy <= y + h and 0.5 * w <= box[2] <= 2 * w
               for x, y, w, h in faces)


def score(annotation: dict, lines: list[dict]) -> dict[str, int]:
    """Counts over the annotated frames: with a face, of those found, chosen boxes, false ones."""
    width, height = annotation["size"]
    by_frame = {line["frame"]: line for line in lines}
    counts = {"annotated": 0, "with_face": 0, "found": 0, "chosen": 0, "false": 0}
    for key, frame in annotation["frames"].items():
        line = by_frame.get(int(key))
        if line is None:
            continue
        counts["annotated"] += 1
        faces = frame["faces"]
        findable = any(f[2] >= 64 and inside(f, width, height) >= 0.75 for f in faces)
        counts["with_face"] += findable
        box = line["box"]
        if box is not None:
            counts["chosen"] += 1
            ok = is_true(box, faces)
            counts["false"] += not ok
            counts["found"] += findable and ok
    return counts


def main(annotation_path: str, faces_path: str) -> None:
    annotation = json.loads(Path(annotation_path).read_text())
    lines = [json.loads(x) for x in Path(faces_path).read_text().splitlines() if x.strip()]
    print(json.dumps(score(annotation, lines)))


if __name__ == "__main__":
    main(*sys.argv[1:3])
