"""The caregiver station: a small web application beside the daemon (see ARCHITECTURE.md).

Its own process; it talks to the daemon only through the control socket (:mod:`relaxd.daemon.server`)
and reads the session record read-only. Importing this package imports nothing heavy:
``settings`` is read by the daemon's configuration, ``server`` needs the web stack.
"""
