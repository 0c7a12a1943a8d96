"""The Table 3 baselines: M-JAVE's interface, padding invariance, gradients, training through the
shared trainer and CLI, reload with identical F1; and the WSM word matcher."""

import json
import math
from dataclasses import replace

import pytest
import torch

from mjave.data.formats import read_records
from mjave.data.records import Record, Span
from mjave.evaluation.metrics import evaluate_records
from mjave.model import MJAVE, ModelConfig
from mjave.model.baselines import NEURAL_BASELINES, WSM
from mjave.model.baselines.common import attribute_loss, tag_loss
from mjave.model.baselines.scalingup import ScalingUp
from mjave.model.mjave import MJAVEOutput
from mjave.model.registry import architectures, build_model
from mjave.training.evaluate import evaluate_model
from mjave.training.trainer import train

# The tiny BERT and the tiny data set of the training tests (module-scoped fixtures).
from test_training import make_config, tiny_bert, tiny_data  # noqa: F401

L, DT, A = 3, 16, 8


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make(name, **overrides):
    torch.manual_seed(0)
    kw = dict(text_dim=DT, num_attributes=L, attention_size=A, dropout=0.0, use_image=False)
    cfg = ModelConfig(architecture=name, **{**kw, **overrides})
    return build_model(cfg).eval()


def batch(lengths=(6, 4), seed=1):
    g = torch.Generator().manual_seed(seed)
    B, T = len(lengths), max(lengths)
    mask = torch.zeros(B, T, dtype=torch.bool)
    for b, n in enumerate(lengths):
        mask[b, :n] = True
    tag_mask = mask.clone()
    tag_mask[:, 0] = False
    for b, n in enumerate(lengths):
        tag_mask[b, n - 1] = False
    return dict(h=torch.randn(B, T, DT, generator=g), mask=mask, tag_mask=tag_mask,
                attr_labels=(torch.rand(B, L, generator=g) > 0.5).float(),
                tag_labels=torch.randint(0, 1 + 2 * L, (B, T), generator=g))


def test_every_baseline_is_registered():
    assert set(NEURAL_BASELINES) <= set(architectures())


@pytest.mark.parametrize("name", NEURAL_BASELINES)
def test_shapes_losses_and_mjave_interface(name):
    m = make(name)
    out = m(**batch())
    assert isinstance(out, MJAVEOutput)
    assert out.attr_logits.shape == (2, L)
    assert out.tag_logits.shape == (2, 6, 1 + 2 * L)
    assert out.global_gate is None and out.regional_gate is None and out.image_attention is None
    assert torch.isfinite(out.loss) and out.loss_kl is None
    b = batch()
    b.pop("attr_labels"), b.pop("tag_labels")
    assert m(**b).loss is None


@pytest.mark.parametrize("name", NEURAL_BASELINES)
def test_text_only_ignores_image_inputs(name, caplog):
    m = make(name)
    b = batch()
    plain = m(**b)
    with_image = m(**b, v_global=torch.randn(2, 12), v=torch.randn(2, 5, 12))
    assert torch.equal(plain.tag_logits, with_image.tag_logits)
    assert torch.equal(plain.attr_logits, with_image.attr_logits)
    with caplog.at_level("WARNING"):
        make(name, use_image=True)
    assert "use_image=false" in caplog.text


@pytest.mark.parametrize("name", NEURAL_BASELINES)
def test_padding_never_changes_outputs(name):
    m = make(name)
    b = batch(lengths=(6, 4))
    padded, extra = dict(b), 5
    padded["h"] = torch.cat([b["h"], torch.randn(2, extra, DT) * 100], 1)
    padded["tag_labels"] = torch.cat([b["tag_labels"], torch.randint(0, 3, (2, extra))], 1)
    for key in ("mask", "tag_mask"):
        padded[key] = torch.cat([b[key], torch.zeros(2, extra, dtype=torch.bool)], 1)
    a, p = m(**b), m(**padded)
    assert torch.allclose(a.attr_logits, p.attr_logits, atol=1e-5)
    assert torch.allclose(a.tag_logits, p.tag_logits[:, :6], atol=1e-5)
    assert torch.allclose(a.loss, p.loss, atol=1e-5)
    # the short text alone (no padding) equals its row in the padded batch
    one = {k: v[1:2, :4] if v.dim() > 1 and k != "attr_labels" else v[1:2] for k, v in b.items()}
    single = m(**one)
    assert torch.allclose(single.tag_logits[0], a.tag_logits[1, :4], atol=1e-5)
    assert torch.allclose(single.attr_logits[0], a.attr_logits[1], atol=1e-5)


