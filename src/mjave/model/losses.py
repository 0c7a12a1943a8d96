"""The two task losses (Eq. 8 and 11) in one place, so M-JAVE and every baseline agree.

Both take an optional `attr_known` (B, L) bool mask for training from partial labels (records
distantly labelled from an incomplete catalog table, `mjave data label`): True where the
attribute's labels are complete for the record (every mention of it is a span), False where the
table did not know the attribute, so a token outside every span may still be one of its values.
Without the mask (or with it all True) both losses are exactly the ordinary ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mjave.model.crf import BIOCRF, pack, repair_bio

IGNORE = -100


def attribute_loss(attr_logits: Tensor, attr_labels: Tensor, attr_known: Tensor | None = None,
                   unknown_weight: float = 0.0) -> Tensor:
    """Eq. 8: BCE summed over the L attributes, then the batch mean.

    Summed like the KL term it is balanced against (Eq. 13); a mean over labels would let
    lambda * KL outweigh it L-fold and drag every attribute probability below 0.5.

    Partial labels (`attr_known` given): the negative of an attribute not known for the record is
    not evidence of absence, so its BCE term is weighted by `unknown_weight` (0, the default,
    masks it out). A positive (the attribute has a labelled span) always counts with weight 1,
    whatever the mask says. The sum is not renormalised by the number of attributes kept, so a
    record's attribute loss keeps the scale the KL term is balanced against.
    """
    bce = F.binary_cross_entropy_with_logits(
        attr_logits.float(), attr_labels.float(), reduction="none")
    if attr_known is not None:
        keep = attr_known.bool() | (attr_labels > 0)
        weight = torch.where(keep, 1.0, float(unknown_weight)).to(bce.dtype)
        bce = bce * weight
    return bce.sum(-1).mean()


def allowed_outside_tags(attr_known: Tensor) -> Tensor:
    """(B, L) known-attribute mask -> (B, 1 + 2L) tags a token outside every span may carry:
    O, and B-/I- of every attribute not known for the record (attribute l owns tags 1 + 2l and
    2 + 2l, `AttributeSchema`)."""
    unknown = ~attr_known.bool()
    o = torch.ones_like(unknown[:, :1])
    return torch.cat([o, unknown.repeat_interleave(2, dim=-1)], dim=-1)


def tag_loss(tag_logits: Tensor, tag_labels: Tensor, tag_mask: Tensor,
             attr_known: Tensor | None = None, outside_weight: float = 0.0) -> Tensor:
    """Eq. 11 as M-JAVE computes it: CE over the tagged positions (labels -100 ignored).

    A batch without any tagged position gives a zero that still depends on the logits, so
    `backward` works (and touches every parameter the logits depend on).

    Partial labels (`attr_known` (B, L) given): a tagged token whose gold tag is O may be an
    unlabelled value of an attribute the record does not know, so its loss is the marginal
    negative log-likelihood of the allowed tags, -log(p(O) + sum over unknown attributes a of
    p(B-a) + p(I-a)); a token inside a span keeps -log p(gold tag). The mean is over the same
    tagged positions as the ordinary loss, so with every attribute known the two are equal.

    `outside_weight` w mixes the naive target back in for those tokens: their loss becomes
    (1 - w) * marginal + w * (-log p(O)). The marginal alone (w = 0) lets every unlabelled token
    lean towards some unknown attribute at no cost, and since a catalog table lists only the
    attributes a product has, "unknown" covers the many absent attributes as well as the few
    hidden ones; a small w says that most unlabelled tokens are still O (in expectation, the
    same as training a random w of them as O: negative sampling).
    """
    labels = tag_labels.masked_fill(~tag_mask, IGNORE)
    # Sum over the tagged positions divided by their count (at least 1): a mean that is 0 for a
    # batch without tagged positions, with no data-dependent branch (a host sync on a GPU and a
    # graph break under torch.compile).
    count = (labels != IGNORE).sum().clamp_min(1)
    if attr_known is None:
        loss = F.cross_entropy(tag_logits.float().flatten(0, 1), labels.flatten(),
                               ignore_index=IGNORE, reduction="sum") / count
    else:
        logits = tag_logits.float()
        valid = labels != IGNORE                                          # (B, T)
        gold = F.one_hot(labels.clamp_min(0), logits.shape[-1]).bool()   # (B, T, num_tags)
        outside = allowed_outside_tags(attr_known)[:, None, :]           # (B, 1, num_tags)
        allowed = torch.where((labels == 0).unsqueeze(-1), outside, gold)
        log_z = logits.logsumexp(-1)
        nll = log_z - logits.masked_fill(~allowed, float("-inf")).logsumexp(-1)  # (B, T)
        if outside_weight:
            naive = log_z - logits[..., 0]                                # -log p(O)
            nll = torch.where(labels == 0, (1.0 - outside_weight) * nll + outside_weight * naive,
                              nll)
        loss = nll.masked_fill(~valid, 0.0).sum() / count
    return loss


def crf_tag_loss(crf: BIOCRF, tag_logits: Tensor, tag_labels: Tensor, tag_mask: Tensor,
                 attr_known: Tensor | None = None, outside_weight: float = 0.0) -> Tensor:
    """Eq. 11 for a CRF tagger (`decoding="crf"`): -log p(gold tag sequence) of each text,
    summed and divided by the tagged positions `tag_loss` averages over, so `loss_value` keeps
    its per-position scale and `shard_loss` its meaning.

    The gold is a set of sequences, position by position: the labelled tag, any tag at an
    unlabelled (IGNORE) position, and under partial labels (`attr_known`) O or a tag of an
    unknown attribute where the gold tag is O (`allowed_outside_tags`, the marginal likelihood
    of `tag_loss`); -log p = log Z - log Z(gold set). An I-l that cannot continue is read as
    B-l (`repair_bio`). `outside_weight` w mixes the naive likelihood (O is O) back in per text:
    (1 - w) * marginal + w * naive.
    """
    labels = tag_labels.masked_fill(~tag_mask, IGNORE)
    count = (labels != IGNORE).sum().clamp_min(1)
    emissions, mask, _ = pack(tag_logits, tag_mask)
    gold = repair_bio(pack(labels, tag_mask)[0], IGNORE)
    labelled = (gold != IGNORE).unsqueeze(-1)
    exact = F.one_hot(gold.clamp_min(0), emissions.shape[-1]).bool() | ~labelled
    sets = [torch.ones_like(exact), exact]                 # Z, then Z over the gold set(s)
    if attr_known is not None:
        outside = allowed_outside_tags(attr_known)[:, None, :]
        sets.append(torch.where((gold == 0).unsqueeze(-1), outside, exact))
    # One forward pass over the sets stacked along the batch: a third of the kernel launches.
    n = len(sets)
    log_z = crf.log_partition(emissions.repeat(n, 1, 1), mask.repeat(n, 1),
                              torch.cat(sets)).view(n, -1)
    nll = log_z[0] - log_z[1]
    if attr_known is not None:
        nll = (1.0 - outside_weight) * (log_z[0] - log_z[2]) + outside_weight * nll
    return nll.sum() / count


def tag_count(tag_labels: Tensor, tag_mask: Tensor) -> Tensor:
    """The number of positions `tag_loss` averages over: tagged and labelled (not IGNORE)."""
    return (tag_mask.bool() & (tag_labels != IGNORE)).sum()


def shard_loss(loss: Tensor, loss_value: Tensor | None, counts: Tensor, totals: Tensor) -> Tensor:
    """The part of a global batch's loss that one shard of it contributes (data parallelism).

    Every architecture's `loss` is a mean over the batch's examples (attribute BCE, KL) plus
    `loss_value`, the tag loss: a mean over its `tag_count` positions. `counts` and `totals` are
    (examples, tag positions) of the shard and of the global batch. Each mean is reweighted by
    the shard's share of its denominator, so the parts of all shards sum to the global batch's
    loss, and their gradients to its gradient, however unevenly the shards hold tagged tokens
    (averaging per-shard means would not). A zero total weighs its term 0.
    """
    share = counts.double() / totals.double().clamp_min(1)
    per_token = loss_value if loss_value is not None else torch.zeros_like(loss)
    return (share[0].to(loss.dtype) * (loss - per_token)
            + share[1].to(loss.dtype) * per_token)


def implicit_loss(logits: Tensor, labels: Tensor, sizes: list[int]) -> Tensor:
    """Cross entropy of the implicit head (`model.implicit_values`), one softmax per closed
    attribute over its `sizes[k]` columns ("none", then its values). `labels` (B, V) holds each
    known attribute's one-hot target and -1 on the columns of an attribute not known. Summed
    over an example's known attributes (as Eq. 8 sums over attributes) and averaged over the
    batch's examples, so `shard_loss` weighs it like the other per-example means."""
    total = logits.new_zeros((), dtype=torch.float32)
    lo = 0
    for size in sizes:
        z, y = logits[:, lo:lo + size].float(), labels[:, lo:lo + size]
        known = y[:, 0] >= 0
        if bool(known.any()):
            total = total + F.cross_entropy(z[known], y[known].argmax(-1), reduction="sum")
        lo += size
    return total / max(1, labels.shape[0])
