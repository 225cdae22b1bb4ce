"""The tools around the chair's daemon, one module per group of ``relaxd`` subcommands."""
