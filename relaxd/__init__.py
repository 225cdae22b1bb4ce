"""relaxd: the software of a children's relaxation chair.

Data flows one way: sense (camera, faces, emotion) -> decide (mood, controller,
scenario) -> act (actuators, alerts); :mod:`relaxd.daemon.loop` and :mod:`relaxd.cli`
wire the stages together.
"""

__version__ = "0.1.0"
