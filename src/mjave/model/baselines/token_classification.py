"""Token classification: the plain span tagger every fine-tuned extractor starts from
(Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language
Understanding", section 4.3: a linear layer over the encoder's token states, softmax over BIO).

It is the reference the real-data benchmark (benchmarks/realdata.py) compares M-JAVE/JAVE with:
the same encoder, fine-tuned the same way, with none of M-JAVE's heads.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mjave.model.baselines.common import BaselineHead
from mjave.config import ModelConfig
from mjave.model.crf import BIOCRF, tag_marginals
from mjave.model.losses import crf_tag_loss, tag_loss
from mjave.model.mjave import MJAVEOutput
from mjave.model.registry import register

_EPS = 1e-6


@register("token-classification")
class TokenClassification(BaselineHead):
    """BIO tag = W h_n + b on every token, trained with the tag cross entropy alone.

    It has no attribute classifier: an attribute's probability is read off the tags, as the
    largest p(B-a) + p(I-a) over the text's tagged tokens, so attribute F1 means "the tagger
    marked some value of it" and the shared decoder and metrics apply unchanged.
    """

    name = "token-classification"
    supports_crf = True   # `decoding="crf"`: the attribute probabilities read its marginals

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.tagger = nn.Linear(cfg.text_dim, cfg.num_tags)
        self.crf = BIOCRF(cfg.num_tags) if cfg.crf else None

    def logits(self, h: Tensor, mask: Tensor, tag_mask: Tensor) -> tuple[Tensor, Tensor]:
        tag_logits = self.tagger(h)
        tag_probs = (tag_logits.float().softmax(-1) if self.crf is None
                     else tag_marginals(self.crf, tag_logits, tag_mask))
        probs = tag_probs[..., 1:]                                       # (B, T, 2L): B-a, I-a
        B, T, _ = probs.shape
        per_attr = probs.reshape(B, T, -1, 2).sum(-1)                    # (B, T, L)
        per_attr = per_attr.masked_fill(~tag_mask[..., None], 0.0).amax(1)
        attr_logits = torch.logit(per_attr.clamp(_EPS, 1 - _EPS))
        return attr_logits, tag_logits

    def losses(self, out: MJAVEOutput, attr_labels: Tensor, tag_labels: Tensor,
               tag_mask: Tensor, aux: object = None, attr_known: Tensor | None = None,
               unknown_attr_weight: float = 0.0, outside_weight: float = 0.0) -> None:
        if self.crf is None:
            out.loss_value = tag_loss(out.tag_logits, tag_labels, tag_mask, attr_known,
                                      outside_weight)
        else:
            out.loss_value = crf_tag_loss(self.crf, out.tag_logits, tag_labels, tag_mask,
                                          attr_known, outside_weight)
        out.loss = out.loss_value
