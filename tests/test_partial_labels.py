"""Training from partial labels (issue 9, section 2): the marginal tag loss, the masked attribute
loss, the Example/collate plumbing, the trainer option and partial validation scoring."""

import json
import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mjave.config import ConfigError, apply_overrides, load, save
from mjave.data.records import Record, Span
from mjave.data.schema import AttributeSchema
from mjave.data.tagging import Encoded
from mjave.config import EncoderConfig
from mjave.model import MJAVE, ModelConfig
from mjave.model.baselines import NEURAL_BASELINES
from mjave.model.batches import Example, collate, known_attribute_mask
from mjave.model.losses import allowed_outside_tags, attribute_loss, tag_loss
from mjave.model.registry import build_model
from mjave.config import DataConfig, RunConfig, TrainConfig
from mjave.training.evaluate import known_attributes_only
from mjave.training.trainer import resolve_partial_labels, train

L = 3


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_case(seed=0, B=3, T=7):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, 1 + 2 * L, generator=g)
    labels = torch.randint(0, 1 + 2 * L, (B, T), generator=g)
    labels[labels % 3 == 0] = 0        # plenty of O tokens
    labels[:, 0] = -100                # e.g. [CLS] / continuation pieces
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[-1, -2:] = False              # padding
    return logits, labels, mask


# --------------------------------------------------------------------------------------------
# The value (tag) loss


def test_tag_loss_with_every_attribute_known_is_the_cross_entropy():
    logits, labels, mask = random_case()
    ce = F.cross_entropy(logits.flatten(0, 1), labels.masked_fill(~mask, -100).flatten(),
                         ignore_index=-100)
    known = torch.ones(logits.shape[0], L, dtype=torch.bool)
    assert torch.allclose(tag_loss(logits, labels, mask, known), ce)
    assert torch.allclose(tag_loss(logits, labels, mask), ce)   # the no-mask path unchanged


