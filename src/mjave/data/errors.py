"""Errors that name the file, line and field, and the tally of rows skipped in lenient mode."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


class DataError(ValueError):
    """A bad input row. The message always reads `FILE:LINE: field 'F': what is wrong`."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None, reason: str | None = None, row_id: Any = None):
        self.path = path
        self.line = line
        self.field = field
        self.message = message
        # The id of the row, when it could be read although the row could not: an error row
        # keeps it, so `--resume` knows the row is done.
        self.row_id = row_id
        # `reason` is a short stable category used to group skipped rows in reports.
        self.reason = reason or message
        super().__init__(self._format())

    def _format(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}"
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        elif self.line is not None:
            where = f"line {self.line}: "
        what = f"field '{self.field}': " if self.field else ""
        return f"{where}{what}{self.message}"

    def located(self, path: str | None = None, line: int | None = None) -> "DataError":
        """The same error with a location filled in where it was missing."""
        return DataError(self.message, path=self.path or path, line=self.line or line,
                         field=self.field, reason=self.reason, row_id=self.row_id)


@dataclass
class RowIssues:
    """What a read skipped or changed, so that nothing is lost silently.

    `skipped` holds the errors of rows left out in lenient mode; `dropped_overlaps` counts spans
    removed because they overlapped a kept span; `truncated_texts` / `truncated_spans` count what a
    max length cut.
    """

    rows_read: int = 0
    skipped: list[DataError] = field(default_factory=list)
    dropped_overlaps: int = 0
    truncated_texts: int = 0
    truncated_spans: int = 0
    unknown_attribute_spans: int = 0

    def skip(self, error: DataError) -> None:
        self.skipped.append(error)

    def merge(self, other: "RowIssues") -> None:
        self.rows_read += other.rows_read
        self.skipped.extend(other.skipped)
        self.dropped_overlaps += other.dropped_overlaps
        self.truncated_texts += other.truncated_texts
        self.truncated_spans += other.truncated_spans
        self.unknown_attribute_spans += other.unknown_attribute_spans

    def reasons(self) -> Counter:
        return Counter(e.reason for e in self.skipped)

    def summary(self) -> str:
        """One human-readable paragraph; empty string when nothing was skipped or changed."""
        parts = []
        if self.skipped:
            reasons = ", ".join(f"{n} x {r}" for r, n in self.reasons().most_common())
            parts.append(f"skipped {len(self.skipped)} of {self.rows_read} rows ({reasons})")
        if self.dropped_overlaps:
            parts.append(f"dropped {self.dropped_overlaps} overlapping spans "
                         "(policy: keep the longer, then the earlier)")
        if self.truncated_texts:
            parts.append(f"truncated {self.truncated_texts} texts to the max length, "
                         f"cutting {self.truncated_spans} spans")
        if self.unknown_attribute_spans:
            parts.append(f"{self.unknown_attribute_spans} gold spans have attributes the model "
                         "does not know (not learnable; scored as misses)")
        return "; ".join(parts)
