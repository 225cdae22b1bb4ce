"""Write ``tilt.mp4`` and its annotation: the seated astronaut tilting, glancing down, covering her
mouth and turning (``tests/test_faces.py``'s ``seated_child``), for ``relaxd bench --video``.

640x480, 15 fps, 60 frames repeated ``--loops`` times (default 3, 12 s); the annotation (the same
format as ``hamilton_faces.json``) holds her face in every frame, so that

    python tests/data/make_tilt_video.py /tmp/tilt.mp4
    relaxd bench --video /tmp/tilt.mp4 --faces /tmp/tilt.jsonl
    python tests/data/annotated.py /tmp/tilt.json /tmp/tilt.jsonl

gives the face rate and the false faces on it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_faces import clutter, head_pose, seated_child  # noqa: E402

FRAMES, FACE_PX = 60, 140


def main(path: str, loops: int = 3) -> None:
    background = clutter()
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 15, (640, 480))
    faces = {}
    for n in range(FRAMES * loops):
        frame, (cx, cy) = seated_child(n % FRAMES, FRAMES, background, FACE_PX)
        writer.write(frame)
        _, pitch, yaw, _, _, _ = head_pose(n % FRAMES, FRAMES)
        w, h = FACE_PX * yaw, FACE_PX * pitch
        faces[str(n)] = {"faces": [[round(cx - w / 2), round(cy - h / 2), round(w), round(h)]]}
    writer.release()
    annotation = {"clip": Path(path).name, "size": [640, 480], "frames": faces,
                  "note": "made by tests/data/make_tilt_video.py: the astronaut's face, every frame"}
    Path(path).with_suffix(".json").write_text(json.dumps(annotation))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", default="tilt.mp4",
                        help="the video to write (its annotation beside it, .json)")
    parser.add_argument("loops", nargs="?", type=int, default=3,
                        help="how many times the 60 frames repeat (default 3)")
    args = parser.parse_args()
    main(args.out, args.loops)
