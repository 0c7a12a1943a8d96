"""The catalog's attribute table (`product_id, attribute, value`) and its synonym list.

This is what a catalog team already has instead of span-annotated text: several rows per product,
possibly several values of one attribute. CSV (or TSV) needs a header naming the columns; JSONL
needs the keys. Other columns are ignored. A bad row is a `DataError` naming the file, the line
and the field; lenient reading (`strict=False`) skips it into `issues` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from mjave.data.errors import DataError, RowIssues
from mjave.data.formats import read_table
from mjave.data.paths import PathLike
from mjave.data.tabular import required_text

TABLE_COLUMNS = ("product_id", "attribute", "value")
SYNONYM_COLUMNS = ("attribute", "canonical_value", "surface_form")


@dataclass(frozen=True)
class TableRow:
    """One known value of one product; `line` is where it stands in the table (for reports)."""

    product_id: str
    attribute: str
    value: str
    line: int = 0


@dataclass(frozen=True)
class SynonymRow:
    """`surface_form` in a text also stands for `canonical_value` of `attribute`
    (e.g. Color, "navy", "dark blue")."""

    attribute: str
    canonical_value: str
    surface_form: str
    line: int = 0


T = TypeVar("T")


def _read(path: PathLike, columns: tuple[str, ...], make: Callable[[dict[str, Any], int], T],
          strict: bool, issues: RowIssues | None) -> list[T]:
    if issues is None:
        if not strict:
            raise ValueError("lenient reading needs an `issues` tally to record skipped rows")
        issues = RowIssues()
    out: list[T] = []
    for line, row in read_table(path, columns):
        issues.rows_read += 1
        try:
            if isinstance(row, DataError):
                raise row
            out.append(make(row, line))
        except DataError as e:
            err = e.located(str(path), line)
            if strict:
                raise err from None
            issues.skip(err)
    return out


def read_catalog_table(path: PathLike, strict: bool = True,
               issues: RowIssues | None = None) -> list[TableRow]:
    """All rows of a catalog table (CSV/TSV with a header, or JSONL), in file order."""
    def make(row: dict[str, Any], line: int) -> TableRow:
        return TableRow(required_text(row, "product_id"),
                        required_text(row, "attribute").strip(), required_text(row, "value"), line)
    return _read(path, TABLE_COLUMNS, make, strict, issues)


def read_synonyms(path: PathLike, strict: bool = True,
                  issues: RowIssues | None = None) -> list[SynonymRow]:
    """All rows of a synonym list (`attribute, canonical_value, surface_form`)."""
    def make(row: dict[str, Any], line: int) -> SynonymRow:
        return SynonymRow(required_text(row, "attribute").strip(),
                          required_text(row, "canonical_value"),
                          required_text(row, "surface_form"), line)
    return _read(path, SYNONYM_COLUMNS, make, strict, issues)
