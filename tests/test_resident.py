"""Device-resident frozen-feature batches (mjave.training.resident): the same batches as
`collate(batches(...))`, the same training losses, and the compiled step."""

import os

import numpy as np
import pytest
import torch

from mjave.data.records import Record
from mjave.data.tagging import Encoded
from mjave.model import MJAVE, ModelConfig
from mjave.model.batches import Example, batches, collate
from mjave.model.network import TextImageModel
from mjave.training.resident import (ResidentData, compile_available, make_train_step,
                                     resident_batches)

L, DT, DI, K, PAD = 3, 8, 6, 4, 7


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_example(i: int, rng: np.random.Generator, text: bool, image: bool,
                 partial: bool) -> Example:
    """A text of 3..9 pieces; every third word has two pieces (label only on its first)."""
    n = int(rng.integers(3, 10))
    word_ids, labels, w = [None], [-100], 0
    while len(word_ids) < n - 1:
        word_ids.append(w)
        labels.append(int(rng.integers(0, 1 + 2 * L)))
        if w % 3 == 2 and len(word_ids) < n - 1:
            word_ids.append(w)
            labels.append(-100)
        w += 1
    word_ids.append(None)
    labels.append(-100)
    enc = Encoded(input_ids=[int(x) for x in rng.integers(10, 100, n)], offsets=[(0, 0)] * n,
                  word_ids=word_ids, labels=labels)
    known = rng.random(L) > 0.5 if partial and i % 6 == 1 else None
    return Example(Record(id=f"r{i}", text="x"), enc, (rng.random(L) > 0.5).astype(np.float32),
                   rng.standard_normal((n, DT)).astype(np.float32) if text else None,
                   rng.standard_normal((1 + K, DI)).astype(np.float32) if image else None,
                   known)


def make_examples(n=11, text=True, image=True, partial=True, seed=0) -> list[Example]:
    rng = np.random.default_rng(seed)
    return [make_example(i, rng, text, image, partial) for i in range(n)]


