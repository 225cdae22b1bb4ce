"""What the loop reads each tick: a mood sensed from camera frames, or one from a mood script.

:class:`VisionInput` runs the sensing half (frame -> face -> emotion -> smoothed mood);
:class:`ScriptInput` replays a therapist's mood script (for rehearsing scenarios) and presses the
e-stop where the script says so. Both return a :class:`Sensed` per tick, or None once ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from relaxd.control.controller import MoodSample, Reading
from relaxd.control.scenario import ScriptEntry
from relaxd.core.labels import EMOTIONS, Mood, mood_probs
from relaxd.vision.body.vitals import BodySignals, ChairOutputs, Vitals
from relaxd.vision.calibration import MoodCalibration
from relaxd.vision.camera import Frame, FrameFeed, NoInput, mean_rgb, tell_face_exposure
from relaxd.vision.consensus import TalkFilter
from relaxd.vision.emotion import EmotionClassifier
from relaxd.vision.faces import Box, FaceDetector, crop_face, to_gray
from relaxd.vision.mood import MoodSmoother


@dataclass(frozen=True)
class Sensed:
    """One tick's input: the smoothed ``reading``; the face, its emotion and its confidence when
    a frame was analysed, with how many faces were seen and the rule that chose the child's;
    ``no_input`` with a reason while the camera is down."""

    reading: Reading
    face: Box | None = None
    faces_seen: int = 0
    rule: str = ""
    emotion: str | None = None
    emotion_confidence: float = 0.0
    no_input: str | None = None
    #: The body's responses (breathing, pulse, restlessness) once their first window is full,
    #: while the child is seen; None otherwise.
    vitals: Vitals | None = None
    #: The chest region is in the camera's view, below the child's face (None: no face, or
    #: no body signals read).
    chest_seen: bool | None = None


def hand_over(input: object, outputs: ChairOutputs) -> None:
    """The chair's outputs as driven, to an input that reads body signals (its ``chair``);
    inputs without them, such as a test's stand-in, need not take them."""
    take = getattr(input, "chair", None)
    if take is not None:
        take(outputs)


def face_luma(gray: np.ndarray, box: Box) -> float:
    """The mean luma of the face's middle (its skin, not the hair or background at its box's
    edges)."""
    x, y, w, h = box.x + box.w // 4, box.y + box.h // 4, box.w // 2, box.h // 2
    return float(gray[y:y + h, x:x + w].mean())


def seen_by_caregiver(input: object, t: float, actions: Sequence[str]) -> list[str]:
    """What a simulated caregiver marks at the station after the chair's ``actions`` at ``t``
    (observations: ``upset``, ``misread``); [] for inputs without one (every real one)."""
    see = getattr(input, "caregiver_sees", None)
    return list(see(t, actions)) if see is not None else []


class Input(Protocol):
    #: A script stands in for the child (and the caregiver's hands): the session may end with it.
    scripted: bool

    @property
    def exhausted(self) -> bool:
        """Nothing more will come (a script that has played its last entry)."""

    def read(self, t: float) -> Sensed | None:
        """This tick's input at session time ``t``; None once the input has ended."""

    def chair(self, outputs: ChairOutputs) -> None:
        """The chair's outputs as last driven (plain numbers, handed over by the loop), which
        the body signals tell the child's own breathing and pulse apart from."""

    def close(self) -> None: ...


