"""The loop's inputs under the station's hands: a chair that stays up after its script, and
manual mode (no camera); and the one place that reaches through them to the camera's input."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from relaxd.vision.baseline import Baseline
    from relaxd.vision.body.vitals import ChairOutputs
    from relaxd.vision.inputs import Input, Sensed


class StayUp:
    """An input that never ends the session: after the inner one ends, an empty seat.

    ``relaxd --simulate --ui``: the chair stays up, idle, after a script or video ends, so the
    next session can be started from the station.
    """

    exhausted = False

    def __init__(self, inner: Input) -> None:
        self.inner, self.scripted, self._ended = inner, inner.scripted, False

    def read(self, t: float) -> Sensed:
        from relaxd.control.controller import MoodSample
        from relaxd.core.labels import Mood
        from relaxd.vision.inputs import Sensed

        if not self._ended:
            sensed = self.inner.read(t)
            if sensed is not None:
                return sensed
            self._ended = True
        return Sensed(MoodSample(Mood.NO_FACE, 0.0))

    def chair(self, outputs: ChairOutputs) -> None:
        from relaxd.vision.inputs import hand_over

        hand_over(self.inner, outputs)

    def close(self) -> None:
        self.inner.close()


class ManualInput:
    """Manual mode: no camera, no mood. The camera's input is kept, unread, for the next
    session that uses it."""

    scripted = False
    exhausted = False

    def __init__(self, camera: Input) -> None:
        self.camera = camera

    def read(self, t: float) -> Sensed:
        from relaxd.control.controller import MoodSample
        from relaxd.core.labels import Mood
        from relaxd.vision.inputs import Sensed

        return Sensed(MoodSample(Mood.NEUTRAL, 0.0))

    def chair(self, outputs: ChairOutputs) -> None:
        pass  # manual mode reads no body signals

    def close(self) -> None:
        self.camera.close()


@runtime_checkable
class ReadsAgainstBaseline(Protocol):
    """An input that reads the face against a child's resting face (the camera's
    :class:`relaxd.vision.inputs.VisionInput`)."""

    baseline: Baseline | None


def manual_or_camera(current: Input, manual: bool) -> Input:
    """The input for a session in manual mode (the camera kept, unread) or read from the
    camera: ``current`` wrapped in or taken out of :class:`ManualInput` as needed."""
    if manual and not isinstance(current, ManualInput):
        return ManualInput(current)
    if not manual and isinstance(current, ManualInput):
        return current.camera
    return current


def read_against(source: Input, baseline: Baseline | None) -> None:
    """The camera's input under ``source`` (through StayUp and ManualInput) reads the face
    against ``baseline`` (None: no child's resting face); an input without a camera is left
    as it is."""
    found: Input | None = source
    while found is not None:
        if isinstance(found, ReadsAgainstBaseline):
            found.baseline = baseline
            return
        found = _wrapped(found)


def _wrapped(source: Input) -> Input | None:
    """The input a station's wrapper reads through (None: ``source`` wraps nothing)."""
    if isinstance(source, StayUp):
        return source.inner
    if isinstance(source, ManualInput):
        return source.camera
    return None
