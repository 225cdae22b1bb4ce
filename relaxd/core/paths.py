"""Where relaxd's files live: the bundled ones next to the package in a checkout (under share/
when installed), the state (session records, the latch) in the state directory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[2]


def resource_dir(name: str) -> Path:
    """The folder of bundled ``name`` files ("models" or "scenarios")."""
    for base in (_CHECKOUT / name, Path(sys.prefix) / "share" / "relaxd" / name):
        if base.is_dir():
            return base
    return _CHECKOUT / name


#: Where the installer puts the configuration (systemd's ConfigurationDirectory=relaxd).
DEFAULT_CONFIG = Path("/etc/relaxd/config.yaml")

#: Session records and other state when systemd gives no ``$STATE_DIRECTORY``.
DEFAULT_STATE_DIR = Path("/var/lib/relaxd")


def default_state_dir() -> Path:
    """``$RELAXD_STATE_DIR``, else ``$STATE_DIRECTORY`` (set by systemd's ``StateDirectory=``;
    first of a list), else /var/lib/relaxd."""
    for var in ("RELAXD_STATE_DIR", "STATE_DIRECTORY"):
        first = os.environ.get(var, "").split(":")[0]
        if first:
            return Path(first)
    return DEFAULT_STATE_DIR


def default_model() -> Path:
    return resource_dir("models") / "emotion_int8.tflite"


def default_scenario() -> Path:
    return resource_dir("scenarios") / "calm-blue-waves.yaml"


#: Eileen Collins's head and shoulders (NASA, public domain; scikit-image's astronaut photo,
#: cropped), shipped for the built-in benchmark frames and ``relaxd check``.
ASTRONAUT_HEAD = Path(__file__).resolve().parents[1] / "data" / "astronaut_head.png"
#: The width of her face in it, as the Haar cascade finds it (pixels).
ASTRONAUT_FACE_PX = 95

#: ``relaxd --simulate --ui --out DIR`` writes its control socket's path to DIR/SOCKET_FILE
#: (the socket itself lives under /tmp: unix socket paths are at most 107 bytes).
SOCKET_FILE = "control-socket"