class VisionInput:
    """Frames from ``source`` through face detection, the emotion model and mood smoothing.

    Every other face is classified mirrored, so the smoothed mood averages both views of the
    face: on FER2013 val, averaging a face's two views gains about a point of accuracy (test-time
    flip averaging) without a second inference per frame. Only faces a frontal cascade found
    are classified (the model was trained on frontal faces and misreads turned ones); a face
    seen only in profile or followed by flow keeps the child present and holds the mood.

    With ``body`` (:class:`relaxd.vision.body.vitals.BodySignals`), every frame with the child's
    face also feeds the body signals, read against the chair's outputs handed over by
    :meth:`chair`; each :class:`Sensed` then carries the vitals once their window is full.
    """

    def __init__(self, source: FrameFeed, detector: FaceDetector,
                 classifier: EmotionClassifier, smoother: MoodSmoother,
                 calibration: MoodCalibration | None = None, baseline: Any = None,
                 body: BodySignals | None = None) -> None:
        self.source, self.detector, self.classifier, self.smoother = (
            source, detector, classifier, smoother)
        self.calibration = calibration or MoodCalibration()  # relaxd.vision.calibration
        self.baseline = baseline  # relaxd.vision.baseline.Baseline: the child's resting face
        self.talk = TalkFilter()  # relaxd.vision.consensus: speech and fleeting expressions
        self._mirror = False
        self.body = body
        self._chair = ChairOutputs()

    scripted = False
    exhausted = False

    def chair(self, outputs: ChairOutputs) -> None:
        self._chair = outputs

    def read(self, t: float) -> Sensed | None:
        frame: Frame | NoInput | None = self.source.read()
        if frame is None:
            return None
        if isinstance(frame, NoInput):
            return Sensed(self.smoother.update(t, None), no_input=frame.reason)
        gray = to_gray(frame.image)
        found = self.detector.track(gray)
        tell_face_exposure(self.source, t, None if found.box is None else face_luma(gray, found.box))
        if found.box is None:
            self.talk.lost()
            if self.body is not None:
                self.body.lost(t)
            return Sensed(self.smoother.update(t, None), faces_seen=len(found.faces))
        vitals, chest = self._vitals(t, frame, gray, found.box)
        if not found.frontal:
            return Sensed(self.smoother.present(t), face=found.box, faces_seen=len(found.faces),
                          rule=found.rule, vitals=vitals, chest_seen=chest)
        face = crop_face(gray, found.box)
        self._mirror = not self._mirror
        probs7 = self.classifier.classify(face[:, ::-1] if self._mirror else face)
        best = int(np.argmax(probs7))
        probs3 = self.calibration.apply(mood_probs(probs7))
        if self.baseline is not None:
            probs3 = self.baseline.correct(t, probs3)
        probs3 = self.talk.update(t, face, probs3)
        return Sensed(self.smoother.update(t, probs3), face=found.box,
                      faces_seen=len(found.faces), rule=found.rule, emotion=EMOTIONS[best],
                      emotion_confidence=float(probs7[best]), vitals=vitals, chest_seen=chest)

    def _vitals(self, t: float, frame: Frame, gray: np.ndarray,
                box: Box) -> tuple[Vitals | None, bool | None]:
        """The body signals of this frame (None without them, or before their window is full),
        and whether the chest is in view (None without body signals)."""
        if self.body is None:
            return None, None
        vitals = self.body.update(t, gray, box, lambda region: mean_rgb(frame, region),
                                  self._chair)
        return (vitals if self.body.ready else None), vitals.chest_seen

    def close(self) -> None:
        self.source.close()


@dataclass(frozen=True)
class ScriptedBody:
    """A mood script's body tracks, each held from its entry on: vitals while the child is
    seen once any was given (pulse unknown unless given; a given rate's quality is 1)."""

    breathing: float | None = None
    movement: float = 0.0
    pulse: float | None = None
    given_once: bool = False

    def given(self, entry: ScriptEntry) -> ScriptedBody:
        return ScriptedBody(
            entry.breathing if entry.breathing is not None else self.breathing,
            entry.movement if entry.movement is not None else self.movement,
            entry.pulse if entry.pulse is not None else self.pulse, True)

    def vitals(self) -> Vitals:
        return Vitals(self.breathing, self.pulse, self.movement,
                      float(self.breathing is not None), float(self.pulse is not None))


class ScriptInput:
    """Moods from a mood script (``relaxd.control.scenario.load_mood_script``); at each ``press`` and
    ``release`` it calls ``buttons(action, button)``, which works the simulated button as a
    caregiver's hand would (``action`` is ``press`` or ``release``).

    The script never ends by itself: the session ends with its scenario, or once the e-stop has
    latched and no entry is left.
    """

    scripted = True

    def __init__(self, entries: Sequence[ScriptEntry],
                 buttons: Callable[[str, str], None]) -> None:
        self._entries = sorted(entries, key=lambda e: e.at)
        self._next = 0
        self._reading = MoodSample(Mood.NO_FACE, 0.0)
        self._buttons = buttons
        self._body = ScriptedBody()

    @property
    def exhausted(self) -> bool:
        return self._next >= len(self._entries)

    def read(self, t: float) -> Sensed:
        while self._next < len(self._entries) and self._entries[self._next].at <= t:
            entry = self._entries[self._next]
            self._next += 1
            if entry.mood is not None:
                self._reading = MoodSample(Mood(entry.mood), entry.confidence)
            if entry.body:
                self._body = self._body.given(entry)
            elif entry.press is not None:
                self._buttons("press", entry.press)
            elif entry.release is not None:  # each entry is one of these
                self._buttons("release", entry.release)
        seen = self._reading.mood is not Mood.NO_FACE and self._body.given_once
        return Sensed(self._reading, vitals=self._body.vitals() if seen else None,
                      chest_seen=True if seen else None)

    def chair(self, outputs: ChairOutputs) -> None:
        pass

    def close(self) -> None:
        pass