@pytest.mark.parametrize("name", NEURAL_BASELINES)
def test_backward_reaches_every_parameter(name):
    m = make(name).train()
    out = m(**batch())
    out.loss.backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_shared_losses_are_mjaves():
    torch.manual_seed(0)
    m = MJAVE(ModelConfig(text_dim=DT, num_attributes=L, attention_size=A, dropout=0.0,
                          use_image=False, kl_lambda=0.0)).eval()
    b = batch()
    out = m(**b)
    tag_mask = b["tag_mask"] & b["mask"]
    assert torch.allclose(attribute_loss(out.attr_logits, b["attr_labels"]), out.loss_attr)
    assert torch.allclose(tag_loss(out.tag_logits, b["tag_labels"], tag_mask), out.loss_value)


def test_sep_bert_tasks_share_nothing():
    m = make("sep-bert")
    b = batch()
    before = m(**b)
    with torch.no_grad():
        for p in m.attribute_model.parameters():
            p.add_(1.0)
    after = m(**b)
    assert torch.equal(before.tag_logits, after.tag_logits)
    assert not torch.allclose(before.attr_logits, after.attr_logits)


def test_scalingup_combines_passes_as_log_odds_and_sums_per_attribute_losses():
    m = make("scalingup")
    assert isinstance(m, ScalingUp)
    b = batch()
    out = m(**b)
    passes = m.pass_logits(b["h"], b["mask"])                      # (B, L, T, 3): O, B, I
    logp = passes.log_softmax(-1)
    assert torch.allclose(out.tag_logits[..., 0], torch.zeros(2, 6))
    for l in range(L):
        assert torch.allclose(out.tag_logits[..., 1 + 2 * l],
                              (logp[:, l, :, 1] - logp[:, l, :, 0]), atol=1e-5)
        assert torch.allclose(out.tag_logits[..., 2 + 2 * l],
                              (logp[:, l, :, 2] - logp[:, l, :, 0]), atol=1e-5)
        best_b = out.tag_logits[..., 1 + 2 * l].masked_fill(~b["tag_mask"], -1e4).max(-1).values
        assert torch.allclose(out.attr_logits[:, l], best_b, atol=1e-5)
    # reference loss: one BIO cross-entropy per attribute, summed
    expected = 0.0
    tags = b["tag_labels"]
    for l in range(L):
        target = torch.zeros_like(tags)
        target[tags == 1 + 2 * l] = 1
        target[tags == 2 + 2 * l] = 2
        target = target.masked_fill(~b["tag_mask"], -100)
        expected = expected + torch.nn.functional.cross_entropy(
            passes[:, l].flatten(0, 1), target.flatten(), ignore_index=-100)
    assert torch.allclose(out.loss, expected, atol=1e-5)
    assert out.loss_attr is None


def test_token_classification_reads_attributes_off_the_tags_and_trains_tags_only():
    m = make("token-classification").eval()
    b = batch()
    out = m(**b)
    probs = out.tag_logits.softmax(-1)
    for l in range(L):
        p = (probs[..., 1 + 2 * l] + probs[..., 2 + 2 * l]).masked_fill(~b["tag_mask"], 0)
        expected = torch.logit(p.max(-1).values.clamp(1e-6, 1 - 1e-6))
        assert torch.allclose(out.attr_logits[:, l], expected, atol=1e-4)
    tag_mask = b["tag_mask"] & b["mask"]
    assert torch.allclose(out.loss, tag_loss(out.tag_logits, b["tag_labels"], tag_mask))
    assert out.loss_attr is None


# ------------------------------------------------------------------ through the trainer and CLI

def baseline_config(out, data, bert, name, epochs=4):
    cfg = make_config(out, data, bert, epochs=epochs, use_image=False)
    return replace(cfg, model=replace(cfg.model, architecture=name))


@pytest.mark.parametrize("name", NEURAL_BASELINES)
def test_trains_saves_reloads_with_identical_f1(tmp_path, tiny_data, tiny_bert, name):
    result = train(baseline_config(tmp_path / name, tiny_data, tiny_bert, name))
    folder = result.output_dir
    config = json.loads((folder / "config.json").read_text())
    assert config["model"]["architecture"] == name and config["model"]["use_image"] is False
    losses = [r["loss"] for r in result.history]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    report = evaluate_model(folder, str(tiny_data / "valid.jsonl"), device="cpu")
    metrics = json.loads((folder / "metrics.json").read_text())
    for task in ("value", "attribute", "pair"):
        assert report[task]["f1"] == pytest.approx(metrics["valid"][task]["f1"]), task


