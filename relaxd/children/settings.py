"""The clinic's policy for child profiles (the configuration's ``children`` section)."""

from __future__ import annotations

from dataclasses import dataclass

from relaxd.core.yamlspec import spec


@dataclass(kw_only=True)
class ChildrenSettings:
    """The clinic's policy for new child profiles."""

    retention_days: int = spec(
        365, min=1, max=36500,
        help="a new child's sessions are deleted after this many days (one child's: relaxd "
             "children set ID --retention-days N)")
