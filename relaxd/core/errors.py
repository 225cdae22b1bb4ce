"""Errors a user can act on: the CLI prints them as one line and exits non-zero."""

from __future__ import annotations

from pathlib import Path


class RelaxdError(Exception):
    """A problem with the user's input or environment, told in one line.

    ``exit_code`` is what the CLI exits with (2 for bad input, 1 for failed checks).
    """

    exit_code = 2

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None,
                 col: int | None = None):
        self.path, self.line, self.col = path, line, col
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f":{line}"
                if col is not None:
                    where += f":{col}"
            where += ": "
        super().__init__(where + message)
