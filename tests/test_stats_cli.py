"""Dataset statistics and the `mjave data ...` commands (run through `main([...])`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mjave.cli import build_parser, main
from mjave.data.errors import DataError, RowIssues
from mjave.data.formats import read_records, write_records
from mjave.data.records import Record, Span
from mjave.data.stats import dataset_stats, format_stats, percentile


def small_dataset() -> list[Record]:
    return [
        Record("1", "red shoe", [Span(0, 3, "Color", "red"), Span(4, 8, "Type", "shoe")],
               cid="p1", category="Shoes"),
        Record("2", "red shoes", [Span(0, 3, "Color", "red"), Span(0, 9, "Name", "red shoes")],
               cid="p1", category="Shoes"),
        Record("3", "blue hat", [Span(0, 4, "Color", "blue")], cid="p2", category="Hats"),
        Record("4", "plain"),
    ]


def test_dataset_stats_concrete_values():
    issues = RowIssues(rows_read=6)
    issues.skip(DataError("x", reason="empty text"))
    issues.skip(DataError("y", reason="empty text"))
    s = dataset_stats(small_dataset(), issues)
    assert s["instances"] == 4
    assert s["products"] == 3  # p1, p2, and record 4 stands for itself
    assert s["categories"] == {"Shoes": 2, "Hats": 1}
    assert s["attributes"]["Color"] == {"spans": 3, "values": 2, "texts": 3}
    assert list(s["attributes"]) == ["Color", "Name", "Type"]
    assert s["spans"] == 5
    assert s["spans_per_text"]["mean"] == 1.25 and s["spans_per_text"]["max"] == 2
    assert s["spans_per_text"]["histogram"]["0"] == 1
    assert s["spans_per_text"]["histogram"]["2"] == 2
    assert s["spans_per_text"]["histogram"]["10+"] == 0
    assert s["text_length"] == {"p50": 8, "p90": 9, "p99": 9, "max": 9}
    assert s["overlaps"] == {"dropped_spans": 1, "texts": 1}
    assert s["values_per_attribute"] == {"max": 1, "text_attributes_with_several": 0}
    assert s["rows_read"] == 6
    assert s["skipped"] == {"rows": 2, "by_reason": {"empty text": 2}}
    json.dumps(s)  # JSON-ready


def test_percentile_nearest_rank():
    assert percentile([1, 2, 3, 4], 50) == 2
    assert percentile(list(range(1, 101)), 90) == 90
    assert percentile([], 50) == 0


def test_format_stats_is_a_readable_table():
    text = format_stats(dataset_stats(small_dataset()))
    assert "instances  4" in text
    assert "overlapping spans BIO drops: 1 in 1 texts" in text
    assert "text length in characters: p50 8, p90 9, p99 9, max 9" in text
    color = next(line for line in text.splitlines() if line.strip().startswith("Color"))
    assert color.split() == ["Color", "3", "2", "3"]


def test_values_per_attribute_counts_each_text_attribute_pair_once():
    records = [*small_dataset(),
               Record("5", "red or blue or green", [Span(0, 3, "Color", "red"),
                                                    Span(7, 11, "Color", "blue"),
                                                    Span(15, 20, "Color", "green")]),
               Record("6", "red and blue hat", [Span(0, 3, "Color", "red"),
                                                Span(8, 12, "Color", "blue"),
                                                Span(13, 16, "Type", "hat")])]
    s = dataset_stats(records)
    assert s["values_per_attribute"] == {"max": 3, "text_attributes_with_several": 2}
    assert "values of one attribute in one text: max 3 (2 text-attribute pairs" in format_stats(s)


def test_empty_dataset_stats():
    s = dataset_stats([])
    assert s["instances"] == 0 and s["text_length"]["max"] == 0
    assert s["values_per_attribute"] == {"max": 0, "text_attributes_with_several": 0}
    assert "instances  0" in format_stats(s)


@pytest.mark.parametrize("name, instances, spans, attrs, dropped", [
    ("jave_sample/train.sample", 50, 60, 17, 0),
    ("oamine/train.jsonl", 1236, 6245, 51, 0),
    ("oamine/valid.jsonl", 216, 1115, 47, 0),
    ("wdcpave/train.jsonl", 907, 5952, 51, 160),
    ("wdcpave/valid.jsonl", 159, 979, 49, 24),
])
def test_stats_on_shared_datasets(shared_dir: Path, name: str, instances: int, spans: int,
                                  attrs: int, dropped: int):
    records, issues = read_records(shared_dir / "data" / name)
    s = dataset_stats(records, issues)
    assert (s["instances"], s["spans"], len(s["attributes"])) == (instances, spans, attrs)
    assert s["overlaps"]["dropped_spans"] == dropped
    assert s["skipped"]["rows"] == 0
    if name.startswith("oamine"):
        assert len(s["categories"]) == 10


def test_shared_wdcpave_text_lengths(shared_dir: Path):
    records, _ = read_records(shared_dir / "data" / "wdcpave" / "valid.jsonl")
    s = dataset_stats(records)
    assert s["text_length"] == {"p50": 343, "p90": 770, "p99": 969, "max": 1090}
    assert s["overlaps"]["texts"] == 22


# ------------------------------------------------------------------ CLI

GOOD = '{"id": "a", "text": "red shoe", "spans": [{"attr": "Color", "begin": 0, "end": 3, "value": "red"}]}'
BAD = '{"id": "b", "text": "red", "spans": [{"attr": "Color", "begin": 0, "end": 9, "value": "red"}]}'


def write(tmp_path: Path, name: str, lines: list[str]) -> str:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(p)


def test_validate_ok(tmp_path: Path, capsys):
    f = write(tmp_path, "a.jsonl", [GOOD])
    assert main(["data", "validate", f]) == 0
    assert capsys.readouterr().out == f"OK {f}: 1 records, 1 spans, 1 attributes\n"
    assert main(["data", "validate", f, "--strict"]) == 0


def test_validate_error_exit_1_without_traceback(tmp_path: Path, capsys):
    f = write(tmp_path, "a.jsonl", [GOOD, BAD])
    assert main(["data", "validate", f]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == (f"error: {f}:2: field 'spans[0].end': span end 9 is past the end of the "
                       "text (length 3)\n")


def test_validate_lenient(tmp_path: Path, capsys):
    f = write(tmp_path, "a.jsonl", [GOOD, BAD, "{oops"])
    assert main(["data", "validate", f, "--lenient"]) == 0
    out = capsys.readouterr()
    assert out.out == f"OK {f}: 1 records, 1 spans, 1 attributes (2 of 3 rows skipped)\n"
    assert "skipped 2 of 3 rows (1 x span out of range, 1 x invalid JSON)" in out.err
    assert f"{f}:3: invalid JSON" in out.err


def test_validate_lenient_nothing_valid_is_an_error(tmp_path: Path, capsys):
    f = write(tmp_path, "a.jsonl", [BAD])
    assert main(["data", "validate", f, "--lenient"]) == 1
    assert f"error: {f}: no valid rows among 1" in capsys.readouterr().err


def test_strict_and_lenient_are_exclusive(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["data", "validate", "x.jsonl", "--strict", "--lenient"])
    assert e.value.code == 2


def test_unknown_extension(tmp_path: Path, capsys):
    f = write(tmp_path, "a.csv", [GOOD])
    assert main(["data", "validate", f]) == 1
    assert f"error: {f}: cannot tell the format from the extension '.csv'" in capsys.readouterr().err
    assert main(["data", "validate", f, "--format", "jsonl"]) == 0


def test_stats_json_and_table(tmp_path: Path, capsys):
    f = write(tmp_path, "a.jsonl", [GOOD, BAD])
    assert main(["data", "stats", f, "--json", "--lenient"]) == 0
    out = capsys.readouterr()
    s = json.loads(out.out)
    assert s["instances"] == 1 and s["rows_read"] == 2
    assert s["skipped"] == {"rows": 1, "by_reason": {"span out of range": 1}}
    assert main(["data", "stats", f]) == 1
    f = write(tmp_path, "b.jsonl", [GOOD])
    assert main(["data", "stats", f]) == 0
    assert "instances  1  (rows read 1, skipped 0)" in capsys.readouterr().out


def test_convert_to_conll_reports_dropped_overlaps(tmp_path: Path, capsys):
    row = json.dumps({"id": "a", "text": "red shoes", "spans": [
        {"attr": "Color", "begin": 0, "end": 3, "value": "red"},
        {"attr": "Name", "begin": 0, "end": 9, "value": "red shoes"}]})
    f = write(tmp_path, "a.jsonl", [row])
    out = tmp_path / "a.conll"
    assert main(["data", "convert", f, str(out)]) == 0
    text = capsys.readouterr().out
    assert f"wrote 1 records to {out}" in text
    assert "note: dropped 1 overlapping spans (policy: keep the longer, then the earlier)" in text
    (r,), _ = read_records(out)
    assert r.spans == [Span(0, 9, "Name", "red shoes")]


def test_convert_to_jave_and_back(tmp_path: Path, capsys):
    records = [Record("s1", "红色连衣裙", [Span(0, 2, "颜色", "红色")], cid="c1")]
    src = tmp_path / "in.jsonl"
    write_records(records, src)
    out = tmp_path / "out.txt"
    assert main(["data", "convert", str(src), str(out), "--to", "jave"]) == 0
    assert out.read_text(encoding="utf-8") == "c1\ts1\t红色连衣裙\t<颜色>红色</颜色>连衣裙\n"
    back = tmp_path / "back.jsonl"
    assert main(["data", "convert", str(out), str(back), "--from", "jave"]) == 0
    assert read_records(back)[0] == records


def test_convert_lenient_skips_unwritable_records(tmp_path: Path, capsys):
    f = write(tmp_path, "a.jsonl", [GOOD, '{"id": "n", "text": "two\\nlines"}', BAD])
    out = tmp_path / "a.tsv"
    assert main(["data", "convert", f, str(out)]) == 1
    assert not out.exists()
    capsys.readouterr()
    assert main(["data", "convert", f, str(out), "--lenient"]) == 0
    res = capsys.readouterr()
    assert "wrote 1 records" in res.out
    assert f"{f}:3: field 'spans[0].end'" in res.err
    assert "JAVE TSV cannot hold '\\n' in the text" in res.err
    assert out.read_text(encoding="utf-8") == "\ta\tred shoe\t<Color>red</Color> shoe\n"


def test_convert_shared_wdcpave_to_conll(shared_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "w.conll"
    assert main(["data", "convert", str(shared_dir / "data" / "wdcpave" / "valid.jsonl"),
                 str(out)]) == 0
    assert "dropped 24 overlapping spans" in capsys.readouterr().out
    assert len(read_records(out)[0]) == 159


def test_parser_accepts_new_subcommands(capsys):
    parser = build_parser()
    p = parser.commands.add_parser("hello")
    p.set_defaults(func=lambda args: 0)
    assert parser.parse_args(["hello"]).func(None) == 0
    q = parser.data_commands.add_parser("peek")
    q.set_defaults(func=lambda args: 3)
    assert parser.parse_args(["data", "peek"]).func(None) == 3


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2
