"""Errors that tell the user what was expected, and where the bad input sits."""

from __future__ import annotations


class HFTwoPhaseError(Exception):
    """Base class, so callers can catch every error this library raises on purpose."""


class RecordsError(HFTwoPhaseError, ValueError):
    """Bad records input: the message names the file, the row and the column when they are known."""

    def __init__(self, message: str, *, source: str | None = None, row: int | None = None, column: str | None = None):
        self.source = source
        self.row = row
        self.column = column
        where = []
        if source:
            where.append(f"file {source}")
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column '{column}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class SelectionError(HFTwoPhaseError, ValueError):
    """A selection cannot run with the arguments given (no candidates, K too large, unknown target...)."""
