"""Streaming batch prediction (`mjave.inference.batch.predict_file`) and `mjave predict`.

The tiny trained models come from tests/test_extractor.py (built once per session).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from mjave.cli.predict import add_predict_command
from mjave.data.errors import DataError
from mjave.inference.batch import CSV_COLUMNS, parquet_parts, predict_file, read_input
from test_extractor import build_tiny_models, valid_rows

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    return build_tiny_models(tmp_path_factory)


@pytest.fixture(scope="module")
def text_extractor(tiny_models):
    from mjave import Extractor
    return Extractor.load(tiny_models.text_model, device="cpu")


@pytest.fixture(scope="module")
def image_extractor(tiny_models):
    from mjave import Extractor
    return Extractor.load(tiny_models.image_model, device="cpu")


def rows_for_input(models) -> list[dict]:
    """The valid rows plus a few more texts: 12 rows, ids s... and x0..x3."""
    rows = [{k: r[k] for k in ("id", "cid", "text", "image")} for r in valid_rows(models)]
    rows += [{"id": f"x{i}", "cid": f"p{i}", "text": f"{t} shirt, slim fit", "image":
              f"images/p{i}.png"} for i, t in enumerate(["red", "blue", "green", "red"])]
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict], columns=("id", "cid", "text", "image")) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow([r.get(c, "") for c in columns])
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), str(path), row_group_size=5)
    return path


def write_tsv(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(f"{r['cid']}\t{r['id']}\t{r['text']}\t{r['text']}\n" for r in rows),
                    encoding="utf-8")
    return path


def read_output(path: Path) -> list[dict[str, Any]]:
    """Output rows of any format, with attributes/values decoded, in file order."""
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    if path.suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        for r in rows:
            for k in ("attributes", "values", "extra"):
                r[k] = json.loads(r[k]) if r[k] else None
        return rows
    out = []
    for part in parquet_parts(path):
        out += pq.read_table(str(part)).to_pylist()
    return out


def span_keys(result: dict) -> list[tuple]:
    return [(v["attribute"], v["begin"], v["end"], v["value"]) for v in result["values"]]


# --------------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "tsv"])
def test_every_input_format_predicts_what_the_extractor_predicts(fmt, tmp_path, tiny_models,
                                                                 text_extractor):
    rows = rows_for_input(tiny_models)
    writer = {"jsonl": write_jsonl, "csv": write_csv, "parquet": write_parquet,
              "tsv": write_tsv}[fmt]
    src = writer(tmp_path / f"in.{fmt}", rows)
    progress = []

    class Bar:
        def __init__(self, **kwargs):
            progress.append(kwargs)
            self.n = 0

        def update(self, n):
            self.n += n

        def close(self):
            progress.append(self.n)

    summary = predict_file(text_extractor, src, tmp_path / "out.jsonl", batch_size=5,
                           progress=Bar)
    assert (summary.rows, summary.ok, summary.failed, summary.skipped) == (12, 12, 0, 0)
    assert progress[-1] == 12 and progress[0]["unit"] == "row"
    if fmt == "parquet":
        assert progress[0]["total"] == 12
    out = read_output(tmp_path / "out.jsonl")
    assert [r["id"] for r in out] == [r["id"] for r in rows]  # input order
    expected = text_extractor.predict_batch([r["text"] for r in rows])
    for row, got, want in zip(rows, out, expected):
        assert got["text"] == row["text"] and got["cid"] == row["cid"]
        assert span_keys(got) == span_keys(want)
        assert [a["name"] for a in got["attributes"]] == [a["name"] for a in want["attributes"]]
        for v in got["values"]:
            assert row["text"][v["begin"]:v["end"]] == v["value"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_csv_and_parquet_outputs_hold_the_same_rows_as_jsonl(suffix, tmp_path, tiny_models,
                                                             text_extractor):
    rows = rows_for_input(tiny_models)
    rows[0]["category"] = "shirts"
    rows[1]["note"] = {"any": ["json"]}
    src = write_jsonl(tmp_path / "in.jsonl", rows + [{"id": "bad", "text": ""}])
    predict_file(text_extractor, src, tmp_path / "ref.jsonl", batch_size=4)
    summary = predict_file(text_extractor, src, tmp_path / f"out{suffix}", batch_size=4)
    assert summary.ok == 12 and summary.failed == 1
    ref, got = read_output(tmp_path / "ref.jsonl"), read_output(tmp_path / f"out{suffix}")
    assert [r["id"] for r in got] == [r["id"] for r in ref]
    for a, b in zip(ref, got):
        assert b["text"] == a.get("text") and (b["error"] or None) == a.get("error")
        assert (b["values"] or []) == a.get("values", [])
        assert (b["attributes"] or []) == a.get("attributes", [])
    assert got[0]["category"] == "shirts"
    extra = got[1]["extra"]
    assert (json.loads(extra) if isinstance(extra, str) else extra) == {"note": {"any": ["json"]}}
    if suffix == ".csv":
        header = (tmp_path / "out.csv").read_text(encoding="utf-8").splitlines()[0]
        assert tuple(header.split(",")) == CSV_COLUMNS


def test_the_code_streams_batch_by_batch(tmp_path):
    """A stub model sees at most batch_size texts per call, and the output grows while the
    input is still being read: nothing is loaded whole."""
    n, batch = 2000, 64
    src = write_jsonl(tmp_path / "big.jsonl", [{"id": i, "text": f"text {i}"} for i in range(n)])
    out = tmp_path / "out.jsonl"
    sizes: list[int] = []

    class Stub:
        uses_image = False
        missing_image = "error"

        def predict_batch(self, items, errors="raise"):
            items = list(items)
            assert len(items) <= batch
            sizes.append(out.stat().st_size)
            return [{"attributes": [], "values": []} for _ in items]

    rows = read_input(src)
    assert next(rows).id == 0  # a lazy reader: nothing past the first row was needed
    rows.close()
    summary = predict_file(Stub(), src, out, batch_size=batch)
    assert summary.ok == n and len(sizes) == n // batch + 1
    assert sizes[0] == 0 and sizes[-1] > sizes[len(sizes) // 2] > 0  # written as it goes
    assert sum(1 for _ in out.open()) == n


# --------------------------------------------------------------------------------------------
# Resume
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_resume_skips_done_ids_and_appends_the_rest(suffix, tmp_path, tiny_models,
                                                    text_extractor):
    rows = rows_for_input(tiny_models)
    half = write_jsonl(tmp_path / "half.jsonl", rows[:5])
    full = write_jsonl(tmp_path / "full.jsonl", rows)
    out = tmp_path / f"out{suffix}"
    first = predict_file(text_extractor, half, out, batch_size=4)
    assert first.ok == 5
    second = predict_file(text_extractor, full, out, batch_size=4, resume=True)
    assert (second.ok, second.skipped, second.failed) == (7, 5, 0)
    ids = [r["id"] for r in read_output(out)]
    assert Counter(ids) == Counter(r["id"] for r in rows)  # each id exactly once
    again = predict_file(text_extractor, full, out, resume=True)
    assert (again.ok, again.skipped) == (0, 12)
    assert len(read_output(out)) == 12
    if suffix == ".parquet":
        assert [p.name for p in parquet_parts(out)] == [
            "out.parquet", "out.part-00001.parquet", "out.part-00002.parquet"]
        # a fresh run (no resume) replaces the output and its parts
        predict_file(text_extractor, half, out)
        assert [p.name for p in parquet_parts(out)] == ["out.parquet"]
    else:
        predict_file(text_extractor, half, out)
        assert len(read_output(out)) == 5


def test_ids_on_disk_past_the_memory_limit_give_the_same_duplicates_and_resume(
        tmp_path, tiny_models, text_extractor, monkeypatch):
    """Past `idset.DEFAULT_MEMORY_LIMIT` ids (100,000; 3 here) the seen and done ids live in a
    temporary SQLite file: duplicate detection and resume are unchanged, the file is gone after."""
    import mjave.inference.idset as idset
    monkeypatch.setattr(idset, "DEFAULT_MEMORY_LIMIT", 3)
    rows = rows_for_input(tiny_models)
    dup = dict(rows[7], text="the same id again")     # rows[7] is not in the first half
    full = write_jsonl(tmp_path / "full.jsonl", rows + [dup])
    half = write_jsonl(tmp_path / "half.jsonl", rows[:5])
    out = tmp_path / "out" / "pred.jsonl"
    assert predict_file(text_extractor, half, out, batch_size=4).ok == 5
    second = predict_file(text_extractor, full, out, batch_size=4, resume=True)
    assert (second.ok, second.skipped, second.failed) == (7, 5, 1)
    assert second.reasons == Counter({"duplicate id": 1})
    errors = [r for r in read_output(out) if r.get("error")]
    assert len(errors) == 1 and "first at row 8" in errors[0]["error"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["pred.jsonl"]   # no id file left


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_resume_cuts_a_row_left_half_written_by_a_kill(suffix, tmp_path, tiny_models,
                                                       text_extractor):
    rows = rows_for_input(tiny_models)
    out = tmp_path / f"out{suffix}"
    predict_file(text_extractor, write_jsonl(tmp_path / "half.jsonl", rows[:6]), out)
    data = out.read_bytes()
    last_row_start = data.rstrip(b"\n").rfind(b"\n") + 1
    out.write_bytes(data[:last_row_start + 25])  # the last row, cut mid-way
    summary = predict_file(text_extractor, write_jsonl(tmp_path / "full.jsonl", rows), out,
                           resume=True)
    assert summary.truncated_rows == 1 and summary.skipped == 5 and summary.ok == 7
    assert Counter(r["id"] for r in read_output(out)) == Counter(r["id"] for r in rows)


# --------------------------------------------------------------------------------------------
# Error rows
# --------------------------------------------------------------------------------------------


def test_bad_rows_become_error_rows_counted_by_reason(tmp_path, tiny_models, image_extractor):
    good = rows_for_input(tiny_models)[:3]
    bad = [
        {"id": "no-text"},
        {"id": "empty", "text": "  "},
        {"id": "number", "text": 42},
        {"id": "gone", "text": "red shirt", "image": "images/gone.png"},
        {"id": "broken", "text": "red shirt", "image": "broken-predict.png"},  # in the root
        {"id": "no-image", "text": "red shirt"},  # no image field and no <cid>.png
        {"text": "no id"},
        {"id": good[0]["id"], "text": "a duplicate"},
    ]
    # inside the image root: --image-root confines image paths (tests/test_hardening.py)
    (tiny_models.data / "broken-predict.png").write_bytes(b"\x89PNG not really")
    src = tmp_path / "in.jsonl"
    write_jsonl(src, good[:2] + bad + good[2:])
    with open(src, "a", encoding="utf-8") as f:
        f.write('{"id": "half\n[1, 2]\n')
    summary = predict_file(image_extractor, src, tmp_path / "out.jsonl", batch_size=4,
                           image_root=tiny_models.data)
    assert (summary.ok, summary.failed, summary.rows) == (3, 10, 13)
    assert summary.reasons == Counter({
        "missing text": 1, "empty text": 1, "text not a string": 1, "missing image": 2,
        "bad image": 1, "missing id": 1, "duplicate id": 1, "invalid JSON": 1,
        "not an object": 1})
    out = read_output(tmp_path / "out.jsonl")
    assert len(out) == 13
    by_id = {r["id"]: r for r in out if r["id"] is not None}
    assert "values" in by_id[good[2]["id"]]
    assert "row 3" in by_id["no-text"]["error"] and "text" in by_id["no-text"]["error"]
    assert "gone.png" in by_id["gone"]["error"]
    assert "looked for" in by_id["no-image"]["error"]
    assert all(set(r) & {"values", "error"} for r in out)
    text = summary.summary()
    assert "3 predicted, 10 failed" in text and "2 x missing image" in text


def test_fatal_problems_raise(tmp_path, tiny_models, text_extractor):
    with pytest.raises(DataError, match="no such file"):
        predict_file(text_extractor, tmp_path / "missing.jsonl", tmp_path / "out.jsonl")
    headless = tmp_path / "in.csv"
    headless.write_text("s1,red shirt\n", encoding="utf-8")
    with pytest.raises(DataError, match="header"):
        predict_file(text_extractor, headless, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()  # nothing written before the input is known
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "red"}])
    with pytest.raises(DataError, match="extension"):
        predict_file(text_extractor, src, tmp_path / "out.txt")
    with pytest.raises(DataError, match="overwrite the input"):
        predict_file(text_extractor, src, src)
    with pytest.raises(FileNotFoundError):
        predict_file(tmp_path / "no-model", src, tmp_path / "out.jsonl")


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mjave")
    add_predict_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_predict_exit_codes_and_summary(tmp_path, tiny_models, capsys):
    rows = rows_for_input(tiny_models)[:4] + [{"id": "bad", "text": ""}]
    src = write_csv(tmp_path / "in.csv", rows)
    out = tmp_path / "out.parquet"
    argv = ["predict", str(tiny_models.text_model), str(src), "-o", str(out),
            "--batch-size", "2", "--device", "cpu"]
    assert run_cli(argv) == 0  # finished, even with an error row
    printed = capsys.readouterr().out
    assert "5 rows" in printed and "4 predicted, 1 failed" in printed
    assert "1 x empty text" in printed
    assert [r["id"] for r in read_output(out)] == [r["id"] for r in rows]
    assert run_cli(argv + ["--resume"]) == 0
    assert "5 skipped" in capsys.readouterr().out
    assert run_cli(["predict", str(tmp_path / "nope"), str(src), "-o", str(out)]) == 1
    assert "error:" in capsys.readouterr().err
    assert run_cli(["predict", str(tiny_models.text_model), str(tmp_path / "none.csv"),
                    "-o", str(out)]) == 1
    assert "no such file" in capsys.readouterr().err
