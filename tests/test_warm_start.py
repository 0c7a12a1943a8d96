"""Warm start (`train.init_from`, `mjave train --init-from`): a run's network starts from a trained
folder's safetensors weights; other attributes load the tensors that still fit; another encoder
or architecture is refused by name; a resumed run keeps its checkpoint's weights."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mjave.config import ConfigError, RunConfig, TrainConfig, apply_overrides

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_config(tmp: Path, bert: Path, train: Path, out: str, epochs: int = 1,
               **train_kw) -> RunConfig:
    from mjave.testing import tiny_text_run_config
    cfg = tiny_text_run_config(bert, tmp / "features", epochs=epochs)
    return replace(cfg, output_dir=str(tmp / out), data=replace(cfg.data, train=str(train)),
                   train=replace(cfg.train, **train_kw))


@pytest.fixture(scope="module")
def source(tmp_path_factory, tiny_bert) -> tuple[Path, Path]:
    """(a tiny text model trained one epoch, its training data folder)."""
    from mjave.testing import write_tiny_catalog
    from mjave.training.trainer import train
    tmp = tmp_path_factory.mktemp("warm")
    data = write_tiny_catalog(tmp / "data", n=12)
    result = train(run_config(tmp, tiny_bert, data / "train.jsonl", "source"))
    return result.output_dir, data


def built(cfg: RunConfig):
    """The network `mjave train` would start its first epoch from (`set_up`, on CPU)."""
    from mjave.training.trainer import set_up
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    return set_up(cfg, Path(cfg.output_dir), torch.device("cpu"), None).net


def test_init_from_starts_from_the_source_weights(tmp_path, tiny_bert, source):
    folder, data = source
    weights = load_file(str(folder / "model.safetensors"))
    fresh = built(run_config(tmp_path, tiny_bert, data / "train.jsonl", "fresh")).state_dict()
    assert any(not torch.equal(fresh[k], weights[k]) for k in weights)  # the check can fail
    warm = built(run_config(tmp_path, tiny_bert, data / "train.jsonl", "warm",
                            init_from=str(folder))).state_dict()
    assert warm.keys() == weights.keys()
    for k in weights:
        assert torch.equal(warm[k], weights[k]), k
    config = json.loads((tmp_path / "warm" / "config.json").read_text())
    assert config["train"]["init_from"] == str(folder)


def test_a_warm_run_trains_fresh_epochs_and_resumes_without_reloading(tmp_path, tiny_bert, source,
                                                                      monkeypatch):
    from mjave.training import trainer
    folder, data = source
    calls = []
    real = trainer.warm_start
    monkeypatch.setattr(trainer, "warm_start", lambda *a: calls.append(a[-1]) or real(*a))

    def cfg(out):
        return run_config(tmp_path, tiny_bert, data / "train.jsonl", out, epochs=2,
                          init_from=str(folder), keep_checkpoint=True)
    whole = trainer.train(cfg("whole"))
    assert whole.epochs_run == 2 and whole.resumed_from is None and len(whole.history) == 2
    first = trainer.train(cfg("split"), stop_after_epochs=1)
    assert first.epochs_run == 1
    calls.clear()
    second = trainer.train(cfg("split"))
    assert second.resumed_from == 1 and second.epochs_run == 2
    assert calls == []   # the checkpoint's weights, not the source's, go on
    a = load_file(str(whole.output_dir / "checkpoint" / "model.safetensors"))
    b = load_file(str(second.output_dir / "checkpoint" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_an_extra_attribute_loads_every_tensor_that_fits(tmp_path, tiny_bert, source, caplog):
    folder, data = source
    rows = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()]
    for r in rows:   # "shirt" as a Garment: Color, Fit, Garment instead of Color, Fit
        b = r["text"].index("shirt")
        r["spans"].append({"attr": "Garment", "begin": b, "end": b + 5, "value": "shirt"})
    extra = tmp_path / "extra.jsonl"
    extra.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    weights = load_file(str(folder / "model.safetensors"))
    with caplog.at_level(logging.WARNING, logger="mjave.training.warm_start"):
        net = built(run_config(tmp_path, tiny_bert, extra, "extra", init_from=str(folder)))
    state = net.state_dict()
    same = [k for k in state if state[k].shape == weights[k].shape]
    other = [k for k in state if state[k].shape != weights[k].shape]
    assert same and other
    assert all(torch.equal(state[k], weights[k]) for k in same)
    # attributes: Color 0 -> 0, Fit 1 -> 1, Garment 2 new; tags O B-Color I-Color B-Fit I-Fit:
    # 0..4 -> 0..4, B-/I-Garment 5, 6 new
    w5 = state["head.attribute_head.w5.weight"]                        # (attributes, hidden)
    assert w5.shape[0] == 3 and torch.equal(w5[:2], weights["head.attribute_head.w5.weight"])
    assert not torch.equal(w5[2], torch.zeros_like(w5[2]))          # fresh, not zeroed
    w8 = state["head.tagger.w8.weight"]                                # (tags, attributes)
    assert w8.shape == (7, 3) and torch.equal(w8[:5, :2], weights["head.tagger.w8.weight"])
    message = caplog.text
    assert (f"of {len(state)} tensors, {len(same)} loaded whole, {len(other)} by attribute "
            "(Color, Fit:") in message and "0 not loaded" in message
    assert "(Color, Fit) are not this run's (Color, Fit, Garment)" in message


def test_a_subset_of_the_attributes_keeps_their_rows():
    from mjave.data.schema import AttributeSchema
    from mjave.training.warm_start import by_attribute
    was, now = AttributeSchema(("Color", "Fit", "Size")), AttributeSchema(("Fit", "Size"))
    old = torch.arange(7 * 3, dtype=torch.float32).reshape(7, 3)    # (tags, attributes)
    new = torch.full((5, 2), -1.0)
    out = by_attribute(old, new, was, now)
    # tags O, B-Fit, I-Fit, B-Size, I-Size are old rows 0, 3, 4, 5, 6; Fit, Size old columns 1, 2
    assert out.tolist() == old[[0, 3, 4, 5, 6]][:, [1, 2]].tolist()
    assert by_attribute(torch.zeros(4, 3), torch.zeros(5, 2), was, now) is None  # 4: no tags


def test_another_encoder_or_architecture_is_refused_by_name(tmp_path, tiny_bert, source):
    from mjave.testing import save_tiny_bert
    folder, data = source
    other_bert = save_tiny_bert(tmp_path / "other-bert", seed=1)   # same shape, other weights
    cfg = run_config(tmp_path, other_bert, data / "train.jsonl", "other", init_from=str(folder))
    with pytest.raises(ConfigError, match="text encoder .*content hash"):
        built(cfg)
    cfg = run_config(tmp_path, tiny_bert, data / "train.jsonl", "arch", init_from=str(folder))
    cfg = replace(cfg, model=replace(cfg.model, attention_size=8))
    with pytest.raises(ConfigError, match="model.attention_size is 16 there, 8 here"):
        built(cfg)


def test_only_safetensors_are_read(tmp_path, tiny_bert, source):
    import shutil
    folder, data = source
    copy = tmp_path / "pickled"
    shutil.copytree(folder, copy)
    (copy / "model.safetensors").rename(copy / "model.bin")   # a pickle's name: not read
    cfg = run_config(tmp_path, tiny_bert, data / "train.jsonl", "p", init_from=str(copy))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        built(cfg)


def test_config_and_cli():
    with pytest.raises(ConfigError, match="init_from"):
        TrainConfig(init_from="")
    cfg = apply_overrides(RunConfig(), ["train.init_from=runs/round1"])
    assert cfg.train.init_from == "runs/round1"
    assert RunConfig().train.init_from is None
    from mjave.cli import build_parser
    args = build_parser().parse_args(["train", "--init-from", "runs/round1"])
    assert args.init_from == "runs/round1"


def test_as_many_attributes_in_another_order_are_mapped_by_name_not_position():
    # OA-Mine and WDC-PAVE both have 51 attributes: same shapes, other names; intermediate
    # training from one into the other must not hand Color's weights to another attribute
    from mjave.data.schema import AttributeSchema
    from mjave.training.warm_start import attribute_sized, by_attribute
    was, now = AttributeSchema(("Color", "Fit")), AttributeSchema(("Fit", "Size"))
    old = torch.arange(5 * 2, dtype=torch.float32).reshape(5, 2)    # (tags, attributes)
    new = torch.full((5, 2), -1.0)
    out = by_attribute(old, new, was, now)
    # Fit: old column 1 -> new column 0, tags B-/I-Fit old rows 3, 4 -> new rows 1, 2;
    # O stays row 0; Size (new column 1, rows 3, 4) keeps its fresh weights
    assert out[[0, 1, 2]][:, 0].tolist() == old[[0, 3, 4]][:, 1].tolist()
    assert out[:, 1].tolist() == [-1.0] * 5 and out[3:, 0].tolist() == [-1.0, -1.0]
    assert attribute_sized("head.tagger.w8.weight", (5, 2), was)
    assert not attribute_sized("text_encoder.embeddings.weight", (5, 2), was)
    assert not attribute_sized("head.w1.weight", (16, 32), was)
