"""Soak: two hours of scripted session at full speed, no memory growth and no lost events.

Slow (a minute or two): run with ``pytest -m slow tests/test_soak.py``; ``python tools/soak.py``
prints the same figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

from soak import soak  # noqa: E402


@pytest.mark.slow
def test_two_hour_soak(tmp_path):
    result = soak(2.0, tmp_path)
    assert result["returncode"] == 0, result["stderr_tail"]
    assert result["session_s"] >= 2 * 3600
    assert result["events_jsonl"] == result["events_sqlite"] > 1000
    assert result["estops"] == 12
    assert result["rss_growth_mb"] <= 10


def test_short_soak_loses_nothing(tmp_path):
    result = soak(0.15, tmp_path)
    assert result["returncode"] == 0, result["stderr_tail"]
    assert result["events_jsonl"] == result["events_sqlite"] > 20
    assert result["estops"] == 1
