"""Decide: scenarios, the breathing tempo, the relaxation controller, the scenario library."""
