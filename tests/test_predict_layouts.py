"""Predictions as tables: `mjave predict --layout long|wide` and `Extractor.predict_frame`
(`mjave.inference.tables`). The tiny trained models come from tests/test_extractor.py."""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from mjave.data.errors import DataError
from mjave.inference.batch import parquet_parts, predict_file
from mjave.inference.tables import TableLayout, best_values
from test_predict import (rows_for_input, run_cli, text_extractor,  # noqa: F401 (fixtures)
                          tiny_models, write_jsonl)

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def layout_input(models) -> list[dict]:
    """Valid rows, one passing a field through, one with a category, and one bad row."""
    rows = rows_for_input(models)
    rows[0]["category"] = "shirts"
    rows[1]["note"] = {"any": ["json"]}
    return rows + [{"id": "bad", "text": ""}]


def read_table_rows(path: Path) -> list[dict[str, Any]]:
    """Table rows of a layout output (every part of a Parquet one), cells as written."""
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    if path.suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))
    return [r for part in parquet_parts(path) for r in pq.read_table(str(part)).to_pylist()]


def as_text(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Rows as their CSV cells: None as empty, numbers as str."""
    return [{k: "" if v is None else str(v) for k, v in r.items()} for r in rows]


def frame_records(frame) -> list[dict[str, Any]]:
    """A DataFrame's rows with pandas' missing markers as None and numbers as Python's."""
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [{k: v.item() if hasattr(v, "item") else v for k, v in r.items()} for r in records]


# --------------------------------------------------------------------------------------------
# Layouts of the file output
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_long_rows_are_the_spans_of_the_nested_output(suffix, tmp_path, tiny_models,
                                                      text_extractor):
    rows = layout_input(tiny_models)
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    predict_file(text_extractor, src, tmp_path / "nested.jsonl", batch_size=4)
    summary = predict_file(text_extractor, src, tmp_path / f"long{suffix}", batch_size=4,
                           layout="long")
    assert (summary.ok, summary.failed) == (12, 1)
    nested = read_table_rows(tmp_path / "nested.jsonl")
    long = as_text(read_table_rows(tmp_path / f"long{suffix}"))
    assert list(long[0]) == list(TableLayout.of("long").columns)
    by_id = defaultdict(list)
    for r in long:
        by_id[r["id"]].append(r)
    assert list(by_id) == [r["id"] for r in nested]               # input order, every row
    assert sum(len(r.get("values", [])) for r in nested) > 0
    for item in nested:
        got = by_id[item["id"]]
        spans = [(v["attribute"], v["value"], str(v["begin"]), str(v["end"]), repr(v["score"]))
                 for v in item.get("values", [])]
        cells = [(r["attribute"], r["value"], r["begin"], r["end"], r["score"]) for r in got]
        assert cells == (spans or [("", "", "", "", "")])        # no value: one empty row
        for r in got:
            assert r["text"] == item.get("text", "") and r["error"] == item.get("error", "")
    assert by_id["bad"][0]["error"].startswith("row 13:")
    assert by_id[rows[0]["id"]][0]["category"] == "shirts"
    assert json.loads(by_id[rows[1]["id"]][0]["extra"]) == {"note": {"any": ["json"]}}


def test_wide_picks_the_best_scoring_value_per_attribute(tmp_path, tiny_models,
                                                         text_extractor):
    values = [{"attribute": "Color", "value": "red", "begin": 0, "end": 3, "score": 0.6},
              {"attribute": "Color", "value": "blue", "begin": 4, "end": 8, "score": 0.9},
              {"attribute": "Fit", "value": "slim", "begin": 9, "end": 13, "score": 0.7},
              {"attribute": "Fit", "value": "loose", "begin": 14, "end": 19, "score": 0.7}]
    assert best_values(values) == {"Color": "blue", "Fit": "slim"}   # a tie: the first
    src = write_jsonl(tmp_path / "in.jsonl", layout_input(tiny_models))
    predict_file(text_extractor, src, tmp_path / "nested.jsonl", batch_size=4)
    predict_file(text_extractor, src, tmp_path / "wide.csv", batch_size=4, layout="wide")
    nested = read_table_rows(tmp_path / "nested.jsonl")
    wide = read_table_rows(tmp_path / "wide.csv")
    attributes = text_extractor.attributes
    assert list(wide[0]) == ["id", "cid", "category", "text", "image", *attributes,
                             "warning", "error", "extra"]
    assert [r["id"] for r in wide] == [r["id"] for r in nested]      # one row per input row
    found = 0
    for item, row in zip(nested, wide):
        for a in attributes:
            mine = [v for v in item.get("values", []) if v["attribute"] == a]
            best = max(mine, key=lambda v: v["score"])["value"] if mine else ""
            assert row[a] == best
            found += bool(mine)
    assert found


def test_wide_refuses_an_attribute_named_like_a_column():
    with pytest.raises(ValueError, match="text.*long layout"):
        TableLayout.of("wide", ["Color", "text"])


@pytest.mark.parametrize("layout", ["long", "wide"])
def test_csv_parquet_and_jsonl_hold_the_same_table(layout, tmp_path, tiny_models,
                                                   text_extractor):
    src = write_jsonl(tmp_path / "in.jsonl", layout_input(tiny_models))
    tables = {}
    for suffix in (".csv", ".parquet", ".jsonl"):
        predict_file(text_extractor, src, tmp_path / f"out{suffix}", batch_size=4,
                     layout=layout)
        tables[suffix] = read_table_rows(tmp_path / f"out{suffix}")
    assert tables[".parquet"] == tables[".jsonl"]                    # typed: the same cells
    assert as_text(tables[".parquet"]) == tables[".csv"]             # CSV: the same as text
    if layout == "long":
        schema = pq.read_schema(str(tmp_path / "out.parquet"))
        assert str(schema.field("begin").type) == "int64"
        assert str(schema.field("score").type) == "double"


# --------------------------------------------------------------------------------------------
# Resume
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["long", "wide"])
@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_resume_continues_a_table_output(layout, suffix, tmp_path, tiny_models,
                                         text_extractor):
    rows = layout_input(tiny_models)
    out = tmp_path / f"out{suffix}"
    predict_file(text_extractor, write_jsonl(tmp_path / "half.jsonl", rows[:5]), out,
                 batch_size=4, layout=layout)
    full = write_jsonl(tmp_path / "full.jsonl", rows)
    second = predict_file(text_extractor, full, out, batch_size=4, resume=True, layout=layout)
    # the long layout predicts the last item again: a kill may have cut its rows
    assert second.skipped == (4 if layout == "long" and suffix != ".parquet" else 5)
    predict_file(text_extractor, full, tmp_path / f"ref{suffix}", batch_size=4, layout=layout)
    key = lambda r: (r["id"], r.get("attribute"), r.get("begin"))  # noqa: E731
    assert_same_cells(sorted(as_text(read_table_rows(out)), key=key),
                      sorted(as_text(read_table_rows(tmp_path / f"ref{suffix}")), key=key))


