"""Virtual children and the study of the scenario learner."""
