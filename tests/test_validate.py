"""Every validation rule: the error names the file, the 1-based line and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mjave.data.errors import DataError
from mjave.data.formats import read_records
from mjave.data.records import Record, Span
from mjave.data.schema import AttributeSchema
from mjave.data.validate import check_known_attributes, first_difference

GOOD_JSON = '{"id": "ok", "text": "red shoe", "spans": [{"attr": "Color", "begin": 0, "end": 3, "value": "red"}]}'
GOOD_TSV = "c1\ts1\t红色裙\t<颜色>红色</颜色>裙"


def error(tmp_path: Path, name: str, lines: list[str]) -> DataError:
    """The strict-mode error of a file made of `lines`."""
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        read_records(p)
    return e.value


def assert_located(e: DataError, tmp_path: Path, name: str, line: int, field: str | None,
                   reason: str) -> None:
    assert e.path == str(tmp_path / name)
    assert e.line == line
    assert e.field == field
    assert e.reason == reason
    assert str(e).startswith(f"{tmp_path / name}:{line}: ")
    if field is not None:
        assert f"field '{field}': " in str(e)


def json_row(text: str = "red shoe", spans: list | None = None, **kw) -> str:
    obj = {"id": kw.pop("id", "r"), "text": text, "spans": spans or [], **kw}
    return json.dumps(obj, ensure_ascii=False)


# ------------------------------------------------------------------ JAVE TSV

def test_tsv_wrong_column_count(tmp_path: Path):
    e = error(tmp_path, "a.tsv", [GOOD_TSV, "c2\ts2\t红色裙"])
    assert_located(e, tmp_path, "a.tsv", 2, None, "wrong column count")
    assert "expected 4 tab-separated columns (cid, sid, raw text, tagged text), found 3" in str(e)


@pytest.mark.parametrize("tagged, reason, words", [
    ("<颜色>红色裙", "unbalanced tag", "<颜色> opened at character 0 is never closed"),
    ("红色</颜色>裙", "unbalanced tag", "closing tag </颜色> at character 2 has no opening tag"),
    ("<颜色>红色</材质>裙", "mismatched tag", "</材质> at character 6 does not match the open <颜色>"),
    ("<颜色>红<材质>色</材质></颜色>裙", "nested tag", "nested tag <材质> at character 5 inside <颜色>"),
    ("<颜色></颜色>红色裙", "empty span", "tag <颜色> at character 0 encloses no text"),
])
def test_tsv_tag_errors(tmp_path: Path, tagged: str, reason: str, words: str):
    e = error(tmp_path, "a.sample", [GOOD_TSV, GOOD_TSV.replace("s1", "s0"),
                                     f"c3\ts3\t红色裙\t{tagged}"])
    assert_located(e, tmp_path, "a.sample", 3, "tagged text", reason)
    assert words in str(e)


def test_tsv_tagged_text_differs_from_raw(tmp_path: Path):
    e = error(tmp_path, "a.tsv", ["c1\ts1\t红色长裙\t<颜色>红色</颜色>短裙"])
    assert_located(e, tmp_path, "a.tsv", 1, "tagged text", "text mismatch")
    assert "differs from the raw text at character 2" in str(e)
    assert "raw text has '长裙'" in str(e) and "has '短裙'" in str(e)
    assert first_difference("abc", "abd") == 2 and first_difference("ab", "abc") == 2


def test_tsv_empty_raw_text_and_sid(tmp_path: Path):
    e = error(tmp_path, "a.tsv", ["c1\ts1\t\t"])
    assert_located(e, tmp_path, "a.tsv", 1, "raw text", "empty text")
    e = error(tmp_path, "a.tsv", ["c1\t\tab\tab"])
    assert_located(e, tmp_path, "a.tsv", 1, "sid", "missing id")


def test_tsv_duplicate_sid_names_first_line(tmp_path: Path):
    e = error(tmp_path, "a.tsv", [GOOD_TSV, "c2\ts2\tab\tab", "c3\ts1\tcd\tcd"])
    assert_located(e, tmp_path, "a.tsv", 3, "sid", "duplicate id")
    assert "duplicate sid 's1'; first seen on line 1" in str(e)


# ------------------------------------------------------------------ JSONL

def test_invalid_json(tmp_path: Path):
    e = error(tmp_path, "a.jsonl", [GOOD_JSON, '{"id": "x", "text": "ab"'])
    assert_located(e, tmp_path, "a.jsonl", 2, None, "invalid JSON")
    assert "invalid JSON: Expecting ',' delimiter at column 25" in str(e)


def test_json_row_not_an_object(tmp_path: Path):
    e = error(tmp_path, "a.jsonl", ["[1, 2]"])
    assert_located(e, tmp_path, "a.jsonl", 1, None, "not an object")
    assert "expected a JSON object, found list" in str(e)


def test_bad_utf8(tmp_path: Path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(GOOD_JSON.encode() + b'\n{"id": "\xff"}\n')
    with pytest.raises(DataError) as e:
        read_records(p)
    assert_located(e.value, tmp_path, "a.jsonl", 2, None, "bad encoding")


def test_missing_and_empty_text(tmp_path: Path):
    e = error(tmp_path, "a.jsonl", [GOOD_JSON, '{"id": "x", "spans": []}'])
    assert_located(e, tmp_path, "a.jsonl", 2, "text", "missing text")
    e = error(tmp_path, "a.jsonl", [json_row(text="")])
    assert_located(e, tmp_path, "a.jsonl", 1, "text", "empty text")
    assert "the text is empty" in str(e)
    e = error(tmp_path, "a.jsonl", [json_row(text="  ")])
    assert_located(e, tmp_path, "a.jsonl", 1, "text", "empty text")
    e = error(tmp_path, "a.jsonl", ['{"id": "x", "text": 5}'])
    assert_located(e, tmp_path, "a.jsonl", 1, "text", "missing text")


def test_missing_and_bad_id(tmp_path: Path):
    e = error(tmp_path, "a.jsonl", ['{"text": "ab"}'])
    assert_located(e, tmp_path, "a.jsonl", 1, "id", "missing id")
    e = error(tmp_path, "a.jsonl", ['{"id": 3, "text": "ab"}'])
    assert_located(e, tmp_path, "a.jsonl", 1, "id", "missing id")


def test_span_end_past_text(tmp_path: Path):
    text = "x" * 31
    spans = [{"attr": "A", "begin": 0, "end": 1, "value": "x"},
             {"attr": "B", "begin": 1, "end": 2, "value": "x"},
             {"attr": "C", "begin": 30, "end": 40, "value": "x"}]
    lines = [json_row(id=f"r{i}") for i in range(11)] + [json_row(text, spans, id="bad")]
    e = error(tmp_path, "train.jsonl", lines)
    assert_located(e, tmp_path, "train.jsonl", 12, "spans[2].end", "span out of range")
    assert str(e).endswith("train.jsonl:12: field 'spans[2].end': span end 40 is past the end "
                           "of the text (length 31)")


def test_span_negative_begin(tmp_path: Path):
    e = error(tmp_path, "a.jsonl", [json_row("ab", [{"attr": "A", "begin": -1, "end": 1,
                                                     "value": "a"}])])
    assert_located(e, tmp_path, "a.jsonl", 1, "spans[0].begin", "span out of range")


@pytest.mark.parametrize("begin, end", [(2, 2), (3, 1)])
def test_span_begin_not_before_end(tmp_path: Path, begin: int, end: int):
    e = error(tmp_path, "a.jsonl", [json_row("abcd", [{"attr": "A", "begin": begin, "end": end,
                                                       "value": ""}])])
    assert_located(e, tmp_path, "a.jsonl", 1, "spans[0].end", "empty span")
    assert f"span begin {begin} is not before its end {end}" in str(e)


@pytest.mark.parametrize("key, value", [("begin", "0"), ("end", 2.0), ("begin", True),
                                        ("end", None)])
def test_span_non_int_offsets(tmp_path: Path, key: str, value):
    span = {"attr": "A", "begin": 0, "end": 2, "value": "ab", key: value}
    e = error(tmp_path, "a.jsonl", [json_row("abc", [span])])
    assert_located(e, tmp_path, "a.jsonl", 1, f"spans[0].{key}", "non-int offset")
    assert f"span {key} must be an integer, found {value!r}" in str(e)


def test_value_differs_from_text(tmp_path: Path):
    span = {"attr": "Color", "begin": 0, "end": 3, "value": "blue"}
    e = error(tmp_path, "a.jsonl", [GOOD_JSON, json_row("red shoe", [span], id="b")])
    assert_located(e, tmp_path, "a.jsonl", 2, "spans[0].value", "value mismatch")
    assert "value 'blue' differs from text[0:3] 'red'" in str(e)


@pytest.mark.parametrize("span", [{"begin": 0, "end": 3, "value": "red"},
                                  {"attr": "", "begin": 0, "end": 3, "value": "red"},
                                  {"attr": None, "begin": 0, "end": 3, "value": "red"}])
def test_missing_attr(tmp_path: Path, span: dict):
    e = error(tmp_path, "a.jsonl", [json_row("red shoe", [span])])
    assert_located(e, tmp_path, "a.jsonl", 1, "spans[0].attr", "missing attr")


def test_span_missing_offset_key(tmp_path: Path):
    e = error(tmp_path, "a.jsonl", [json_row("red", [{"attr": "A", "end": 3, "value": "red"}])])
    assert_located(e, tmp_path, "a.jsonl", 1, "spans[0].begin", "missing span begin")


def test_bad_optional_key_types(tmp_path: Path):
    e = error(tmp_path, "a.jsonl", [json_row(category=3)])
    assert_located(e, tmp_path, "a.jsonl", 1, "category", "bad category")
    e = error(tmp_path, "a.jsonl", ['{"id": "x", "text": "ab", "spans": {}}'])
    assert_located(e, tmp_path, "a.jsonl", 1, "spans", "bad spans")


def test_duplicate_id_names_first_line(tmp_path: Path):
    e = error(tmp_path, "a.jsonl", [json_row(id="a"), json_row(id="b"), "", json_row(id="a")])
    assert_located(e, tmp_path, "a.jsonl", 4, "id", "duplicate id")
    assert "duplicate id 'a'; first seen on line 1" in str(e)


def test_missing_file_is_a_data_error(tmp_path: Path):
    with pytest.raises(DataError) as e:
        read_records(tmp_path / "nope.jsonl")
    assert e.value.path == str(tmp_path / "nope.jsonl") and "No such file" in str(e.value)


# ------------------------------------------------------------------ CoNLL

def test_conll_bad_tag(tmp_path: Path):
    e = error(tmp_path, "a.conll", ["# id = 1", "red\tB-Color", "shoe\tX-Type"])
    assert_located(e, tmp_path, "a.conll", 3, "tag", "bad tag")
    assert "not a BIO tag: 'X-Type'" in str(e)


def test_conll_wrong_column_count(tmp_path: Path):
    e = error(tmp_path, "a.conll", ["red\tO", "", "blue\tO\textra"])
    assert_located(e, tmp_path, "a.conll", 3, None, "wrong column count")


def test_conll_token_not_in_text(tmp_path: Path):
    e = error(tmp_path, "a.conll", ["# text = red shoe", "red\tO", "boot\tO"])
    assert_located(e, tmp_path, "a.conll", 3, "token", "token mismatch")
    assert "token 'boot' does not match '# text' at character 4" in str(e)
    e = error(tmp_path, "a.conll", ["# text = red shoe", "red\tO"])
    assert_located(e, tmp_path, "a.conll", 1, "text", "token mismatch")


def test_conll_duplicate_id(tmp_path: Path):
    e = error(tmp_path, "a.conll", ["# id = x", "a\tO", "", "# id = x", "b\tO"])
    assert_located(e, tmp_path, "a.conll", 4, "id", "duplicate id")


# ------------------------------------------------------------------ lenient mode

def test_lenient_skips_and_counts_every_bad_row(tmp_path: Path):
    p = tmp_path / "a.jsonl"
    p.write_text("\n".join([
        GOOD_JSON,
        "{not json",
        json_row(text="", id="e"),
        json_row("ab", [{"attr": "A", "begin": 0, "end": 9, "value": "ab"}], id="f"),
        json_row(id="ok"),  # duplicate of line 1
        json_row(id="g"),
    ]) + "\n", encoding="utf-8")
    records, issues = read_records(p, strict=False)
    assert [r.id for r in records] == ["ok", "g"]
    assert issues.rows_read == 6
    assert [e.line for e in issues.skipped] == [2, 3, 4, 5]
    assert issues.reasons() == {"invalid JSON": 1, "empty text": 1, "span out of range": 1,
                                "duplicate id": 1}
    assert "skipped 4 of 6 rows" in issues.summary()


def test_lenient_tsv(tmp_path: Path):
    p = tmp_path / "a.tsv"
    p.write_text(f"{GOOD_TSV}\nc\ts2\t红\t<颜色>红\n", encoding="utf-8")
    records, issues = read_records(p, strict=False)
    assert len(records) == 1 and issues.rows_read == 2
    assert issues.skipped[0].field == "tagged text" and issues.skipped[0].line == 2


# ------------------------------------------------------------------ predict time

def test_check_known_attributes():
    schema = AttributeSchema(("Brand", "Color"))
    check_known_attributes(Record("1", "red HP", [Span(0, 3, "Color", "red")]), schema)
    rec = Record("1", "red HP", [Span(0, 3, "Color", "red"), Span(4, 6, "Maker", "HP")])
    with pytest.raises(DataError) as e:
        check_known_attributes(rec, schema)
    assert e.value.field == "spans[1].attr" and e.value.reason == "unknown attribute"
    assert "unknown attribute 'Maker'; the model knows 2: Brand, Color" in str(e.value)
