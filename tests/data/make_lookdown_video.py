"""Write ``lookdown.mp4`` and its annotation: a real face (``../shared/video/obama.jpg``) that
comes into an empty room already looking down, stays so for a while, then looks up at the
camera (``tests/test_faces.py`` uses :func:`lookdown_frame` directly).

640x480, 15 fps, :data:`FRAMES` frames: the room alone for one second; then the head, its face
``FACE_PX`` wide, looking down (the face foreshortened to 65-73 % of its height and dropped, as
the chin goes down, swaying a little) for four seconds; it looks up over one second and faces
the camera for the last three. The annotation (the format of ``hamilton_faces.json``) holds the
face in every frame it is in, so that

    python tests/data/make_lookdown_video.py /tmp/lookdown.mp4
    relaxd bench --video /tmp/lookdown.mp4 --faces /tmp/lookdown.jsonl
    python tests/data/annotated.py /tmp/lookdown.json /tmp/lookdown.jsonl

gives the face rate and the false faces on it.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_faces import clutter  # noqa: E402

STILL = Path(__file__).resolve().parents[3] / "shared" / "video" / "obama.jpg"
STILL_FACE = (342, 95, 300, 300)  # the frontal default cascade's box in the still
FRAMES, FPS, FACE_PX = 135, 15, 140
ARRIVES, LOOKS_UP, FACING = FPS, 5 * FPS, 6 * FPS
#: Looking down: the face's height over its width, and how far it sways about that.
DOWN = (0.69, 0.04)


@cache
def _head() -> tuple[np.ndarray, tuple[float, float]]:
    """The still cut around the head, and the face's centre in the cut."""
    image = cv2.imread(str(STILL))
    if image is None:
        raise FileNotFoundError(STILL)
    x, y, w, h = STILL_FACE
    x0 = x - w // 2
    return image[0:y + 2 * h, x0:x + w + w // 2], (x - x0 + w / 2, y + h / 2)


def pitch_at(i: int, down: tuple[float, float] = DOWN) -> float:
    """The face's height over its width in frame ``i``: looking down, then up."""
    if i < LOOKS_UP:
        return down[0] + down[1] * np.sin(2 * np.pi * i / (2 * FPS))
    return down[0] + (1 - down[0]) * min(1.0, (i - LOOKS_UP) / (FACING - LOOKS_UP))


def lookdown_frame(i: int, background: np.ndarray, down: tuple[float, float] = DOWN
                   ) -> tuple[np.ndarray, list[int] | None]:
    """Frame ``i``: the room, with the head from :data:`ARRIVES` on, looking down as ``down``
    says (see :data:`DOWN`); the face's box or None."""
    if i < ARRIVES:
        return background.copy(), None
    head, (fx, fy) = _head()
    pitch, s = pitch_at(i, down), FACE_PX / STILL_FACE[2]
    cx = 320 + 20 * np.sin(2 * np.pi * i / (3 * FPS))
    cy = 220 + 0.4 * FACE_PX * (1 - pitch)
    m = np.array([[s, 0, cx - fx * s], [0, s * pitch, cy - fy * s * pitch]])
    mask = cv2.warpAffine(np.full(head.shape[:2], 255, np.uint8), m, (640, 480))
    frame = np.where(mask[..., None] > 127, cv2.warpAffine(head, m, (640, 480)), background)
    h = FACE_PX * pitch
    return frame, [round(cx - FACE_PX / 2), round(cy - h / 2), FACE_PX, round(h)]


def main(path: str) -> None:
    background = clutter()
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), FPS, (640, 480))
    faces = {}
    for n in range(FRAMES):
        frame, box = lookdown_frame(n, background)
        writer.write(frame)
        faces[str(n)] = {"faces": [] if box is None else [box]}
    writer.release()
    annotation = {"clip": Path(path).name, "size": [640, 480], "frames": faces,
                  "note": "made by tests/data/make_lookdown_video.py: the face, every frame"}
    Path(path).with_suffix(".json").write_text(json.dumps(annotation))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "lookdown.mp4")
