"""Predictions as tables: the `long` and `wide` layouts of `mjave predict --layout` and
`Extractor.predict_frame`.

One function, `TableLayout.rows`, turns an output row of the sweep (`mjave.inference.batch`:
id, cid?, category?, text?, image?, attributes, values, warning?, error?, passed-through
fields) into table rows, so the CLI's CSV, Parquet and JSONL and the DataFrame answer the same
for the same item:

- `long`: one row per predicted value: id, cid, category, text, image, attribute, value, begin,
  end, score, warning, error, extra. An item with no value (nothing found, or an error row) is
  one row with empty attribute/value/begin/end/score, so no input row is lost and `--resume`
  finds its id.
- `wide`: one row per item and one column per attribute of the model, holding its best value
  (the highest score; the first in the text on a tie), empty when none was found.

Passed-through input fields go into `extra`, a JSON object (as in the nested CSV), so the columns
are known before the first row and no field can clash with a column. The predicted attributes
(with their scores, found value or not) stay in the nested layout only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from mjave.inference.batch import InputRow, json_text, text_or_none

if TYPE_CHECKING:  # pandas is an optional extra: imported only by `require_pandas`
    import pandas

LAYOUTS = ("nested", "long", "wide")
"""`--layout` choices; `nested` (one row per item, values as lists) is the default."""
TABLE_LAYOUTS = ("long", "wide")
ITEM_COLUMNS = ("id", "cid", "category", "text", "image")
VALUE_COLUMNS = ("attribute", "value", "begin", "end", "score")
STATUS_COLUMNS = ("warning", "error", "extra")
NESTED_FIELDS = frozenset((*ITEM_COLUMNS, "attributes", "values", "warning", "error"))
"""Fields of a sweep's output row that are not passed-through input fields."""


def require_pandas() -> Any:
    """The pandas module, or an ImportError naming the extra that installs it."""
    try:
        import pandas
    except ImportError:
        raise ImportError("predictions as a DataFrame need pandas: "
                          "pip install 'mjave[pandas]'") from None
    return pandas


def looks_tabular(fields: Iterable[str]) -> bool:
    """Whether a JSON output row was written by a table layout: only those hold `warning`,
    `error` and `extra` at once (a nested row never has both a warning and an error)."""
    return set(STATUS_COLUMNS) <= set(fields)


def best_values(values: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Attribute -> the value with the highest score; `values` come in text order, so a tie
    goes to the first in the text."""
    best: dict[str, Mapping[str, Any]] = {}
    for v in values:
        held = best.get(v["attribute"])
        if held is None or v["score"] > held["score"]:
            best[v["attribute"]] = v
    return {a: v["value"] for a, v in best.items()}


@dataclass(frozen=True)
class TableLayout:
    """A table layout (`long` or `wide`) and, for `wide`, the model's attributes (its columns)."""

    name: str
    attributes: tuple[str, ...] = ()

    @classmethod
    def of(cls, name: str, attributes: Sequence[str] = ()) -> "TableLayout":
        """Check the layout name and, for `wide`, that no attribute is named like a column."""
        if name not in TABLE_LAYOUTS:
            raise ValueError(f"a table layout is one of {', '.join(TABLE_LAYOUTS)}, not {name!r}")
        if name == "long":
            return cls(name)
        clash = sorted(set(attributes) & {*ITEM_COLUMNS, *STATUS_COLUMNS})
        if clash:
            raise ValueError(f"the model's attribute(s) {', '.join(clash)} have the name of a "
                             "column of the wide layout; use the long layout")
        return cls(name, tuple(attributes))

    @property
    def columns(self) -> tuple[str, ...]:
        middle = VALUE_COLUMNS if self.name == "long" else self.attributes
        return (*ITEM_COLUMNS, *middle, *STATUS_COLUMNS)

    def rows(self, row: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The table rows of one output row of the sweep, cells as written: text, int, float
        or None (ids as text, as the nested Parquet has them)."""
        extra = {k: v for k, v in row.items() if k not in NESTED_FIELDS}
        item = {c: text_or_none(row.get(c)) for c in ITEM_COLUMNS}
        status = {"warning": text_or_none(row.get("warning")),
                  "error": text_or_none(row.get("error")),
                  "extra": json_text(extra) if extra else None}
        values = row.get("values") or []
        if self.name == "wide":
            best = best_values(values)
            return [{**item, **{a: best.get(a) for a in self.attributes}, **status}]
        if not values:
            return [{**item, **dict.fromkeys(VALUE_COLUMNS), **status}]
        return [{**item, "attribute": v["attribute"], "value": v["value"],
                 "begin": v["begin"], "end": v["end"], "score": v["score"], **status}
                for v in values]

    def arrow_schema(self) -> Any:
        """The Parquet schema: begin/end int64, score float64, every other column a string."""
        import pyarrow as pa
        types = {"begin": pa.int64(), "end": pa.int64(), "score": pa.float64()}
        return pa.schema([(c, types.get(c, pa.string())) for c in self.columns])

    def frame(self, rows: Sequence[Mapping[str, Any]]) -> "pandas.DataFrame":
        """Table rows as a DataFrame with these columns (begin/end nullable Int64)."""
        pd = require_pandas()
        df = pd.DataFrame.from_records(list(rows), columns=list(self.columns))
        if self.name == "long":
            df = df.astype({"begin": "Int64", "end": "Int64", "score": "float64"})
        return df


def _missing(value: Any) -> bool:
    """None, NaN, pandas.NA or NaT: how pandas marks an empty cell."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return type(value).__name__ in ("NAType", "NaTType")


def frame_input_rows(frame: "pandas.DataFrame", text: str, image: str | None = None,
                     id: str | None = None, category: str | None = None) -> list[InputRow]:
    """The rows of a DataFrame as the sweep's input rows (`InputRow`, numbered from 1), an
    empty cell as a missing field; ids are the `id` column, else each row's position (0, 1,
    ...). Only the named columns are read: the others stay in the caller's frame."""
    named = {"text": text, "image": image, "id": id, "category": category}
    absent = [f"{k}={c!r}" for k, c in named.items() if c is not None and c not in frame.columns]
    if absent:
        raise ValueError(f"the DataFrame has no column {', '.join(absent)} (columns: "
                         f"{', '.join(map(str, frame.columns))})")
    columns = {k: frame[c].tolist() if c is not None else [None] * len(frame)
               for k, c in named.items()}
    if id is None:
        columns["id"] = list(range(len(frame)))
    rows = []
    for n in range(len(frame)):
        cell = {k: None if _missing(cells[n]) else cells[n] for k, cells in columns.items()}
        extra = {} if category is None else {"category": cell["category"]}
        rows.append(InputRow(n + 1, cell["id"], cell["text"], cell["image"], extra))
    return rows


__all__ = ["ITEM_COLUMNS", "LAYOUTS", "STATUS_COLUMNS", "TABLE_LAYOUTS", "TableLayout",
           "VALUE_COLUMNS", "best_values", "frame_input_rows", "looks_tabular",
           "require_pandas"]
