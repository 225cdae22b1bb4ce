"""Each child's profile, consent, limits, session and scenario learner."""
