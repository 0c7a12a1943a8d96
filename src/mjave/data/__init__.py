"""Product records, file formats, validation, BIO tagging and the attribute schema."""

from mjave.data.errors import DataError, RowIssues
from mjave.data.records import Record, Span

__all__ = ["DataError", "Record", "RowIssues", "Span"]
