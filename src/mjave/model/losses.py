"""The two task losses (Eq. 8 and 11) in one place, so M-JAVE and every baseline agree."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE = -100


def attribute_loss(attr_logits: Tensor, attr_labels: Tensor) -> Tensor:
    """Eq. 8: BCE summed over the L attributes, then the batch mean.

    Summed like the KL term it is balanced against (Eq. 13); a mean over labels would let
    lambda * KL outweigh it L-fold and drag every attribute probability below 0.5."""
    return F.binary_cross_entropy_with_logits(
        attr_logits.float(), attr_labels.float(), reduction="none").sum(-1).mean()


def tag_loss(tag_logits: Tensor, tag_labels: Tensor, tag_mask: Tensor) -> Tensor:
    """Eq. 11 as M-JAVE computes it: CE over the tagged positions (labels -100 ignored).

    A batch without any tagged position gives a zero that still depends on the logits, so
    `backward` works (and touches every parameter the logits depend on).
    """
    labels = tag_labels.masked_fill(~tag_mask, IGNORE)
    loss = F.cross_entropy(tag_logits.float().flatten(0, 1), labels.flatten(),
                           ignore_index=IGNORE)
    if not torch.isfinite(loss):
        loss = tag_logits.sum() * 0.0
    return loss
