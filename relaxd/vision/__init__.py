"""Sense: camera, faces, emotion, calibration, the child's baseline, mood."""
