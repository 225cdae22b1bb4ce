"""VisionInput: a real frame through the Haar detector, the shipped model and mood smoothing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from skimage import data as skimage_data

from relaxd.core.labels import EMOTIONS, Mood
from relaxd.core.paths import default_model
from relaxd.vision.camera import ImageFolderSource
from relaxd.vision.emotion import EmotionClassifier
from relaxd.vision.faces import Box, Detection, FaceDetector, crop_face, to_gray
from relaxd.vision.inputs import VisionInput
from relaxd.vision.mood import MoodSmoother
from relaxd.vision.settings import MoodSettings


def test_every_other_face_is_classified_mirrored(tmp_path: Path):
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[:, 80:560] = cv2.resize(cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR), (480, 480))
    detector = FaceDetector()
    frames = detector.find_bound(640, 480)[0] + 6   # found within the bound, then followed
    for i in range(frames):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), frame)
    classifier = EmotionClassifier(default_model())
    vision = VisionInput(ImageFolderSource(tmp_path), detector, classifier,
                         MoodSmoother(MoodSettings()))
    sensed = [vision.read(t / 10) for t in range(frames)]
    assert vision.read(frames / 10) is None
    # the detector spreads its search over frames: once found, the face is kept in every frame
    first = next(i for i, s in enumerate(sensed) if s.face is not None)
    assert all(s.face is not None for s in sensed[first:])
    sensed = [s for s in sensed if s.emotion]   # the frontal finds (not the first, from a sweep)
    assert len(sensed) >= 4
    gray = to_gray(frame)
    for i, s in enumerate(sensed):
        face = crop_face(gray, s.face)
        probs = classifier.classify(face[:, ::-1].copy() if i % 2 == 0 else face)
        assert s.emotion == EMOTIONS[int(np.argmax(probs))]
        assert s.emotion_confidence == probs.max()
    face = crop_face(gray, sensed[0].face)
    assert not np.allclose(classifier.classify(face[:, ::-1].copy()), classifier.classify(face))


class OneDetection:
    """A detector stub returning a fixed Detection."""

    def __init__(self, detection: Detection):
        self.detection = detection

    def track(self, gray):
        return self.detection


class Unused:
    def classify(self, face):
        raise AssertionError("a face unfit for the mood must not be classified")


def test_a_turned_or_followed_face_keeps_the_child_present_but_holds_the_mood(tmp_path: Path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.zeros((48, 64), np.uint8))
    box = Box(10, 10, 30, 30)
    settings = MoodSettings(no_face_timeout_s=1.0)
    for how in ("profile", "flow"):
        detection = Detection(box, (box,), 0, True, False, "tracked", how)
        vision = VisionInput(ImageFolderSource(tmp_path), OneDetection(detection), Unused(),
                             MoodSmoother(settings))
        sensed = [vision.read(t) for t in (0.0, 5.0, 10.0)]
        assert all(s.face == box and s.emotion is None for s in sensed)
        assert all(s.reading.mood is Mood.NEUTRAL and s.reading.face for s in sensed)
    nobody = Detection(None, (), None, False, True, "")
    vision = VisionInput(ImageFolderSource(tmp_path), OneDetection(nobody), Unused(),
                         MoodSmoother(settings))
    assert [vision.read(t).reading.mood for t in (0.0, 5.0)] == [Mood.NEUTRAL, Mood.NO_FACE]