def test_tag_loss_is_the_marginal_over_allowed_tags_on_a_hand_made_case():
    # Two attributes: tags O, B-a0, I-a0, B-a1, I-a1. Only a0 is known for the record.
    logits = torch.tensor([[[2.0, 0.5, -1.0, 1.0, 0.0],     # O token: O or B/I-a1 allowed
                            [0.0, 3.0, 0.0, -1.0, 0.5],     # inside a labelled a0 span: B-a0
                            [1.0, 2.0, 1.5, -0.5, 0.3]]])   # O token
    labels = torch.tensor([[0, 1, 0]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    known = torch.tensor([[True, False]])

    def p(row):
        z = [math.exp(x) for x in row]
        return [x / sum(z) for x in z]
    p0, p1, p2 = (p(r) for r in logits[0].tolist())
    expected = (-math.log(p0[0] + p0[3] + p0[4]) - math.log(p1[1])
                - math.log(p2[0] + p2[3] + p2[4])) / 3
    got = tag_loss(logits, labels, mask, known)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # strictly below the ordinary CE (it also pays for the unknown attribute's tags)
    assert got < tag_loss(logits, labels, mask)


def test_outside_weight_mixes_the_naive_o_target_into_unlabelled_tokens_only():
    # Same hand-made case: tokens 0 and 2 are unlabelled (gold O), token 1 is inside an a0 span.
    logits = torch.tensor([[[2.0, 0.5, -1.0, 1.0, 0.0],
                            [0.0, 3.0, 0.0, -1.0, 0.5],
                            [1.0, 2.0, 1.5, -0.5, 0.3]]])
    labels = torch.tensor([[0, 1, 0]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    known = torch.tensor([[True, False]])
    p = [torch.softmax(row, -1).tolist() for row in logits[0]]
    marginal = [-math.log(p[t][0] + p[t][3] + p[t][4]) for t in (0, 2)]
    naive = [-math.log(p[t][0]) for t in (0, 2)]
    inside = -math.log(p[1][1])
    w = 0.25
    expected = (sum((1 - w) * m + w * n for m, n in zip(marginal, naive)) + inside) / 3
    got = tag_loss(logits, labels, mask, known, outside_weight=w)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # the two ends: 0 is the marginal, 1 is the ordinary cross entropy
    assert torch.allclose(tag_loss(logits, labels, mask, known, outside_weight=0.0),
                          tag_loss(logits, labels, mask, known))
    assert torch.allclose(tag_loss(logits, labels, mask, known, outside_weight=1.0),
                          tag_loss(logits, labels, mask))
    # with every attribute known the weight changes nothing
    all_known = torch.ones(1, 2, dtype=torch.bool)
    assert torch.allclose(tag_loss(logits, labels, mask, all_known, outside_weight=0.7),
                          tag_loss(logits, labels, mask))


@pytest.mark.parametrize("name", ["mjave", *NEURAL_BASELINES])
def test_models_pass_the_outside_weight_to_their_value_loss(name):
    m = _tiny_model(name)
    b = _batch()
    known = torch.tensor([[True, False, False]] * 3)
    marginal = m(**b, attr_known=known).loss_value
    mixed = m(**b, attr_known=known, outside_weight=0.5).loss_value
    naive = m(**b).loss_value
    # the mixed value loss lies strictly between the marginal and the naive one
    assert marginal < mixed < naive, name


def test_allowed_tags_follow_the_schema_layout():
    allowed = allowed_outside_tags(torch.tensor([[True, False, True], [False, False, False]]))
    assert allowed.tolist() == [[True, False, False, True, True, False, False],
                                [True] * 7]


def test_unlabelled_token_may_be_an_unknown_attribute_but_not_a_known_one():
    logits, labels, _ = random_case(seed=3, B=1, T=4)
    labels[:] = torch.tensor([[-100, 0, 0, 0]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    known = torch.tensor([[True, False, True]])       # attribute 1 (tags 3, 4) unknown
    base = tag_loss(logits, labels, mask, known)
    for tag, direction in ((3, -1), (4, -1), (1, +1), (6, +1)):
        bumped = logits.clone()
        bumped[0, 2, tag] += 2.0
        delta = tag_loss(bumped, labels, mask, known) - base
        assert torch.sign(delta).item() == direction, tag


def test_tag_loss_gradients_flow_and_empty_batches_work():
    logits, labels, mask = random_case(seed=5)
    logits.requires_grad_(True)
    known = torch.tensor([[True, False, True], [False] * 3, [True] * 3])
    tag_loss(logits, labels, mask, known).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    assert (logits.grad[~mask] == 0).all()             # padding gets nothing
    empty = torch.zeros_like(mask)
    logits.grad = None
    out = tag_loss(logits, labels, empty, known)
    assert out.item() == 0.0
    out.backward()
    assert logits.grad is not None


# --------------------------------------------------------------------------------------------
# The attribute loss


def test_attribute_loss_with_every_attribute_known_is_the_ordinary_one():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, L, generator=g)
    labels = (torch.rand(4, L, generator=g) > 0.5).float()
    ordinary = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").sum(-1).mean()
    assert torch.allclose(attribute_loss(logits, labels), ordinary)
    assert torch.allclose(attribute_loss(logits, labels, torch.ones(4, L, dtype=torch.bool)),
                          ordinary)


def test_masked_attribute_loss_ignores_unknown_negatives_and_keeps_positives():
    logits = torch.tensor([[1.0, -2.0, 0.5]], requires_grad=True)
    labels = torch.tensor([[0.0, 1.0, 0.0]])
    known = torch.tensor([[True, False, False]])       # a1 positive but "unknown", a2 unknown
    loss = attribute_loss(logits, labels, known)
    bce = lambda x, y: F.binary_cross_entropy_with_logits(torch.tensor(x), torch.tensor(y))  # noqa
    assert loss.item() == pytest.approx((bce(1.0, 0.0) + bce(-2.0, 1.0)).item(), rel=1e-6)
    loss.backward()
    assert logits.grad[0, 2] == 0                      # unknown negative: not trained
    assert logits.grad[0, 1] < 0 and logits.grad[0, 0] > 0
    # down-weighting instead of masking
    half = attribute_loss(logits.detach(), labels, known, unknown_weight=0.5)
    assert half.item() == pytest.approx(loss.item() + 0.5 * bce(0.5, 0.0).item(), rel=1e-6)
    full = attribute_loss(logits.detach(), labels, known, unknown_weight=1.0)
    assert torch.allclose(full, attribute_loss(logits.detach(), labels))


# --------------------------------------------------------------------------------------------
# Models


def _batch(seed=1, B=3, T=6, DT=16):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[-1, -2:] = False
    tag_mask = mask.clone()
    tag_mask[:, 0] = False
    tags = torch.randint(0, 1 + 2 * L, (B, T), generator=g)
    tags[tags % 2 == 0] = 0
    attrs = torch.zeros(B, L)
    for b in range(B):
        for t in tags[b][tag_mask[b]].tolist():
            if t:
                attrs[b, (t - 1) // 2] = 1.0
    return dict(h=torch.randn(B, T, DT, generator=g), mask=mask, tag_mask=tag_mask,
                attr_labels=attrs, tag_labels=tags)


def _tiny_model(name):
    torch.manual_seed(0)
    return build_model(ModelConfig(architecture=name, text_dim=16, num_attributes=L,
                                   attention_size=8, dropout=0.0, use_image=False)).eval()


def _losses(out):
    return [x for x in (out.loss, out.loss_attr, out.loss_value, out.loss_kl) if x is not None]


@pytest.mark.parametrize("name", ["mjave", *NEURAL_BASELINES])
def test_models_take_the_mask_and_equal_ordinary_losses_when_all_is_known(name):
    m = _tiny_model(name)
    b = _batch()
    plain = m(**b)
    all_known = m(**b, attr_known=torch.ones(3, L, dtype=torch.bool))
    for x, y in zip(_losses(plain), _losses(all_known), strict=True):
        assert torch.allclose(x, y, atol=1e-6), name
    partial = m(**b, attr_known=torch.tensor([[True, False, False]] * 3))
    assert partial.loss < plain.loss - 1e-4, name
    partial.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


def test_mjave_kl_term_is_unchanged_by_partial_labels():
    torch.manual_seed(0)
    m = MJAVE(ModelConfig(text_dim=16, num_attributes=L, attention_size=8, dropout=0.0,
                          use_image=False)).eval()
    b = _batch()
    plain = m(**b)
    partial = m(**b, attr_known=torch.tensor([[False, True, False]] * 3))
    assert torch.allclose(plain.loss_kl, partial.loss_kl)
    assert torch.allclose(partial.loss, partial.loss_attr + partial.loss_value
                          + 0.5 * partial.loss_kl)


# --------------------------------------------------------------------------------------------
# Examples and batches

SCHEMA = AttributeSchema(("Color", "Fit", "Material"))


def _example(known, text="red slim", spans=()):
    extra = {} if known is None else {"known_attributes": sorted(known)}
    r = Record(id=text, text=text, spans=list(spans), extra=extra)
    enc = Encoded(input_ids=[1, 5, 6, 2], offsets=[(0, 0), (0, 3), (4, 8), (0, 0)],
                  word_ids=[None, 0, 1, None], labels=[-100, 0, 0, -100])
    return Example(r, enc, np.zeros(L, dtype=np.float32),
                   attr_known=known_attribute_mask(r, SCHEMA))


def test_known_attribute_mask_from_the_record_and_schema():
    assert known_attribute_mask(Record("a", "t"), SCHEMA) is None
    r = Record("b", "t", extra={"known_attributes": ["Material", "Color", "Brand"]})
    assert known_attribute_mask(r, SCHEMA).tolist() == [True, False, True]   # Brand: not in schema
    assert known_attribute_mask(Record("c", "t", extra={"known_attributes": []}),
                                SCHEMA).tolist() == [False] * 3


def test_collate_emits_the_mask_only_for_batches_with_partial_examples():
    full = [_example(None), _example(None)]
    assert "attr_known" not in collate(full)
    mixed = collate([_example(None), _example({"Fit"}), _example(set())])
    assert mixed["attr_known"].dtype == torch.bool
    assert mixed["attr_known"].tolist() == [[True] * 3, [False, True, False], [False] * 3]


# --------------------------------------------------------------------------------------------
# Validation scoring of partial records


def test_partial_validation_records_are_scored_on_known_attributes_only():
    gold = [Record("a", "red slim cotton", [Span(0, 3, "Color", "red")],
                   extra={"known_attributes": ["Color"]}),
            Record("b", "blue slim", [Span(0, 4, "Color", "blue")])]
    pred = [Record("a", "red slim cotton", [Span(0, 3, "Color", "red"),
                                            Span(4, 8, "Fit", "slim")]),
            Record("b", "blue slim", [Span(0, 4, "Color", "blue"), Span(5, 9, "Fit", "slim")])]
    probs = np.array([[0.9, 0.8, 0.7], [0.9, 0.8, 0.1]], dtype=np.float32)
    g, p, q = known_attributes_only(gold, pred, probs, SCHEMA.attributes)
    assert [s.attr for s in p[0].spans] == ["Color"]                 # unknown Fit dropped
    assert [s.attr for s in p[1].spans] == ["Color", "Fit"]          # full record untouched
    assert np.allclose(q, [[0.9, 0.0, 0.0], [0.9, 0.8, 0.1]])
    assert probs[0, 1] == pytest.approx(0.8)                         # input not modified
    assert g == gold


# --------------------------------------------------------------------------------------------
# The option and the trainer


def test_train_config_option_round_trips(tmp_path):
    assert TrainConfig().partial_labels is None and TrainConfig().partial_attr_weight == 0.0
    for value in (None, True, False):
        cfg = RunConfig(train=TrainConfig(partial_labels=value, partial_attr_weight=0.25,
                                          partial_outside_weight=0.1))
        for suffix in ("yaml", "json"):
            save(cfg, tmp_path / f"c.{suffix}")
            assert load(RunConfig, tmp_path / f"c.{suffix}") == cfg
    assert apply_overrides(RunConfig(), ["train.partial_labels=true"]).train.partial_labels is True
    assert apply_overrides(RunConfig(), ["train.partial_labels=null"]).train.partial_labels is None
    with pytest.raises(ConfigError):
        apply_overrides(RunConfig(), ["train.partial_labels=maybe"])


def test_partial_mode_resolution_and_unsupported_architectures(caplog):
    full = [Record("a", "t")]
    partial = full + [Record("b", "t", extra={"known_attributes": ["Color"]})]
    with caplog.at_level(logging.INFO, logger="mjave.training.trainer"):
        assert resolve_partial_labels(None, partial) is True
        assert "partial-label training: on (auto; 1 of 2" in caplog.text
        assert resolve_partial_labels(None, full) is False
        assert resolve_partial_labels(False, partial) is False
        assert "off, naive" in caplog.text
        assert resolve_partial_labels(True, full) is True

    class OldHead(torch.nn.Module):
        cfg = ModelConfig(architecture="old")

        def forward(self, h, mask, tag_mask, v_global=None, v=None, attr_labels=None,
                    tag_labels=None):
            raise AssertionError

    class Net:
        head = OldHead()
    with pytest.raises(ConfigError, match="old does not support partial-label"):
        resolve_partial_labels(None, partial, Net())
    assert resolve_partial_labels(False, partial, Net()) is False


@pytest.fixture(scope="module")
def char_data(tmp_path_factory):
    """A character vocabulary (no weights: BiLSTM encoder) and partially labelled records."""
    root = tmp_path_factory.mktemp("partial")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + list("abcdefghijklmnopqrstuvwxyz,")
    (root / "enc").mkdir()
    (root / "enc" / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    rows = []
    for i, (colour, fit) in enumerate([("red", "slim"), ("blue", "loose"), ("green", "slim"),
                                        ("red", "loose"), ("blue", "slim"), ("green", "loose")]):
        text = f"{colour} shirt, {fit} fit"
        spans = {"Color": (0, len(colour), colour),
                 "Fit": (text.index(fit), text.index(fit) + len(fit), fit)}
        known = ["Color", "Fit"] if i < 2 else (["Color"] if i % 2 else ["Fit"])
        rows.append({"id": f"s{i}", "text": text, "known_attributes": known,
                     "spans": [{"attr": a, "begin": spans[a][0], "end": spans[a][1],
                                "value": spans[a][2]} for a in known]})
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows),
                                      encoding="utf-8")
    full = [dict(r, known_attributes=["Color", "Fit"]) for r in rows[:2]]
    (root / "full.jsonl").write_text("".join(json.dumps(r) + "\n" for r in full),
                                     encoding="utf-8")
    return root


def _char_config(out, root, train_file="train.jsonl", **train_kw):
    return RunConfig(
        output_dir=str(out),
        data=DataConfig(train=str(root / train_file), valid=str(root / train_file)),
        encoder=EncoderConfig(text_encoder=str(root / "enc"), text_kind="bilstm",
                              char_level=True, image_encoder="none"),
        model=ModelConfig(use_image=False, attention_size=8),
        # one batch, one epoch: the logged loss is the first forward from the same weights
        train=TrainConfig(epochs=1, batch_size=64, lr=1e-3, device="cpu", **train_kw))


def test_tiny_training_with_partial_labels_on_and_off(tmp_path, char_data, caplog):
    with caplog.at_level(logging.INFO, logger="mjave.training.trainer"):
        auto = train(_char_config(tmp_path / "auto", char_data))
    assert "partial-label training: on (auto; 6 of 6" in caplog.text
    assert "scored on their known attributes only" in caplog.text
    assert auto.partial_labels is True
    saved = json.loads((auto.output_dir / "config.json").read_text())
    assert saved["train"]["partial_labels"] is True       # the mode used, not "auto"
    on = train(_char_config(tmp_path / "on", char_data, partial_labels=True))
    off = train(_char_config(tmp_path / "off", char_data, partial_labels=False))
    assert on.history[0]["loss"] == pytest.approx(auto.history[0]["loss"])
    # The same first forward: the partial losses drop the unknown attributes' negatives and
    # let unlabelled tokens be their values, so they are strictly smaller.
    assert on.history[0]["loss"] < off.history[0]["loss"] - 1e-3
    assert off.partial_labels is False
    assert json.loads((off.output_dir / "config.json").read_text())["train"]["partial_labels"] \
        is False


def test_tiny_training_with_every_attribute_known_matches_naive(tmp_path, char_data):
    on = train(_char_config(tmp_path / "on", char_data, "full.jsonl", partial_labels=True))
    off = train(_char_config(tmp_path / "off", char_data, "full.jsonl", partial_labels=False))
    assert on.history[0]["loss"] == pytest.approx(off.history[0]["loss"], rel=1e-6)
