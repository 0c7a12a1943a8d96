"""Readers and writers: exact round trips on the real samples, and what each format cannot hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mjave.data.errors import DataError, RowIssues
from mjave.data.formats import detect_labelled_format as detect_format
from mjave.data.formats import iter_records, read_records, write_records
from mjave.data.formats.conll import conll_tokens, join_tokens
from mjave.data.formats.jave_tsv import parse_tagged, render_tagged
from mjave.data.formats.jsonl import record_from_json, record_to_json
from mjave.data.records import Record, Span
from mjave.data.spans import resolve_overlaps

JAVE_FILES = ["train.sample", "valid.sample", "test.sample"]
JSONL_FILES = ["oamine/train.jsonl", "oamine/valid.jsonl", "wdcpave/train.jsonl",
               "wdcpave/valid.jsonl"]


def _strip(record: Record) -> Record:
    """The record as BIO can hold it: overlaps resolved, blank span edges trimmed."""
    kept = []
    for s in resolve_overlaps(record.spans)[0]:
        b, e = s.begin, s.end
        while record.text[b].isspace():
            b += 1
        while record.text[e - 1].isspace():
            e -= 1
        kept.append(Span(b, e, s.attr, record.text[b:e]))
    return Record(record.id, record.text, kept, record.cid, record.category, record.image,
                  record.extra)


# ------------------------------------------------------------------ JAVE TSV

@pytest.mark.parametrize("name", JAVE_FILES)
def test_jave_sample_round_trip_is_byte_exact(shared_dir: Path, tmp_path: Path, name: str):
    src = shared_dir / "data" / "jave_sample" / name
    records, issues = read_records(src)
    assert issues.rows_read == len(records) and not issues.skipped
    out = tmp_path / name
    written = write_records(records, out)
    assert written.dropped_overlaps == 0 and not written.skipped
    assert out.read_bytes() == src.read_bytes()


def test_jave_sample_has_90_lines_and_known_offsets(shared_dir: Path):
    total = 0
    for name in JAVE_FILES:
        total += len(read_records(shared_dir / "data" / "jave_sample" / name)[0])
    assert total == 90
    records, _ = read_records(shared_dir / "data" / "jave_sample" / "train.sample")
    r = next(r for r in records if r.id == "s_8029")
    assert r.cid == "c_213128596"
    assert r.text == "以纯短袖T恤撞色英文印花时尚刺绣"
    assert r.spans == [Span(2, 4, "袖长", "短袖"), Span(6, 8, "图案", "撞色"),
                       Span(10, 12, "图案", "印花"), Span(14, 16, "图案", "刺绣")]


def test_parse_and_render_tagged_adjacent_tags():
    raw = "A字毛呢裙"
    tagged = "<版型>A字</版型><材质>毛呢</材质>裙"
    spans = parse_tagged(tagged, raw)
    assert spans == [Span(0, 2, "版型", "A字"), Span(2, 4, "材质", "毛呢")]
    assert render_tagged(raw, spans) == tagged
    assert parse_tagged("no tags", "no tags") == []


def test_jave_writer_drops_overlaps_and_counts_unheld_fields(tmp_path: Path):
    rec = Record("s1", "红色连衣裙", [Span(0, 2, "颜色", "红色"), Span(0, 5, "款式", "红色连衣裙"),
                                   Span(2, 5, "品类", "连衣裙")],
                 cid="c1", category="dress", extra={"note": 1})
    out = tmp_path / "o.tsv"
    issues = write_records([rec], out)
    assert issues.dropped_overlaps == 2
    assert issues.dropped_fields == {"category": 1, "note": 1}
    assert out.read_text(encoding="utf-8") == "c1\ts1\t红色连衣裙\t<款式>红色连衣裙</款式>\n"
    assert "dropped 2 overlapping spans" in issues.summary()


def test_jave_writer_refuses_what_the_format_cannot_hold(tmp_path: Path):
    out = tmp_path / "o.tsv"
    with pytest.raises(DataError) as e:
        write_records([Record("s1", "line one\nline two")], out)
    assert e.value.field == "text" and "record 1 (id 's1')" in str(e.value)
    assert not out.exists() and not (tmp_path / "o.tsv.tmp").exists()
    with pytest.raises(DataError, match="read back as a tag"):
        write_records([Record("s1", "size <XL> shirt")], out)
    with pytest.raises(DataError, match="attribute name"):
        write_records([Record("s1", "abc", [Span(0, 1, "a<b", "a")])], out)
    issues = write_records([Record("s1", "a\tb"), Record("s2", "ok")], out, strict=False)
    assert issues.rows_read == 2 and [e.reason for e in issues.skipped] == ["not representable"]
    assert out.read_text(encoding="utf-8") == "\ts2\tok\tok\n"


def test_jave_attribute_names_with_spaces_and_slashes_round_trip(tmp_path: Path):
    rec = Record("s1", "12 x 4 cm box", [Span(0, 9, "Size/Weight", "12 x 4 cm"),
                                         Span(10, 13, "Product Type", "box")], cid="c")
    out = tmp_path / "o.tsv"
    write_records([rec], out)
    assert read_records(out)[0] == [rec]


# ------------------------------------------------------------------ JSONL

@pytest.mark.parametrize("name", JSONL_FILES)
def test_jsonl_round_trip_is_exact(shared_dir: Path, tmp_path: Path, name: str):
    src = shared_dir / "data" / name
    records, issues = read_records(src)
    assert len(records) == issues.rows_read > 100 and not issues.skipped
    out = tmp_path / "out.jsonl"
    write_records(records, out)
    src_lines = src.read_text(encoding="utf-8").splitlines()
    out_lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(x) for x in out_lines] == [json.loads(x) for x in src_lines]
    assert out.read_bytes() == src.read_bytes()


def test_oamine_extras_are_kept(shared_dir: Path):
    records, _ = read_records(shared_dir / "data" / "oamine" / "valid.jsonl")
    assert all("absent_attrs" in r.extra for r in records)
    assert records[0].category == "Breakfast Cereal"
    assert list(record_to_json(records[0])) == ["id", "category", "text", "spans", "absent_attrs"]


def test_wdcpave_overlaps_and_repeated_attributes_are_legal(shared_dir: Path):
    records, issues = read_records(shared_dir / "data" / "wdcpave" / "train.jsonl")
    assert not issues.skipped
    assert sum(len(resolve_overlaps(r.spans)[1]) for r in records) == 160
    # The shared copy holds no repeated attribute within one text, so check that on a made-up row.
    rec = record_from_json({"id": "x", "text": "HP or HP", "spans": [
        {"attr": "Brand", "begin": 0, "end": 2, "value": "HP"},
        {"attr": "Brand", "begin": 6, "end": 8, "value": "HP"}]})
    assert rec.attributes() == ["Brand"] and len(rec.spans) == 2


def test_json_key_order_and_optional_keys():
    rec = Record("1", "red shoe", [Span(0, 3, "Color", "red")], cid="c", image="c.jpg",
                 extra={"z": [1], "a": None})
    obj = record_to_json(rec)
    assert list(obj) == ["id", "cid", "text", "image", "spans", "z", "a"]
    assert obj["spans"] == [{"attr": "Color", "begin": 0, "end": 3, "value": "red"}]
    assert record_from_json(obj) == rec
    assert list(record_to_json(Record("2", "x"))) == ["id", "text", "spans"]


def test_jsonl_reader_tolerates_crlf_bom_and_blank_lines(tmp_path: Path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"id": "1", "text": "ab", "spans": []}\r\n\r\n'
                  b'{"id": "2", "text": "cd", "spans": []}\r\n')
    records, issues = read_records(p)
    assert [r.id for r in records] == ["1", "2"] and issues.rows_read == 2


# ------------------------------------------------------------------ CoNLL

def test_conll_tokens():
    text = "以纯短袖T恤, 11oz (Pack of 6)"
    toks = [text[a:b] for a, b in conll_tokens(text)]
    assert toks == ["以", "纯", "短", "袖", "T", "恤", ",", "11oz", "(", "Pack", "of", "6", ")"]
    text = "ES1000Part"
    assert [text[a:b] for a, b in conll_tokens(text, [6, 10])] == ["ES1000", "Part"]


def test_join_tokens_without_text():
    assert join_tokens(["以", "纯", "T", "恤", "，", "好"])[0] == "以纯T恤，好"
    text, offsets = join_tokens(["Pack", "of", "6", ","])
    assert text == "Pack of 6 ," and offsets[2] == (8, 9)


@pytest.mark.parametrize("name", JAVE_FILES)
def test_conll_round_trip_of_jave_sample(shared_dir: Path, tmp_path: Path, name: str):
    records, _ = read_records(shared_dir / "data" / "jave_sample" / name)
    out = tmp_path / "x.conll"
    issues = write_records(records, out)
    assert issues.summary() == ""
    assert read_records(out)[0] == records


@pytest.mark.parametrize("name", JSONL_FILES)
def test_conll_round_trip_of_jsonl(shared_dir: Path, tmp_path: Path, name: str):
    records, _ = read_records(shared_dir / "data" / name)
    out = tmp_path / "x.conll"
    issues = write_records(records, out)
    back, _ = read_records(out)
    assert back == [_strip(r) for r in records]
    expected_drops = sum(len(resolve_overlaps(r.spans)[1]) for r in records)
    assert issues.dropped_overlaps == expected_drops
    assert issues.trimmed_spans == sum(s != t for r in records
                                       for s, t in zip(resolve_overlaps(r.spans)[0],
                                                       _strip(r).spans))


def test_conll_layout_and_newline_text(tmp_path: Path):
    rec = Record("7", "Red #1\nshoe", [Span(0, 3, "Color", "Red")], category="Shoes",
                 extra={"absent_attrs": ["Size"]})
    out = tmp_path / "x.bio"
    write_records([rec], out)
    assert out.read_text(encoding="utf-8") == (
        "# id = 7\n# category = Shoes\n# text_json = \"Red #1\\nshoe\"\n"
        "# absent_attrs_json = [\"Size\"]\nRed\tB-Color\n#\tO\n1\tO\nshoe\tO\n\n")
    assert read_records(out)[0] == [rec]


def test_conll_without_text_joins_tokens(tmp_path: Path):
    p = tmp_path / "x.conll"
    p.write_text("Pack\tB-Pack_size\nof\tI-Pack_size\n6\tI-Pack_size\n\n"
                 "红\tB-颜色\n色\tI-颜色\n裙\tO\n", encoding="utf-8")
    records, _ = read_records(p)
    assert [r.id for r in records] == ["1", "2"]
    assert records[0].text == "Pack of 6"
    assert records[0].spans == [Span(0, 9, "Pack_size", "Pack of 6")]
    assert records[1].text == "红色裙" and records[1].spans == [Span(0, 2, "颜色", "红色")]


def test_conll_with_text_restores_offsets(tmp_path: Path):
    p = tmp_path / "x.conll"
    p.write_text("# id = a\n# text =  Pack  of 6\nPack\tO\nof\tO\n6\tB-N\n", encoding="utf-8")
    (r,), _ = read_records(p)
    assert r.text == " Pack  of 6" and r.spans == [Span(10, 11, "N", "6")]


# ------------------------------------------------------------------ API

def test_detect_format():
    assert detect_format("a/b.JSONL") == "jsonl"
    assert detect_format("x.sample") == "jave" and detect_format("x.txt") == "jave"
    assert detect_format("x.bio") == "conll"
    assert detect_format("x.csv", "jsonl") == "jsonl"
    with pytest.raises(DataError) as e:
        detect_format("data/x.csv")
    assert "data/x.csv" in str(e.value) and "'.csv'" in str(e.value)
    with pytest.raises(DataError, match="unknown format 'xml'"):
        detect_format("x.jsonl", "xml")


def test_explicit_format_overrides_extension(tmp_path: Path):
    p = tmp_path / "data.txt"
    p.write_text('{"id": "1", "text": "ab"}\n', encoding="utf-8")
    records, _ = read_records(p, format="jsonl")
    assert records == [Record("1", "ab")]


def test_iter_records_streams_and_needs_a_tally_when_lenient(tmp_path: Path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"id": "1", "text": "ab"}\n{"id": "2", "text": ""}\n', encoding="utf-8")
    it = iter_records(p)
    assert next(it).id == "1"
    with pytest.raises(DataError):
        next(it)
    with pytest.raises(ValueError, match="issues"):
        iter_records(p, strict=False)
    issues = RowIssues()
    assert [r.id for r in iter_records(p, strict=False, issues=issues)] == ["1"]
    assert issues.rows_read == 2 and len(issues.skipped) == 1


def test_write_creates_parent_folders(tmp_path: Path):
    out = tmp_path / "a" / "b" / "c.jsonl"
    write_records([Record("1", "x")], out)
    assert out.read_text(encoding="utf-8") == '{"id": "1", "text": "x", "spans": []}\n'


def test_writer_validates_records(tmp_path: Path):
    with pytest.raises(DataError) as e:
        write_records([Record("1", "abc", [Span(0, 9, "A", "abc")])], tmp_path / "x.jsonl")
    assert e.value.field == "spans[0].end"
    with pytest.raises(DataError, match="duplicate id '1'; first seen on record 1"):
        write_records([Record("1", "a"), Record("1", "b")], tmp_path / "x.jsonl")
