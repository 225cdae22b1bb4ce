"""Logging for a terminal or for journald, with syslog priorities either way.

Under systemd (``$JOURNAL_STREAM`` or ``$INVOCATION_ID`` set) records go to the journal with
their priority: through ``systemd.journal.JournalHandler`` when systemd-python is importable,
else as stderr lines prefixed ``<N>`` (journald's SyslogLevelPrefix= parses them). Elsewhere
they go to stderr with a timestamp. Caregiver alerts are logged at CRITICAL (journald priority
2, ``journalctl -u relaxd -p crit`` lists them).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Mapping

#: logging level -> syslog priority (sd-daemon(3) ``<N>`` prefixes).
PRIORITIES = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
              logging.DEBUG: 7}


def syslog_priority(levelno: int) -> int:
    """The syslog priority for a logging level (levels between two take the less severe one)."""
    for level in sorted(PRIORITIES, reverse=True):
        if levelno >= level:
            return PRIORITIES[level]
    return 7


class PriorityFormatter(logging.Formatter):
    """Prefixes every line of a record with ``<N>``, N its syslog priority."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


def under_systemd(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process was started by systemd (its output goes to the journal)."""
    env = os.environ if environ is None else environ
    return bool(env.get("JOURNAL_STREAM") or env.get("INVOCATION_ID"))


def _journal_handler() -> logging.Handler | None:
    try:
        from systemd.journal import JournalHandler
    except ImportError:
        return None
    return JournalHandler(SYSLOG_IDENTIFIER="relaxd")


def setup_logging(verbose: bool = False, journald: bool | None = None) -> logging.Handler:
    """Send the root logger's records to one handler, replacing one set up before; return it.

    ``verbose``: DEBUG instead of INFO. ``journald``: None = when :func:`under_systemd`;
    True = the journal (stderr with ``<N>`` prefixes if systemd-python is missing); False =
    plain stderr.
    """
    if journald is None:
        journald = under_systemd()
    handler: logging.Handler | None = _journal_handler() if journald else None
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        if journald:  # journald adds time and unit name itself
            handler.setFormatter(PriorityFormatter("%(name)s: %(message)s"))
        else:
            handler.setFormatter(logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    else:
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_relaxd", False)]:
        root.removeHandler(old)
        old.close()
    handler._relaxd = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    return handler
