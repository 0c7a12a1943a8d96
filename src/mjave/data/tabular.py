"""Cells of table rows (CSV, Parquet, JSONL tables): optional and required text cells.

The rows themselves are read by the one reader registry, `mjave.data.formats` (`read_table` for
tables with a header, `iter_records` for products), so a bad row fails the same way everywhere.
"""

from __future__ import annotations

from typing import Any

from mjave.data.errors import DataError


def optional_text(row: dict[str, Any], key: str) -> str | None:
    """A string cell, or None when absent, empty or blank. Ints are accepted as their decimal
    form (numeric ids in JSONL or Parquet); other types are refused."""
    v = row.get(key)
    if isinstance(v, int) and not isinstance(v, bool):
        v = str(v)
    if v is not None and not isinstance(v, str):
        raise DataError(f"'{key}' must be a string, found {type(v).__name__}", field=key,
                        reason=f"bad {key}")
    return v if v is not None and v.strip() else None


def required_text(row: dict[str, Any], key: str) -> str:
    """`optional_text` that refuses an absent, empty or blank cell."""
    v = optional_text(row, key)
    if v is None:
        raise DataError(f"'{key}' is empty", field=key, reason=f"empty {key}")
    return v
