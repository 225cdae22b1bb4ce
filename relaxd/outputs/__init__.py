"""Act: PWM light and vibration, sound at one loudness, the actuator pins."""
