"""Write ``seated.mp4``: a child-like seated frontal face for ``relaxd bench --video``.

640x480, 15 fps, 12 s: scikit-image's astronaut (public domain) in front of its rocket photo,
drifting, leaning in and back (face 100..170 px wide), tilting a few degrees, under slowly
changing light and sensor noise; from 5 s to 10 s a second, smaller face (from skimage's
lfw_subset) looks in from the side. Every frame shows the seated face.

    python tests/data/make_seated_video.py [OUT.mp4]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from skimage import data

SIZE = (640, 480)
FPS = 15
FRAMES = 180
FACE = (177, 66, 95, 95)  # the astronaut's Haar face box


def frames() -> Iterator[np.ndarray]:
    """The video's BGR frames, one at a time."""
    rng = np.random.default_rng(4)
    width, height = SIZE
    bg = cv2.resize(cv2.cvtColor(data.rocket(), cv2.COLOR_RGB2BGR), SIZE, interpolation=cv2.INTER_AREA)
    person = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[10:330, 105:395]
    fx, fy = FACE[0] - 105 + FACE[2] / 2, FACE[1] - 10 + FACE[3] / 2   # face centre in `person`
    parent = cv2.cvtColor((data.lfw_subset()[3] * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    for i in range(FRAMES):
        s = i / FRAMES
        face_px = 100 + 70 * np.sin(np.pi * s) ** 2           # leans in, then back
        scale = face_px / FACE[2]
        angle = 5 * np.sin(2 * np.pi * 3 * s)
        cx = width / 2 + 60 * np.sin(2 * np.pi * 2 * s)
        cy = height * 0.42 + 15 * np.sin(2 * np.pi * 5 * s)
        m = cv2.getRotationMatrix2D((fx, fy), angle, scale)
        m[:, 2] += (cx - fx, cy - fy)
        mask = cv2.warpAffine(np.full(person.shape[:2], 255, np.uint8), m, SIZE)
        warped = cv2.warpAffine(person, m, SIZE)
        frame = np.where(mask[..., None] > 127, warped, bg)
        if 75 <= i < 150:
            side = 90
            face = cv2.resize(parent, (side, side), interpolation=cv2.INTER_CUBIC)
            x = int(width - side - 20 - 40 * np.sin(np.pi * (i - 75) / 75))
            frame[40:40 + side, x:x + side] = face
        gain = 0.5 + 0.7 * (0.5 + 0.5 * np.sin(2 * np.pi * 1.5 * s))
        frame = frame.astype(np.float32) * gain + rng.normal(0, 1.5, frame.shape)
        frame = cv2.GaussianBlur(np.clip(frame, 0, 255).astype(np.uint8), (3, 3), 0)
        yield frame


def main(path: str) -> None:
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    for frame in frames():
        writer.write(frame)
    writer.release()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).with_name("seated.mp4")))
