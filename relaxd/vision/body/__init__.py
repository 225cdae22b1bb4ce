"""The body's responses read from the camera the chair already has: breathing, pulse and
restlessness (:class:`relaxd.vision.body.vitals.BodySignals`). Only numbers leave these modules;
no image or crop is ever kept beyond the window of numbers each meter holds."""
