"""The loop's inputs under the station's hands: a chair that stays up after its script, and
manual mode (no camera)."""

from __future__ import annotations

from typing import Any


class StayUp:
    """An input that never ends the session: after the inner one ends, an empty seat.

    ``relaxd --simulate --ui``: the chair stays up, idle, after a script or video ends, so the
    next session can be started from the station.
    """

    exhausted = False

    def __init__(self, inner: Any) -> None:
        self.inner, self.scripted, self._ended = inner, inner.scripted, False

    def read(self, t: float) -> Any:
        from relaxd.control.controller import MoodSample
        from relaxd.core.labels import Mood
        from relaxd.vision.inputs import Sensed

        if not self._ended:
            sensed = self.inner.read(t)
            if sensed is not None:
                return sensed
            self._ended = True
        return Sensed(MoodSample(Mood.NO_FACE, 0.0))

    def close(self) -> None:
        self.inner.close()


class ManualInput:
    """Manual mode: no camera, no mood. The camera's input is kept, unread, for the next
    session that uses it."""

    scripted = False
    exhausted = False

    def __init__(self, camera: Any) -> None:
        self.camera = camera

    def read(self, t: float) -> Any:
        from relaxd.control.controller import MoodSample
        from relaxd.core.labels import Mood
        from relaxd.vision.inputs import Sensed

        return Sensed(MoodSample(Mood.NEUTRAL, 0.0))

    def close(self) -> None:
        self.camera.close()
