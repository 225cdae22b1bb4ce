"""VisionInput: a real frame through the Haar detector, the shipped model and mood smoothing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from skimage import data as skimage_data

from relaxd.camera import ImageFolderSource
from relaxd.emotion import EmotionClassifier
from relaxd.faces import FaceDetector, crop_face, to_gray
from relaxd.inputs import VisionInput
from relaxd.labels import EMOTIONS
from relaxd.mood import MoodSettings, MoodSmoother
from relaxd.paths import default_model


def test_every_other_face_is_classified_mirrored(tmp_path: Path):
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[:, 80:560] = cv2.resize(cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR), (480, 480))
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"{i}.png"), frame)
    classifier = EmotionClassifier(default_model())
    vision = VisionInput(ImageFolderSource(tmp_path), FaceDetector(), classifier,
                         MoodSmoother(MoodSettings()))
    sensed = [vision.read(t) for t in (0.0, 0.1, 0.2, 0.3)]
    assert vision.read(0.4) is None
    assert all(s.face is not None for s in sensed)
    gray = to_gray(frame)
    for i, s in enumerate(sensed):
        face = crop_face(gray, s.face)
        probs = classifier.classify(face[:, ::-1].copy() if i % 2 == 0 else face)
        assert s.emotion == EMOTIONS[int(np.argmax(probs))]
        assert s.emotion_confidence == probs.max()
    face = crop_face(gray, sensed[0].face)
    assert not np.allclose(classifier.classify(face[:, ::-1].copy()), classifier.classify(face))
