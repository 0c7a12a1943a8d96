"""Table 5's upper bound of the attribute task: the KL term against the GOLD value distribution.

The paper: "we get the upper bound of attribute prediction training with the ground-truth values
(Eq. 13)". The tagger's distribution y^{v->a} of Eq. 12 is replaced by the one the gold BIO tags
give (one-hot tags through Eq. 12, so an attribute whose gold value is one word gets
(1 + 0) / 2 = 0.5, a longer value 1.0, an absent attribute 0), and the attribute classifier is
pulled towards it by lambda * KL(y^a || y^{v->a}_gold). Everything else (Eq. 1-11, the value
loss) is M-JAVE's. At test time the values are the gold ones by definition of the bound, so the
experiment scores gold spans as the value predictions (value F1 100) and the classifier's
attributes.

Eq. 12 was written for MEPAVE's character-level tags, where nearly every value has a B and an I
tag (so the gold target of a present attribute is 1). With word-level tags a one-word value
gives 0.5, a target that disagrees with the classifier's own label 1. The variant
"mjave-attr-upper-bound-presence" uses q_l = 1 when attribute l has a gold value (the max of the
B and I columns instead of their mean), the target the paper's bound presumably had.

Registered as architecture "mjave-attr-upper-bound" (and "...-presence") on import; a model folder
trained with it therefore loads only where `mjave.experiments.upper_bound` has been imported
(the experiments do). The clean home for this is a `ModelConfig` switch in `mjave.model.mjave`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mjave.model.mjave import MJAVE, MJAVEOutput, kl_term, value_to_attribute_probs
from mjave.model.registry import architectures, register

ARCHITECTURE = "mjave-attr-upper-bound"
PRESENCE_ARCHITECTURE = "mjave-attr-upper-bound-presence"
ARCHITECTURES = (ARCHITECTURE, PRESENCE_ARCHITECTURE)


def gold_value_attribute_probs(tag_labels: Tensor, tag_mask: Tensor, num_tags: int,
                               presence: bool = False) -> Tensor:
    """Eq. 12 on one-hot gold tags: (B, L) with values in {0, 0.5, 1}; with `presence`, 1 for
    every attribute that has a gold value (max of B_l and I_l instead of their mean)."""
    valid = tag_mask & (tag_labels >= 0)
    one_hot = F.one_hot(tag_labels.clamp_min(0), num_tags).float()
    one_hot = one_hot * valid.unsqueeze(-1)
    if presence:
        best = one_hot.max(dim=1).values
        return torch.maximum(best[:, 1::2], best[:, 2::2])
    return value_to_attribute_probs(one_hot, valid)


class AttrUpperBoundMJAVE(MJAVE):
    """M-JAVE whose KL term (Eq. 13-14) compares y^a with the gold value distribution."""

    presence = False

    def _add_losses(self, out: MJAVEOutput, attr_probs: Tensor, attr_labels: Tensor,
                    tag_labels: Tensor, tag_mask: Tensor, **partial) -> None:
        super()._add_losses(out, attr_probs, attr_labels, tag_labels, tag_mask, **partial)
        cfg = self.cfg
        if not cfg.kl_enabled:
            return
        gold = gold_value_attribute_probs(tag_labels, tag_mask, cfg.num_tags, self.presence)
        loss_kl = kl_term(attr_probs.float(), gold)
        out.loss = out.loss_attr + out.loss_value + cfg.kl_lambda * loss_kl
        out.loss_kl = loss_kl


class PresenceUpperBoundMJAVE(AttrUpperBoundMJAVE):
    """The attribute-task bound with target 1 for every attribute that has a gold value."""

    presence = True


for _name, _cls in ((ARCHITECTURE, AttrUpperBoundMJAVE),
                    (PRESENCE_ARCHITECTURE, PresenceUpperBoundMJAVE)):
    if _name not in architectures():
        register(_name)(_cls)


def ensure_registered() -> str:
    """Import side effect made explicit for callers; returns the architecture name."""
    return ARCHITECTURE


__all__ = ["ARCHITECTURE", "ARCHITECTURES", "PRESENCE_ARCHITECTURE", "AttrUpperBoundMJAVE",
           "PresenceUpperBoundMJAVE", "gold_value_attribute_probs", "ensure_registered"]
