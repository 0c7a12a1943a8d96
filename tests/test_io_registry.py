"""The one reader registry (`mjave.data.formats`) and the one row-to-input function and row checks
(`mjave.data.rows`): every format reads the same records, the local and the Ray engine flag
the same bad rows with the same messages, and predict and completion fail a missing image alike.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mjave.data import formats as io
from mjave.data import rows
from mjave.data.errors import DataError, RowIssues
from mjave.data.formats import write_records
from mjave.data.records import Record, Span

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

TEXTS = [("s1", "p1", "red cotton shirt"), ("s2", "p1", "slim fit, blue"),
         ("s3", None, "green shoes")]


def records() -> list[Record]:
    out = []
    for sid, cid, text in TEXTS:
        color = next((c for c in ("red", "blue") if c in text), None)
        i = text.find(color) if color else -1
        spans = [Span(i, i + len(color), "Color", color)] if color else []
        out.append(Record(id=sid, text=text, spans=spans, cid=cid))
    return out


def write_all(tmp_path: Path) -> dict[str, Path]:
    """The same records in all five formats (CSV and Parquet hold no spans)."""
    paths = {}
    for name in ("jsonl", "tsv", "conll"):
        paths[name] = tmp_path / f"r.{name}"
        write_records(records(), paths[name])
    paths["csv"] = tmp_path / "r.csv"
    with open(paths["csv"], "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "cid", "text"])
        w.writerows([sid, cid or "", text] for sid, cid, text in TEXTS)
    paths["parquet"] = tmp_path / "r.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": s, "cid": c, "text": t} for s, c, t in TEXTS]),
                   str(paths["parquet"]), row_group_size=2)
    return paths


def test_every_format_reads_the_same_records(tmp_path):
    paths = write_all(tmp_path)
    assert {name: io.detect_format(p) for name, p in paths.items()} == {
        "jsonl": "jsonl", "tsv": "jave", "conll": "conll", "csv": "csv", "parquet": "parquet"}
    read = {name: io.read_records(p)[0] for name, p in paths.items()}
    for name, got in read.items():
        assert [(r.id, r.cid, r.text) for r in got] == TEXTS, name
    for name in ("jsonl", "tsv", "conll"):
        assert [r.spans for r in read[name]] == [r.spans for r in records()], name
    # and the raw rows batch prediction streams: the same ids, texts and cids
    for name, p in paths.items():
        got = [(r.id, r.extra.get("cid") or None, r.text) for r in io.read_input(p)]
        assert got == TEXTS, name


def test_explicit_format_and_unknown_extension(tmp_path):
    p = tmp_path / "data.sample"
    write_records(records(), p, "jave")
    assert io.detect_format(tmp_path / "x.dat", "tsv") == "jave"
    with pytest.raises(DataError, match="cannot tell the format from the extension '.dat'"):
        io.detect_format(tmp_path / "x.dat")
    with pytest.raises(DataError, match="cannot tell the format from the extension '.csv'"):
        io.detect_format(tmp_path / "x.csv", allowed=io.RECORD_FORMATS)
    assert [r.id for r in io.read_records(p)[0]] == ["s1", "s2", "s3"]


def test_lenient_reading_counts_skipped_rows_with_their_lines(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_bytes(b"id,text\na1,fine\n,no id\nb\xff,bad byte\nc,too,many\na1,dup\n")
    issues = RowIssues()
    got = list(io.iter_records(p, strict=False, issues=issues))
    assert [r.text for r in got] == ["fine"]
    assert issues.rows_read == 5
    assert [(e.line, e.reason) for e in issues.skipped] == [
        (3, "empty id"), (4, "bad encoding"), (5, "wrong number of columns"),
        (6, "duplicate id")]
    with pytest.raises(DataError, match=r"bad.csv:3: "):
        io.read_records(p)


def test_parquet_is_read_in_batches_and_checked_for_columns(tmp_path):
    p = tmp_path / "big.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": str(i), "text": f"t{i}"} for i in range(7)]),
                   str(p), row_group_size=3)
    assert [r.number for r in io.read_input(p, batch_size=2)] == list(range(1, 8))
    bad = tmp_path / "no-text.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": "1"}]), str(bad))
    with pytest.raises(DataError, match="lack text"):
        io.read_input(bad)


def test_to_item_resolves_images_like_training(tmp_path):
    (tmp_path / "p1.png").write_bytes(b"x")
    rec = Record(id="s1", text="red shirt", cid="p1", category="shirts")
    assert rows.to_item(rec, tmp_path) == {"text": "red shirt", "image": tmp_path / "p1.png",
                                           "category": "shirts"}
    assert rows.to_item({"id": 3, "text": "t", "image": "a/b.jpg"}, tmp_path)["image"] == \
        tmp_path / "a" / "b.jpg"
    assert rows.to_item(rec, tmp_path, uses_image=False)["image"] is None
    assert rows.to_item({"text": "t", "image": b"png"})["image"] == b"png"
    with pytest.raises(DataError) as e:
        rows.to_item({"id": "s9", "text": "t"}, tmp_path, missing_image="error")
    assert e.value.reason == "missing image" and "s9.jpg" in str(e.value)
    with pytest.raises(DataError, match="path string or bytes"):
        rows.to_item({"id": "s9", "text": "t", "image": 5})


def test_data_imports_no_torch():
    code = ("import sys, mjave.data.formats, mjave.data.rows; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- one set of row checks, one image rule -------------------------------------------------


class FakeExtractor:
    """What the engines and completion ask of an Extractor; every item predicts nothing."""

    uses_image = True
    missing_image = "error"
    restrict_to_category = False

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def predict_batch(self, items: list[dict[str, Any]], errors: str = "raise"
                      ) -> list[dict[str, Any]]:
        self.items += items
        return [{"attributes": [], "values": []} for _ in items]


BAD_ROWS = [
    {"id": "ok", "text": "red shirt", "image": "ok.png"},
    {"text": "no id"},
    {"id": 1.5, "text": "float id"},
    {"id": "e", "text": "   "},
    {"id": "n", "text": None, "image": "ok.png"},
    {"id": "t", "text": 5},
    {"id": "ok", "text": "duplicate"},
    {"id": "noimg", "text": "red shirt"},
    {"id": "field", "text": "red shirt", "image": 5},
]


def test_local_and_ray_engines_flag_the_same_rows_alike(tmp_path):
    from mjave.inference.batch import predict_file
    from mjave.inference.ray_engine import ModelFacts, decode_images, stage_row, staged_schema

    (tmp_path / "ok.png").write_bytes(b"not decoded by the fake model")
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in BAD_ROWS) + "{bad\n", encoding="utf-8")
    predict_file(FakeExtractor(), src, tmp_path / "out.jsonl", image_root=tmp_path)
    local = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    local_errors = {r.get("error") for r in local}

    dups = {"ok": 1}  # what the duplicate pass finds: id "ok", first at row 1
    staged = [stage_row(r, "in.jsonl", 0, dups, ["in.jsonl"]) for r in io.read_input(src)]
    facts = ModelFacts(True, "error", 8, "none")
    table = decode_images(pa.Table.from_pylist(staged, schema=staged_schema()), facts=facts,
                          image_root=str(tmp_path), base_dir=str(tmp_path))
    ray_errors = {r["error"] for r in table.to_pylist()}
    assert {e and e.removeprefix("in.jsonl ") for e in ray_errors} == local_errors
    assert len([e for e in local_errors if e]) == 9


def test_missing_image_is_one_message_in_predict_and_completion(tmp_path):
    from mjave.completion.suggest import complete
    from mjave.inference.batch import predict_file

    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "s1", "cid": "p1", "text": "red shirt"}) + "\n",
                   encoding="utf-8")
    summary = predict_file(FakeExtractor(), src, tmp_path / "out.jsonl", image_root=tmp_path)
    error = json.loads((tmp_path / "out.jsonl").read_text())["error"]
    want = rows.missing_image(rows.resolve_image_path({"id": "s1", "cid": "p1"}, tmp_path)[1])
    assert error == f"row 1: {want}"
    done = complete(FakeExtractor(), src, [("p1", "Color", "red")], tmp_path / "s.csv",
                    image_root=tmp_path)
    assert summary.reasons == done.reasons == {want.reason: 1}
