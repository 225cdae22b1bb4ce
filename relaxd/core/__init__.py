"""Shared ground: errors, paths, labels, clocks, YAML settings, plots, WAV files."""
