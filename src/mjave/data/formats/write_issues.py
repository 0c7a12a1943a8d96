"""What a write could not keep: the tally `write_records` returns, so nothing is lost silently."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from mjave.data.errors import RowIssues


@dataclass
class WriteIssues(RowIssues):
    """RowIssues plus what a target format cannot hold.

    `trimmed_spans`: spans whose leading/trailing whitespace BIO cannot tag (CoNLL keeps the
    non-blank part); `lost_spans`: spans of whitespace only; `dropped_fields`: record fields the
    format has no place for (JAVE TSV holds no category, image or extra keys), counted per field.
    """

    trimmed_spans: int = 0
    lost_spans: int = 0
    dropped_fields: Counter = field(default_factory=Counter)

    def merge(self, other: RowIssues) -> None:
        super().merge(other)
        if isinstance(other, WriteIssues):
            self.trimmed_spans += other.trimmed_spans
            self.lost_spans += other.lost_spans
            self.dropped_fields.update(other.dropped_fields)

    def summary(self) -> str:
        parts = [super().summary()]
        if self.trimmed_spans:
            parts.append(f"trimmed the blank edges of {self.trimmed_spans} spans (BIO cannot tag "
                         "whitespace)")
        if self.lost_spans:
            parts.append(f"lost {self.lost_spans} spans that cover only whitespace")
        if self.dropped_fields:
            fields = ", ".join(f"'{k}' ({n} records)"
                               for k, n in sorted(self.dropped_fields.items()))
            parts.append(f"the format holds no {fields}")
        return "; ".join(p for p in parts if p)


__all__ = ["WriteIssues"]
