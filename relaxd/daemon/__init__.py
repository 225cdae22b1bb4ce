"""The chair's loop and its wiring: the session build, hardware, the station's link and socket."""
