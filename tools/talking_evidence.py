"""Evidence for the talking-mouth handling (relaxd.vision.consensus), built from still FER2013 faces.

FER2013 has no motion, so each val face becomes a 2 s sequence at 10 fps: still for 0.5 s, then
for 1 s its mouth region opens and closes like speech (a dark ellipse at the mouth whose height
follows a 4 Hz syllable rhythm, the lips around it pushed apart), then still again. Every frame
is classified as the chair does (every other one mirrored, the calibrated decision); we count
the talking frames' decisions read negative: frame by frame, through the consensus without
mouth weights, and through the consensus with them (relaxd's live path).

    python tools/talking_evidence.py --data ../shared/fer2013 --per-class 300
"""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np

from relaxd.commands.evaluate import load_folder
from relaxd.core.labels import MOOD_INDEX, mood_probs
from relaxd.core.paths import default_model
from relaxd.vision.calibration import NEG, load_calibration
from relaxd.vision.consensus import Consensus, TalkFilter
from relaxd.vision.emotion import EmotionClassifier

FPS, STILL, TALK = 10, 5, 10


def talking_frames(face: np.ndarray) -> list[np.ndarray]:
    """The face with its mouth opening and closing (4 Hz) in frames STILL..STILL+TALK."""
    frames = []
    for i in range(2 * STILL + TALK):
        img = face.copy()
        if STILL <= i < STILL + TALK:
            opening = abs(np.sin(np.pi * 4 * (i - STILL) / FPS))
            h = int(round(1 + 5 * opening))
            cv2.ellipse(img, (24, 38), (7, h), 0, 0, 360, int(img[36:40, 18:30].min() * 0.4), -1)
        frames.append(img)
    return frames


def run(data: str, per_class: int) -> dict:
    clf = EmotionClassifier(default_model(), num_threads=2)
    cal = load_calibration(default_model())
    val = load_folder(f"{data}/val")
    moods = MOOD_INDEX[val.labels]
    out = {}
    for name, mood in (("neutral", 1), ("negative", 0)):
        idx = np.flatnonzero(moods == mood)[:per_class]
        counts = {"frame": 0, "consensus": 0, "consensus_weighted": 0, "still_frame": 0}
        n_talk = n_still = 0
        for k in idx:
            seq = talking_frames(val.images[k])
            batch = np.stack([f[:, ::-1] if i % 2 else f for i, f in enumerate(seq)])
            probs = cal.apply(mood_probs(clf.classify_batch(batch)))
            plain, talk = Consensus(), TalkFilter()
            for i, (f, p) in enumerate(zip(seq, probs)):
                t = i / FPS
                a, b = plain.update(t, p), talk.update(t, f, p)
                if STILL <= i < STILL + TALK:
                    n_talk += 1
                    counts["frame"] += int(np.argmax(p) == NEG)
                    counts["consensus"] += int(np.argmax(a) == NEG)
                    counts["consensus_weighted"] += int(np.argmax(b) == NEG)
                elif i < STILL:
                    n_still += 1
                    counts["still_frame"] += int(np.argmax(p) == NEG)
        out[name] = {k: v / (n_still if k == "still_frame" else n_talk) for k, v in counts.items()}
        out[name]["faces"] = len(idx)
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/fer2013")
    p.add_argument("--per-class", type=int, default=300)
    args = p.parse_args()
    print(json.dumps(run(args.data, args.per_class), indent=1))
