"""`mjave predict` output (JSONL) read as Records whose spans carry the model's scores, so
predictions convert like any labelled file: to Label Studio tasks to correct
(`mjave data convert preds.jsonl tasks.json --from predictions --to labelstudio`), to CoNLL or
a spaCy DocBin, or back into training data after review. Error rows (an input the model could
not read) hold nothing to label: they are skipped and counted, strict or not."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from mjave.data.errors import DataError
from mjave.data.formats.json_text import jsonl_rows
from mjave.data.formats.registry import Format, register
from mjave.data.formats.row_types import RecordRow
from mjave.data.records import Record, Span
from mjave.data.validate import check_record

PREDICTION_SKIP = ("attributes", "values", "error", "text", "image", "id", "cid", "category")
"""Keys of a `mjave predict` row that are not passed through into the task data."""


def implicit_extra(named: Iterable[tuple[str, str, float | None]]) -> dict[str, Any]:
    """The `extra` entries of a predicted record for its values named without a span (issue
    #31), from (attribute, value, score): `implicit_values` {attribute: value} and
    `implicit_scores` {attribute: score}, as `mjave.evaluation.implicit` reads them; {} for none."""
    named = list(named)
    if not named:
        return {}
    return {"implicit_values": {a: v for a, v, _ in named},
            "implicit_scores": {a: s for a, _, s in named}}


def split_values(values: Iterable[Mapping[str, Any]]) -> tuple[list[Span], dict[str, Any]]:
    """Result "values" as a predicted record holds them: scored spans, and the values named
    without a span (null `begin`) as its `implicit_extra`."""
    spans, named = [], []
    for v in values:
        if v["begin"] is None and v["end"] is None:
            named.append((v["attribute"], v["value"], v.get("score")))
        else:
            spans.append(Span(v["begin"], v["end"], v["attribute"], v["value"], v.get("score")))
    return spans, implicit_extra(named)


def prediction_record(row: dict[str, Any]) -> Record:
    """A Record with scored spans from one `mjave predict` output row (`id`, `text`,
    `values`: [{attribute, value, begin, end, score}], ...). An error row, or a row without
    its text (`--no-text`), is a DataError."""
    if not isinstance(row, dict):
        raise DataError(f"expected a prediction object, found {type(row).__name__}",
                        reason="not an object")
    if row.get("error") is not None:
        raise DataError(f"an error row: {row['error']}", field="error", reason="error row")
    text = row.get("text")
    if not isinstance(text, str):
        raise DataError("the prediction has no text (predicted with --no-text?)", field="text",
                        reason="missing text")
    values = row.get("values") or []
    if not isinstance(values, list) or not all(isinstance(v, dict) for v in values):
        raise DataError("'values' must be a list of objects", field="values", reason="bad span")
    try:
        spans, implicit = split_values(values)
    except KeyError as e:
        raise DataError(f"a value has no {e.args[0]!r}", field="values",
                        reason="bad span") from None
    rid = row.get("id")
    fields = {k: row.get(k) for k in ("cid", "category", "image")}
    for k, v in fields.items():
        if v is not None and not isinstance(v, str):
            raise DataError(f"must be a string, found {type(v).__name__}", field=k,
                            reason=f"bad {k}")
    record = Record(id=str(rid) if isinstance(rid, int) and not isinstance(rid, bool) else rid,
                    text=text, spans=spans, **fields,
                    extra={**{k: v for k, v in row.items() if k not in PREDICTION_SKIP},
                           **implicit})
    check_record(record)
    return record



def _read_rows(path: Path) -> Iterator[RecordRow]:
    for line, row in jsonl_rows(path):
        yield line, (lambda row=row: _parse(row))


def _parse(row: dict[str, Any] | DataError) -> Record:
    if isinstance(row, DataError):
        raise row
    return prediction_record(row)


PREDICTIONS = register(Format("predictions", (), _read_rows, None, title="mjave predict JSONL",
                              always_skip=("error row",)))
"""Read only, and named (`--from predictions`): its files are `.jsonl` like JSONL's."""

__all__ = ["PREDICTIONS", "PREDICTION_SKIP", "prediction_record"]
