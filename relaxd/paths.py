"""Where relaxd's bundled files live: next to the package in a checkout, under share/ when installed."""

from __future__ import annotations

import sys
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent


def resource_dir(name: str) -> Path:
    """The folder of bundled ``name`` files ("models" or "scenarios")."""
    for base in (_CHECKOUT / name, Path(sys.prefix) / "share" / "relaxd" / name):
        if base.is_dir():
            return base
    return _CHECKOUT / name


def default_model() -> Path:
    return resource_dir("models") / "emotion_int8.tflite"


def default_scenario() -> Path:
    return resource_dir("scenarios") / "calm-blue-waves.yaml"


#: Eileen Collins's head and shoulders (NASA, public domain; scikit-image's astronaut photo,
#: cropped), shipped for the built-in benchmark frames and ``relaxd check``.
ASTRONAUT_HEAD = Path(__file__).resolve().parent / "data" / "astronaut_head.png"
#: The width of her face in it, as the Haar cascade finds it (pixels).
ASTRONAUT_FACE_PX = 95