def test_cli_trains_a_baseline(tmp_path, tiny_data, tiny_bert):
    from mjave.cli import main
    from mjave.config import save
    path = tmp_path / "run.yaml"
    save(make_config(tmp_path / "cli", tiny_data, tiny_bert, epochs=1), path)
    assert main(["train", "--config", str(path), "--set", "model.architecture=joint-bert",
                 "--set", "model.use_image=false"]) == 0
    config = json.loads((tmp_path / "cli" / "config.json").read_text())
    assert config["model"]["architecture"] == "joint-bert"
    assert config["model"]["use_image"] is False


# ------------------------------------------------------------------ WSM

def rec(text, spans=(), rid="r", category=None):
    return Record(id=rid, text=text, category=category,
                  spans=[Span(b, e, a, text[b:e]) for a, b, e in spans])


def keys(spans):
    return [(s.attr, s.begin, s.end, s.value) for s in spans]


@pytest.fixture
def wsm():
    return WSM().fit([
        rec("Red shirt", [("Color", 0, 3)]),
        rec("dark red coat", [("Color", 0, 8)]),
        rec("slim fit", [("Fit", 0, 8)]),
        rec("fit", [("Fit", 0, 3)]),
        rec("红色T恤", [("Color", 0, 2)]),
        rec("纯棉", [("Material", 0, 2)]),
    ])


def test_wsm_word_boundaries_and_case(wsm):
    assert wsm.match("bored") == []
    assert wsm.match("reddish redo") == []
    assert keys(wsm.match("RED, red-ish (Red)")) == [
        ("Color", 0, 3, "RED"), ("Color", 5, 8, "red"), ("Color", 14, 17, "Red")]


def test_wsm_longest_match_wins(wsm):
    # "dark red" beats "red", "slim fit" beats "fit"
    assert keys(wsm.match("a Dark Red slim fit, fit")) == [
        ("Color", 2, 10, "Dark Red"), ("Fit", 11, 19, "slim fit"), ("Fit", 21, 24, "fit")]


def test_wsm_cjk_matches_characters_without_boundaries(wsm):
    assert keys(wsm.match("大红色纯棉T恤")) == [("Color", 1, 3, "红色"), ("Material", 3, 5, "纯棉")]
    assert keys(wsm.match("red红色")) == [("Color", 0, 3, "red"), ("Color", 3, 5, "红色")]


def test_wsm_ambiguous_value_goes_to_most_frequent_attribute():
    m = WSM().fit([rec("gold", [("Color", 0, 4)]), rec("gold", [("Material", 0, 4)]),
                   rec("gold x", [("Material", 0, 4)])])
    assert keys(m.match("Gold")) == [("Material", 0, 4, "Gold")]


def test_wsm_per_category_dictionaries():
    train_recs = [rec("leather", [("Material", 0, 7)], category="Bags"),
                  rec("wide", [("Width", 0, 4)], category="Shoes")]
    m = WSM().fit(train_recs)
    text = "wide leather"
    assert keys(m.match(text, "Bags")) == [("Material", 5, 12, "leather")]
    assert keys(m.match(text, "Shoes")) == [("Width", 0, 4, "wide")]
    assert len(m.match(text, "Unseen")) == 2 and len(m.match(text)) == 2
    assert len(WSM(per_category=False).fit(train_recs).match(text, "Bags")) == 2


def test_wsm_save_load_round_trip(wsm, tmp_path):
    path = wsm.save(tmp_path / "wsm.json")
    assert "红色" in path.read_text(encoding="utf-8")
    again = WSM.load(path)
    assert again.counts == wsm.counts and again.per_category == wsm.per_category
    text = "Dark red 纯棉 slim fit bored"
    assert again.match(text) == wsm.match(text)
    with pytest.raises(ValueError):
        WSM.from_dict({"format": "other"})


def test_wsm_predict_scores_with_the_shared_metrics(tiny_data):
    train_recs, _ = read_records(str(tiny_data / "train.jsonl"))
    valid_recs, _ = read_records(str(tiny_data / "valid.jsonl"))
    pred = WSM().fit(train_recs).predict(valid_recs)
    assert [r.id for r in pred] == [r.id for r in valid_recs]
    assert [r.text for r in pred] == [r.text for r in valid_recs]
    report = evaluate_records(valid_recs, pred)
    assert report["value"]["f1"] > 0
    # every colour word and "slim fit" are found: 2 gold spans, 3 predicted, 2 right per text
    n = len(valid_recs)
    assert (report["value"]["tp"], report["value"]["fp"], report["value"]["fn"]) == (2 * n, n, 0)
    assert report["value"]["f1"] == pytest.approx(80.0)