def assert_same_batch(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("text,image,partial", [(True, True, True), (True, False, True),
                                                (False, True, False), (True, True, False)])
@pytest.mark.parametrize("seed", [None, 5])
def test_batches_equal_collate(text, image, partial, seed):
    ex = make_examples(text=text, image=image, partial=partial)
    data = ResidentData.from_examples(ex, pad_id=PAD)
    g1 = torch.Generator().manual_seed(seed) if seed is not None else None
    g2 = torch.Generator().manual_seed(seed) if seed is not None else None
    ref = [collate(c, pad_id=PAD) for c in batches(ex, 4, generator=g1)]
    got = list(resident_batches(data, 4, generator=g2))
    assert len(got) == len(ref) == 3
    for a, b in zip(got, ref):
        assert_same_batch(a, b)
    if seed is not None:   # the generator advances the same way (next epoch's order agrees)
        assert torch.equal(g1.get_state(), g2.get_state())
    assert any("attr_known" in b for b in ref) == partial
    assert any("attr_known" not in b for b in ref)   # batches without a partial example


def test_without_attr_known_and_drop_last():
    ex = make_examples()
    data = ResidentData.from_examples(ex, pad_id=PAD)
    ref = [collate(c, pad_id=PAD) for c in batches(ex, 4, torch.Generator().manual_seed(1))]
    got = list(resident_batches(data, 4, torch.Generator().manual_seed(1), drop_last=True,
                                with_attr_known=False))
    assert len(got) == 2 == data.num_batches(4, drop_last=True)
    for a, b in zip(got, ref):
        b.pop("attr_known", None)
        assert_same_batch(a, b)


def test_pad_to_dataset_and_bf16_features():
    ex = make_examples()
    data = ResidentData.from_examples(ex, pad_id=PAD, feature_dtype=torch.bfloat16)
    assert data.h.dtype == data.v.dtype == torch.bfloat16 and data.mask.dtype == torch.bool
    ref = [collate(c, pad_id=PAD) for c in batches(ex, 4)]
    T = max(len(e.encoded) for e in ex)
    for a, b in zip(resident_batches(data, 4, pad_to="dataset", feature_dtype=torch.float32),
                    ref):
        t = b["mask"].shape[1]
        assert a["mask"].shape[1] == T and not a["mask"][:, t:].any()
        assert (a["tag_labels"][:, t:] == -100).all() and (a["input_ids"][:, t:] == PAD).all()
        assert torch.equal(a["tag_mask"][:, :t], b["tag_mask"])
        assert torch.equal(a["h"][:, :t], b["h"].bfloat16().float())
        assert torch.equal(a["v"], b["v"].bfloat16().float())


def test_text_features_must_match_tokens():
    ex = make_examples(n=3)
    ex[1].text_features = ex[1].text_features[:-1]
    with pytest.raises(ValueError, match="stored text features"):
        ResidentData.from_examples(ex)


def make_net(dropout=0.1) -> TextImageModel:
    torch.manual_seed(0)
    cfg = ModelConfig(text_dim=DT, image_dim=DI, num_attributes=L, attention_size=8,
                      dropout=dropout)
    return TextImageModel(MJAVE(cfg))


def trainer_losses(net, ex, steps_batches, weight):
    """The trainer's loop body, verbatim: collate, forward, zero_grad, backward, clip, step."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    torch.manual_seed(3)
    out = []
    for chunk in steps_batches:
        batch = collate(chunk, pad_id=PAD)
        output = net(batch, unknown_attr_weight=weight)
        opt.zero_grad(set_to_none=True)
        output.loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        out.append(output.loss.detach())
    return out


def test_training_step_gives_identical_losses():
    ex = make_examples(n=13)
    net_a, net_b = make_net(), make_net()
    ref = trainer_losses(net_a, ex, batches(ex, 4, torch.Generator().manual_seed(2)), 0.3)
    opt = torch.optim.Adam(net_b.parameters(), lr=1e-2)
    step = make_train_step(net_b, opt, 5.0, unknown_attr_weight=0.3)
    torch.manual_seed(3)
    data = ResidentData.from_examples(ex, pad_id=PAD)
    got = [step(b) for b in resident_batches(data, 4, torch.Generator().manual_seed(2))]
    assert len(got) == len(ref) == 4
    for a, b in zip(got, ref):
        assert torch.equal(a, b)
    for p, q in zip(net_a.parameters(), net_b.parameters()):
        assert torch.equal(p, q)


def test_dataset_padding_gives_the_same_losses():
    """The static-shape option: padding is masked out, so only float rounding differs."""
    ex = make_examples(n=12)
    data = ResidentData.from_examples(ex, pad_id=PAD)
    losses = {}
    for pad_to in ("batch", "dataset"):
        net = make_net(dropout=0.0)
        step = make_train_step(net, torch.optim.Adam(net.parameters(), lr=1e-2), 5.0)
        losses[pad_to] = [step(b) for b in resident_batches(data, 4, pad_to=pad_to)]
    assert torch.allclose(torch.stack(losses["batch"]), torch.stack(losses["dataset"]),
                          rtol=1e-5, atol=1e-6)


def run_steps(net, data, compile, backend="inductor", steps=2):
    """Losses of `steps` steps on static-shape batches, and whether the step ran compiled."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    step = make_train_step(net, opt, 5.0, compile=compile, compile_backend=backend)
    it = resident_batches(data, 4, pad_to="dataset", drop_last=True)
    return [step(next(it)) for _ in range(steps)], step.compiled()


@pytest.mark.parametrize("backend", [
    "aot_eager",
    pytest.param("inductor", marks=[pytest.mark.slow, pytest.mark.skipif(
        not os.environ.get("MJAVE_TEST_INDUCTOR"),
        reason="inductor codegen takes about a minute on a small CPU; MJAVE_TEST_INDUCTOR=1")]),
])
def test_compiled_step_matches_eager(backend):
    """Dynamo capture + AOT autograd (aot_eager, seconds): checks what is traced and how the
    gradients flow. Inductor codegen adds only its kernels; opt in with MJAVE_TEST_INDUCTOR=1."""
    if not compile_available():
        pytest.skip("torch.compile is not available in this torch build")
    data = ResidentData.from_examples(make_examples(n=8, partial=True), pad_id=PAD)
    eager, _ = run_steps(make_net(dropout=0.0), data, compile=False)
    torch._dynamo.reset()
    compiled, ran_compiled = run_steps(make_net(dropout=0.0), data, compile=True,
                                       backend=backend)
    torch._dynamo.reset()
    if not ran_compiled:
        pytest.skip(f"torch.compile with {backend} does not work here")
    for a, b in zip(compiled, eager):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), (a, b)


def test_compile_failure_falls_back_to_eager():
    if not compile_available():
        pytest.skip("torch.compile is not available in this torch build")

    def broken_backend(gm, example_inputs):
        raise RuntimeError("no compiler here")

    data = ResidentData.from_examples(make_examples(n=8, partial=False), pad_id=PAD)
    eager, _ = run_steps(make_net(dropout=0.0), data, compile=False)
    torch._dynamo.reset()
    with pytest.warns(UserWarning, match="training eagerly"):
        fallen, ran_compiled = run_steps(make_net(dropout=0.0), data, compile=True,
                                         backend=broken_backend)
    torch._dynamo.reset()
    assert not ran_compiled
    for a, b in zip(fallen, eager):
        assert torch.equal(a, b)


def test_known_value_flags_ride_along_like_collate():
    """`model.value_knowledge`: the (T, 2L) flags are padded and cut like the token states."""
    from dataclasses import replace
    rng = np.random.default_rng(3)
    ex = [replace(e, knowledge=(rng.random((len(e.encoded), 2 * L)) > 0.7).astype(np.float32))
          for e in make_examples(partial=False)]
    data = ResidentData.from_examples(ex, pad_id=PAD)
    ref = [collate(c, pad_id=PAD)
           for c in batches(ex, 4, generator=torch.Generator().manual_seed(1))]
    got = list(resident_batches(data, 4, generator=torch.Generator().manual_seed(1)))
    for a, b in zip(got, ref):
        assert_same_batch(a, b)
    assert all(b["knowledge"].shape[-1] == 2 * L for b in ref)
    assert ref[0]["knowledge"].sum() > 0
