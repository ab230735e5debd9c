"""Exceptions that carry a user-facing message.

Every error a user can cause (a bad schema, a missing file or column, ids that do not
resolve) is a :class:`GraphrecError`. The CLI prints its message and exits non-zero
without a traceback (unless ``--debug``).
"""

from __future__ import annotations


class GraphrecError(Exception):
    """Base class for errors caused by user input; the message is shown as is."""


class SchemaError(GraphrecError):
    """The YAML schema or config is invalid (unknown key, wrong type, bad reference)."""


class DataError(GraphrecError):
    """A table violates the schema: missing file/column, bad ids, wrong types, empty."""


class StoreError(GraphrecError):
    """A graph store directory is missing, incomplete or fails its checksums."""


def format_rows(rows, values=None, limit: int = 5) -> str:
    """Render the first offending rows as ``row 3 ('x'), row 7 ('y')`` for messages.

    ``rows`` are 0-based data-row numbers (header excluded); they are shown 1-based as
    "data row N" so they match what a user sees in a spreadsheet below the header.
    """
    rows = list(rows)[:limit]
    parts = []
    for i, r in enumerate(rows):
        if values is not None:
            parts.append(f"data row {int(r) + 1} ({values[i]!r})")
        else:
            parts.append(f"data row {int(r) + 1}")
    return ", ".join(parts)