def _float(cell: str) -> float | None:
    try:
        return float(cell) if "." in cell or "e" in cell else None
    except ValueError:
        return None


def assert_same_cells(got: list[dict[str, str]], want: list[dict[str, str]]) -> None:
    """The same rows and cells; a score to 1e-6 relative. The resumed run batches its items
    differently from the reference (it starts at the kill), and a different batch pads to a
    different length: on an AVX2 CPU without AVX-512 (AMD EPYC) the same item's score then
    differs in the 7th digit (0.32950573763 against 0.32950568954), while the spans,
    values and every other cell are identical."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        for k in g:
            a, b = _float(g[k]), _float(w[k])
            if a is not None and b is not None:
                assert a == pytest.approx(b, rel=1e-6, abs=1e-9), (g, w, k)
            else:
                assert g[k] == w[k], (g, w, k)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_resume_of_a_long_output_repredicts_an_item_cut_between_its_rows(suffix, tmp_path,
                                                                       tiny_models,
                                                                       text_extractor):
    rows = layout_input(tiny_models)
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    ref, out = tmp_path / f"ref{suffix}", tmp_path / f"out{suffix}"
    predict_file(text_extractor, src, ref, batch_size=4, layout="long")
    table = read_table_rows(ref)
    counts = Counter(r["id"] for r in table)
    multi = next(i for i, r in enumerate(table) if counts[r["id"]] > 1)
    lines = ref.read_text(encoding="utf-8").splitlines(keepends=True)
    header = 1 if suffix == ".csv" else 0
    out.write_text("".join(lines[:header + multi + 1]), encoding="utf-8")  # its first row only
    summary = predict_file(text_extractor, src, out, batch_size=4, resume=True, layout="long")
    assert summary.skipped == len({r["id"] for r in table[:multi]})
    assert read_table_rows(out) == table


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_resume_into_another_layout_is_a_clear_error(suffix, tmp_path, tiny_models,
                                                     text_extractor):
    src = write_jsonl(tmp_path / "in.jsonl", rows_for_input(tiny_models)[:3])
    out = tmp_path / f"out{suffix}"
    for written, resumed in (("nested", "long"), ("long", "wide"), ("wide", "nested")):
        predict_file(text_extractor, src, out, layout=written)
        with pytest.raises(DataError, match="another layout|another --layout"):
            predict_file(text_extractor, src, out, resume=True, layout=resumed)


# --------------------------------------------------------------------------------------------
# DataFrames and the CLI
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["long", "wide"])
def test_predict_frame_equals_what_the_cli_writes(layout, tmp_path, tiny_models,
                                                  text_extractor, capsys):
    pd = pytest.importorskip("pandas")
    rows = [{"id": r["id"], "text": r["text"], "image": r["image"]}
            for r in rows_for_input(tiny_models)] + [{"id": "bad", "text": "", "image": None}]
    df = pd.DataFrame(rows, index=[f"row{i}" for i in range(len(rows))])
    frame = text_extractor.predict_frame(df, text="text", image="image", id="id",
                                         layout=layout)
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    for suffix in (".parquet", ".csv"):
        out = tmp_path / f"out{suffix}"
        assert run_cli(["predict", str(tiny_models.text_model), str(src), "-o", str(out),
                        "--device", "cpu", "--layout", layout]) == 0
        written = read_table_rows(out)
        got = frame_records(frame)
        assert (got if suffix == ".parquet" else as_text(got)) == written
    assert list(frame.columns) == list(TableLayout.of(layout, text_extractor.attributes).columns)
    assert set(frame.index) == set(df.index)                     # joins back onto the input
    if layout == "wide":
        assert list(frame.index) == list(df.index)
    assert frame.loc["row12", "error"].startswith("row 13:")


def test_predict_frame_reads_only_the_named_columns(tiny_models, text_extractor):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"title": ["red shirt, slim fit", None], "price": [float("nan"), 3.0]})
    frame = text_extractor.predict_frame(df, text="title", layout="wide")
    assert list(frame["id"]) == ["0", "1"]                       # ids: the row positions
    assert frame["extra"].isna().all()                          # price stays in df
    assert frame.loc[1, "error"].startswith("row 2:")          # no text: an error row
    with pytest.raises(ValueError, match="no column image='image_path'"):
        text_extractor.predict_frame(df, text="title", image="image_path")


def test_predict_frame_without_pandas_names_the_extra(monkeypatch, text_extractor):
    monkeypatch.setitem(sys.modules, "pandas", None)     # `import pandas` raises ImportError
    with pytest.raises(ImportError, match=r"mjave\[pandas\]"):
        text_extractor.predict_frame(object(), text="title")


def test_help_documents_the_layouts(capsys):
    with pytest.raises(SystemExit):
        run_cli(["predict", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--layout {nested,long,wide}" in help_text
    for words in ("one row per predicted value", "one column per attribute"):
        assert words in help_text


def test_the_ray_engine_refuses_a_table_layout(tmp_path, capsys):
    assert run_cli(["predict", "model", "in.jsonl", "-o", str(tmp_path / "out"),
                    "--engine", "ray", "--layout", "long"]) == 1
    assert "--layout long is not supported with --engine ray" in capsys.readouterr().err
