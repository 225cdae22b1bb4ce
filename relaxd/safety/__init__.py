"""The stop arbiter, the e-stop and reset button, alerts, the temperature watch."""
