"""The clinic: a bridge per chair to an MQTT broker, and one overview of every chair.

The bridge talks to its chair's daemon over the control socket (as the station does) and to
the clinic's broker (mosquitto) over MQTT v5; the overview is a web application that follows
every chair through the broker. Neither imports vision or outputs.
"""
