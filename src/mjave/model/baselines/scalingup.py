"""ScalingUp: Xu et al. (2019), "Scaling up Open Tagging from Tens to Thousands: Comprehension
Empowered Attribute Value Extraction from Product Title" (ACL)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mjave.model.baselines.common import BaselineHead, PackedBiLSTM, masked_softmax, tag_loss
from mjave.config import ModelConfig
from mjave.model.mjave import MJAVEOutput
from mjave.model.registry import register

NEG = -1e4  # attribute logit of a text without any taggable position (probability ~0)


@register("scalingup")
class ScalingUp(BaselineHead):
    """The attribute is a query: for every attribute l one pass tags the text with B/I/O *of l*.

    All L passes run at once as a (B, L, T) tensor. Per pass, with BiLSTM token states s_t and a
    learned attribute embedding e_l (mjave models know attribute ids, not names, so e_l replaces
    the paper's BiLSTM over the attribute's words):

        r_l        = sum_t softmax_t(s_t . e_l / sqrt(d)) s_t          (attribute -> text attention)
        z_{l,t}    = tanh(W_s s_t + W_e e_l + W_p (s_t * e_l) + W_r r_l)
        o_{l,t}    = W_o z_{l,t}                                        (O, B, I logits of pass l)

    The paper's CRF output layer is replaced by a per-token softmax (mjave decodes by argmax).

    Combining the passes into the shared (B, T, 1 + 2L) tag logits: B_l and I_l get pass l's log
    odds against O, log p_l(B) - log p_l(O) and log p_l(I) - log p_l(O), and O gets 0. A softmax
    of that is exactly the posterior of L independent passes given that at most one attribute
    tags the token, so argmax picks O unless some pass prefers B/I to O, and then the most
    confident one. The attribute logit is max_t log p_l(B) - log p_l(O) over tagged positions
    (attribute l is predicted when its B fires anywhere). Loss = sum over l of pass l's BIO CE.
    """

    name = "scalingup"

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        a = cfg.attention_size
        d = 2 * a
        self.rnn = PackedBiLSTM(cfg.text_dim, a)
        self.attribute_embedding = nn.Embedding(cfg.num_attributes, d)
        self.w_s = nn.Linear(d, a, bias=True)
        self.w_e = nn.Linear(d, a, bias=False)
        self.w_p = nn.Linear(d, a, bias=False)
        self.w_r = nn.Linear(d, a, bias=False)
        self.w_o = nn.Linear(a, 3)   # O, B, I of the queried attribute
        self.scale = d ** -0.5

    def pass_logits(self, h: Tensor, mask: Tensor) -> Tensor:
        """(B, L, T, 3) O/B/I logits of every attribute's pass."""
        s, _ = self.rnn(h, mask)
        s = self.dropout(s)                                                  # (B, T, d)
        e = self.attribute_embedding.weight                                  # (L, d)
        weights = masked_softmax(torch.einsum("ld,btd->blt", e, s) * self.scale,
                                 mask[:, None, :])                           # (B, L, T)
        r = weights @ s                                                      # (B, L, d)
        w_pe = self.w_p.weight[None, :, :] * e[:, None, :]                   # (L, a, d)
        z = (self.w_s(s)[:, None, :, :]                                      # (B, 1, T, a)
             + self.w_e(e)[None, :, None, :]                                 # (1, L, 1, a)
             + torch.einsum("btd,lad->blta", s, w_pe)                        # (B, L, T, a)
             + self.w_r(r)[:, :, None, :])                                   # (B, L, 1, a)
        return self.w_o(self.dropout(torch.tanh(z)))

    def logits(self, h: Tensor, mask: Tensor, tag_mask: Tensor) -> tuple[Tensor, Tensor]:
        attr_logits, tag_logits, _ = self.scores(h, mask, tag_mask)
        return attr_logits, tag_logits

    def scores(self, h: Tensor, mask: Tensor, tag_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Combined logits, plus the per-pass logits the loss is computed on."""
        passes = self.pass_logits(h, mask)
        logp = passes.float().log_softmax(-1)
        odds = logp[..., 1:] - logp[..., :1]                                 # (B, L, T, 2): B, I
        B, L, T, _ = odds.shape
        tag_logits = torch.cat([odds.new_zeros(B, T, 1),
                                odds.permute(0, 2, 1, 3).reshape(B, T, 2 * L)], dim=-1)
        attr_logits = odds[..., 0].masked_fill(~tag_mask[:, None, :], NEG).max(-1).values
        return attr_logits, tag_logits, passes

    def losses(self, out: MJAVEOutput, attr_labels: Tensor, tag_labels: Tensor,
               tag_mask: Tensor, aux: object = None, attr_known: Tensor | None = None,
               unknown_attr_weight: float = 0.0, outside_weight: float = 0.0) -> None:
        """Sum over attributes of each pass's BIO cross-entropy (no separate attribute loss).

        Partial labels (`attr_known`): in pass l of a record that does not know attribute l, a
        token outside every span may be O, B or I of l: the marginal likelihood of its allowed
        tags is 1, so it adds 0 (still counted in the mean, as in `tag_loss`). A token inside
        another attribute's span stays O for pass l. `unknown_attr_weight` is unused: there is
        no attribute loss. `outside_weight` w keeps w of such a token's naive loss (O of pass l),
        as `tag_loss` does."""
        passes = aux
        assert isinstance(passes, Tensor)
        L = passes.shape[1]
        ids = torch.arange(L, device=tag_labels.device)[None, :, None]      # (1, L, 1)
        gold = tag_labels[:, None, :]                                        # (B, 1, T)
        # tag 1 + 2l is B-l and 2 + 2l is I-l (AttributeSchema); pass l sees O, B=1, I=2.
        kind = torch.where(gold >= 1, (gold - 1) % 2 + 1, 0)
        target = torch.where((gold >= 1) & ((gold - 1) // 2 == ids), kind, 0)
        valid = (tag_mask & (tag_labels >= 0))[:, None, :].expand_as(target)
        # tag_loss averages over all L * n tagged positions; times L = the sum of per-pass means.
        if attr_known is None:
            out.loss_value = L * tag_loss(passes.flatten(1, 2), target.flatten(1),
                                          valid.flatten(1))
        else:
            nll = -passes.float().log_softmax(-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
            free = ~attr_known.bool()[:, :, None] & (gold == 0)             # (B, L, T)
            nll = torch.where(free, outside_weight * nll, nll).masked_fill(~valid, 0.0)
            count = valid.sum()
            out.loss_value = (L * nll.sum() / count if count > 0 else passes.sum() * 0.0)
        out.loss_attr = None
        out.loss = out.loss_value
