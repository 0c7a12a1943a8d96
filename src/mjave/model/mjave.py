"""M-JAVE (Zhu et al., EMNLP 2020), section 2 of the paper, one module per block.

Inputs are encoder outputs, so the same model trains on cached frozen features or under a
fine-tuned text encoder:

    h        (B, T, text_dim)   token states, h[:, 0] is the [CLS] state h0        (sec. 2.2)
    mask     (B, T) bool        real tokens ([CLS] .. [SEP]); padding is False
    tag_mask (B, T) bool        positions that carry a BIO tag (first sub-word of a word)
    v_global (B, image_dim)     global image vector vG                              (sec. 2.3)
    v        (B, K, image_dim)  K regional image vectors
    knowledge (B, T, 2L)        known-value flags per token (`model.value_knowledge`, not in the
                                paper: `mjave.data.lexicon`)

Gates are vectors over the attention size (one gate value per feature), which is what Eq. 6
and Eq. 10 give with matrix-valued W1, W2, W9, W10. Padding is masked out of every softmax,
sum and max, so the outputs of a text do not depend on how much padding its batch has.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mjave.config import ModelConfig
from mjave.model.crf import BIOCRF, tag_marginals
from mjave.model.losses import attribute_loss, crf_tag_loss, implicit_loss, tag_loss
from mjave.model.registry import register

NEG_INF = -1e9
EPS = 1e-8
BERNOULLI_EPS = 1e-6


def _attend(q: Tensor, k: Tensor, key_mask: Tensor | None, softmax: bool) -> Tensor:
    """Scaled dot-product weights (Eq. 1-4): softmax over keys, or the raw scores (official code)."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if softmax:
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, None, :], NEG_INF)
        return scores.softmax(dim=-1)
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[:, None, :], 0.0)
    return scores


@dataclass
class CrossModalOutput:
    h_prime: Tensor          # (B, T, A) multimodal token states h'
    image_attention: Tensor | None  # (B, T, K) alpha^v, reused by the value tagger
    image_values: Tensor | None     # (B, K, A) W_V^v v_k, reused by the value tagger
    global_gate: Tensor | None      # (B, T, A) g^G


class GlobalGatedCrossModalAttention(nn.Module):
    """Eq. 1-6: text self-attention plus gated attention from each token to the image regions."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        a = cfg.attention_size
        self.cfg = cfg
        self.q_t = nn.Linear(cfg.text_dim, a, bias=False)   # W_Q^t
        self.k_t = nn.Linear(cfg.text_dim, a, bias=False)   # W_K^t
        self.v_t = nn.Linear(cfg.text_dim, a, bias=False)   # W_V^t
        if cfg.use_image:
            self.q_v = nn.Linear(cfg.text_dim, a, bias=False)   # W_Q^v
            self.k_v = nn.Linear(cfg.image_dim, a, bias=False)  # W_K^v
            self.v_v = nn.Linear(cfg.image_dim, a, bias=False)  # W_V^v
            if cfg.global_image_enabled and cfg.global_gate:
                self.gate_text = nn.Linear(cfg.text_dim, a, bias=True)     # W1, b
                self.gate_image = nn.Linear(cfg.image_dim, a, bias=False)  # W2
            if cfg.token_image_fusion == "bilinear":   # beyond the paper, issue #31
                self.fuse_text = nn.Linear(cfg.text_dim + a, a, bias=True)  # W_f^t
                self.fuse_image = nn.Linear(cfg.image_dim, a, bias=True)    # W_f^v

    def text_context(self, h: Tensor, mask: Tensor) -> Tensor:
        """The text-only part of h' (Eq. 5, left): what the image adds is h' minus it."""
        alpha_t = _attend(self.q_t(h), self.k_t(h), mask, self.cfg.attention_softmax)  # Eq. 1-2
        return alpha_t @ self.v_t(h)                                                  # Eq. 5, left

    def forward(self, h: Tensor, mask: Tensor, v_global: Tensor | None,
                v: Tensor | None) -> CrossModalOutput:
        cfg = self.cfg
        h_text = self.text_context(h, mask)
        h_prime = h_text
        if not cfg.use_image:
            return CrossModalOutput(h_prime, None, None, None)
        alpha_v = _attend(self.q_v(h), self.k_v(v), None, cfg.attention_softmax)   # Eq. 3-4
        image_values = self.v_v(v)                                                  # W_V^v v_k
        gate = None
        if cfg.global_image_enabled:
            attended = alpha_v @ image_values                                       # sum_k a_ik W v_k
            if cfg.global_gate:
                gate = torch.sigmoid(self.gate_text(h)
                                     + self.gate_image(v_global)[:, None, :])       # Eq. 6
                attended = gate * attended
            h_prime = h_prime + attended                                            # Eq. 5, right
        if cfg.token_image_fusion == "bilinear":
            # h'_i += (W_f^t [h_i; c_i]) * (W_f^v vG), c_i the token's text context (Eq. 5, left):
            # Eq. 9 and Eq. 7 read h' linearly, so this gives them a bilinear form in the token
            # (and its context: the noun after a colour word) and the photo, the "does this word
            # match the photo" score the paper's additive terms cannot express.
            token = torch.cat([h, h_text], dim=-1)
            h_prime = h_prime + self.fuse_text(token) * self.fuse_image(v_global)[:, None, :]
        return CrossModalOutput(h_prime, alpha_v, image_values, gate)


class AttributeHead(nn.Module):
    """Eq. 7: y^a = sigmoid(W3 sum_i h_i + W4 sum_i h'_i + W5 h0); returns logits. With
    `attr_pooling="mean"` the two sums are means over the real tokens."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.mean = cfg.attr_pooling == "mean"
        self.w3 = nn.Linear(cfg.text_dim, cfg.num_attributes, bias=False)
        self.w4 = nn.Linear(cfg.attention_size, cfg.num_attributes, bias=False)
        self.w5 = nn.Linear(cfg.text_dim, cfg.num_attributes, bias=True)

    def forward(self, h: Tensor, h_prime: Tensor, mask: Tensor) -> Tensor:
        m = mask.unsqueeze(-1).to(h.dtype)
        if self.mean:
            m = m / m.sum(1, keepdim=True).clamp_min(1.0)
        return self.w3((h * m).sum(1)) + self.w4((h_prime * m).sum(1)) + self.w5(h[:, 0])


@dataclass
class TaggerOutput:
    logits: Tensor               # (B, T, num_tags)
    regional_gate: Tensor | None  # (B, K, A) g^R


class RegionalGatedValueTagger(nn.Module):
    """Eq. 9-10: tag logits from h, h', the attribute prediction and gated image regions."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        tags = cfg.num_tags
        self.w6 = nn.Linear(cfg.text_dim, tags, bias=True)
        self.w7 = nn.Linear(cfg.attention_size, tags, bias=False)
        if cfg.attr_conditioning and cfg.multitask:
            self.w8 = nn.Linear(cfg.num_attributes, tags, bias=False)
        if cfg.regional_image_enabled:
            # The regional term lives in the attention space; this maps it to the tag logits.
            self.regional_out = nn.Linear(cfg.attention_size, tags, bias=False)
            if cfg.regional_gate:
                self.w9 = nn.Linear(cfg.num_attributes, cfg.attention_size, bias=True)
                self.w10 = nn.Linear(cfg.image_dim, cfg.attention_size, bias=False)

    def forward(self, h: Tensor, h_prime: Tensor, attrs: Tensor, v: Tensor | None,
                alpha_v: Tensor | None, image_values: Tensor | None) -> TaggerOutput:
        cfg = self.cfg
        logits = self.w6(h) + self.w7(h_prime)
        if hasattr(self, "w8"):
            logits = logits + self.w8(attrs)[:, None, :]
        gate = None
        if cfg.regional_image_enabled:
            values = image_values
            if cfg.regional_gate:
                gate = torch.sigmoid(self.w9(attrs)[:, None, :] + self.w10(v))     # Eq. 10
                values = gate * values
            logits = logits + self.regional_out(alpha_v @ values)                  # Eq. 9, last
        return TaggerOutput(logits, gate)


def value_to_attribute_probs(tag_probs: Tensor, tag_mask: Tensor) -> Tensor:
    """Eq. 12: y^{v->a}_l = (max_i p_i(B_l) + max_i p_i(I_l)) / 2 over tagged positions."""
    masked = tag_probs.masked_fill(~tag_mask.unsqueeze(-1), 0.0)
    best = masked.max(dim=1).values                        # (B, num_tags)
    return 0.5 * (best[:, 1::2] + best[:, 2::2])            # B_l at 1+2l, I_l at 2+2l


def kl_term(attr_probs: Tensor, value_attr_probs: Tensor, form: str = "paper") -> Tensor:
    """Eq. 13: sum_l y^a_l log(y^a_l / y^{v->a}_l), averaged over the batch ("paper"), or the
    sum of the L Bernoulli KLs, which adds (1 - y^a_l) log((1 - y^a_l) / (1 - y^{v->a}_l))
    ("bernoulli"; see `ModelConfig.kl_form`)."""
    if form == "bernoulli":
        eps = BERNOULLI_EPS   # 1 - 1e-8 rounds to 1 in float32: log(1 - q) would be -inf
        p = attr_probs.clamp(eps, 1.0 - eps)
        q = value_attr_probs.clamp(eps, 1.0 - eps)
        kl = p * (p.log() - q.log()) + (1.0 - p) * ((1.0 - p).log() - (1.0 - q).log())
    else:
        p = attr_probs.clamp_min(EPS)
        q = value_attr_probs.clamp_min(EPS)
        kl = p * (p.log() - q.log())
    return kl.sum(-1).mean()


def implicit_sources(cfg: ModelConfig) -> list[int]:
    """The feature sources of what the implicit head reads once pooled, by size: [CNN,
    histogram] for `implicit_image_norm: per_source` with the colour histogram, else one."""
    if cfg.use_image and cfg.implicit_image_norm == "per_source" and cfg.image_colour_dim:
        return [cfg.image_dim - cfg.image_colour_dim, cfg.image_colour_dim]
    return [cfg.image_dim if cfg.use_image else 2 * cfg.text_dim]


class SourceNorm(nn.Module):
    """A LayerNorm per feature source of x (consecutive blocks of `sizes`), each block scaled
    by sqrt(max size / its size) so every source enters the next layer with the same norm.

    Why: under one LayerNorm over [1280 CNN features; 64 histogram bins] the implicit head
    fits the few hundred training photos on the CNN features before the histogram's weights
    grow, and memorises them (valid colour 82-88% where a probe on the bins reads 100%)."""

    def __init__(self, sizes: list[int]):
        super().__init__()
        self.sizes = list(sizes)
        self.norms = nn.ModuleList(nn.LayerNorm(n) for n in self.sizes)
        self.scales = [math.sqrt(max(self.sizes) / n) for n in self.sizes]

    def forward(self, x: Tensor) -> Tensor:
        parts = torch.split(x, self.sizes, dim=-1)
        return torch.cat([s * norm(p) for p, norm, s in zip(parts, self.norms, self.scales)],
                         dim=-1)


@dataclass
class MJAVEOutput:
    attr_logits: Tensor          # (B, L)
    tag_logits: Tensor           # (B, T, num_tags)
    global_gate: Tensor | None
    regional_gate: Tensor | None
    image_attention: Tensor | None
    # Every architecture keeps loss = (means over the batch's examples) + loss_value (the mean
    # over its tagged positions): data-parallel training reweights the two (`losses.shard_loss`).
    loss: Tensor | None = None
    loss_attr: Tensor | None = None
    loss_value: Tensor | None = None
    loss_kl: Tensor | None = None
    implicit_logits: Tensor | None = None   # (B, V) `model.implicit_values`: closed values
    loss_implicit: Tensor | None = None

    @property
    def attr_probs(self) -> Tensor:
        return torch.sigmoid(self.attr_logits)


@register("mjave")
class MJAVE(nn.Module):
    """The whole model: Eq. 1-14 over encoder outputs (see module docstring for the inputs)."""

    supports_crf = True   # `decoding="crf"` (see `mjave.model.registry.build_model`)
    supports_value_knowledge = True   # `model.value_knowledge`
    supports_implicit_values = True   # `model.implicit_values`

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.dropout = nn.Dropout(cfg.dropout)
        self.cross = GlobalGatedCrossModalAttention(cfg)
        # w/o MTL: the tagger gets attention layers of its own, so the tasks share nothing.
        self.value_cross = None if cfg.multitask else GlobalGatedCrossModalAttention(cfg)
        self.attribute_head = AttributeHead(cfg)
        self.tagger = RegionalGatedValueTagger(cfg)
        # decoding="crf": the tag logits are a CRF's emission scores (`mjave.model.crf`).
        self.crf = BIOCRF(cfg.num_tags) if cfg.crf else None
        if cfg.value_knowledge:
            # Known-value flags g_i (2L per token) into h_i and into Eq. 9's tag logits; zero at
            # the start, so training begins from the model without them.
            self.knowledge_in = nn.Linear(2 * cfg.num_attributes, cfg.text_dim, bias=False)
            self.knowledge_tags = nn.Linear(2 * cfg.num_attributes, cfg.num_tags, bias=False)
            nn.init.zeros_(self.knowledge_in.weight)
            nn.init.zeros_(self.knowledge_tags.weight)
        if cfg.implicit_values:
            # Image-only values (issue #31): per closed attribute, a softmax over "none" and its
            # values of W_c^v LN(vG), or of W_c LN[mean_i h_i; h_0] for a text-only model. Not
            # both: most training labels come from texts that state the value, so a head that
            # also read the text would learn to copy the word and, on a text that is silent,
            # have learned little from the photo.
            pools = 2 if cfg.implicit_image_pool == "global+max" else 1
            inputs = pools * cfg.image_dim if cfg.use_image else 2 * cfg.text_dim
            sources = implicit_sources(cfg)
            self.implicit_norm = (SourceNorm(sources * pools) if len(sources) > 1
                                  else nn.LayerNorm(inputs))
            self.implicit_out = nn.Linear(inputs, cfg.num_implicit_values, bias=True)

    def forward(self, h: Tensor, mask: Tensor, tag_mask: Tensor,
                v_global: Tensor | None = None, v: Tensor | None = None,
                attr_labels: Tensor | None = None, tag_labels: Tensor | None = None,
                attr_known: Tensor | None = None, unknown_attr_weight: float = 0.0,
                outside_weight: float = 0.0, knowledge: Tensor | None = None,
                implicit_labels: Tensor | None = None) -> MJAVEOutput:
        """`attr_known` (B, L) bool switches the losses to partial labels (see
        `mjave.model.losses`); `unknown_attr_weight` weights the attribute loss of negatives of
        attributes not known (0: masked), `outside_weight` the naive O target of unlabelled
        tokens (0: the marginal alone). They only matter when labels are given."""
        cfg = self.cfg
        mask = mask.bool()
        tag_mask = tag_mask.bool() & mask
        if cfg.use_image:
            if v is None or v_global is None:
                raise ValueError("this model uses the image: pass v_global and v "
                                 "(zeros for a product without an image)")
            v_global = self.dropout(v_global)
            v = self.dropout(v)
        else:
            v_global = v = None
        if cfg.value_knowledge:
            if knowledge is None:
                raise ValueError("this model reads known values: pass knowledge "
                                 "(`mjave.data.lexicon.ValueLexicon.features`)")
            knowledge = knowledge.to(h.dtype)
            h = h + self.knowledge_in(knowledge)                                # h_i + W_g g_i
        h = self.dropout(h)

        cross = self.cross(h, mask, v_global, v)
        h_prime = self.dropout(cross.h_prime)
        attr_logits = self.attribute_head(h, h_prime, mask)                         # Eq. 7
        attr_probs = torch.sigmoid(attr_logits)

        if cfg.gold_attr_conditioning:
            if attr_labels is None:
                raise ValueError("gold_attr_conditioning needs attr_labels at every forward")
            condition = attr_labels.to(h.dtype)
        elif cfg.multitask:
            condition = attr_probs
        else:  # w/o MTL: the tagger gets no attribute information at all
            condition = torch.zeros_like(attr_probs)

        tag_cross = cross if self.value_cross is None else self.value_cross(h, mask, v_global, v)
        tag_h_prime = h_prime if self.value_cross is None else self.dropout(tag_cross.h_prime)
        tagged = self.tagger(h, tag_h_prime, condition, v, tag_cross.image_attention,
                             tag_cross.image_values)
        if cfg.value_knowledge:
            # Eq. 9 + W_k g_i
            tagged.logits = tagged.logits + self.knowledge_tags(knowledge)

        out = MJAVEOutput(attr_logits, tagged.logits, cross.global_gate, tagged.regional_gate,
                          cross.image_attention)
        if cfg.implicit_values:
            out.implicit_logits = self.implicit_head(h, mask, v_global, v)
        if attr_labels is not None and tag_labels is not None:
            partial = ({} if attr_known is None else
                       {"attr_known": attr_known, "unknown_attr_weight": unknown_attr_weight,
                        "outside_weight": outside_weight})
            self._add_losses(out, attr_probs, attr_labels, tag_labels, tag_mask, **partial)
            if implicit_labels is not None and out.implicit_logits is not None:
                out.loss_implicit = implicit_loss(out.implicit_logits, implicit_labels,
                                                  cfg.implicit_sizes)
                out.loss = out.loss + cfg.implicit_loss_weight * out.loss_implicit
        return out

    def implicit_head(self, h: Tensor, mask: Tensor, v_global: Tensor | None,
                      v: Tensor | None = None) -> Tensor:
        """(B, V) logits of "none" and every closed value: from vG ([vG; max_k v_k] with
        `implicit_image_pool: global+max`), or for a text-only model from the mean token state
        and h_0."""
        if self.cfg.use_image:
            x = v_global
            if self.cfg.implicit_image_pool == "global+max":
                x = torch.cat([v_global, v.amax(dim=1)], dim=-1)
        else:
            m = mask.unsqueeze(-1).to(h.dtype)
            x = torch.cat([(h * m).sum(1) / m.sum(1).clamp_min(1.0), h[:, 0]], dim=-1)
        return self.implicit_out(self.implicit_norm(x))

    def _add_losses(self, out: MJAVEOutput, attr_probs: Tensor, attr_labels: Tensor,
                    tag_labels: Tensor, tag_mask: Tensor, attr_known: Tensor | None = None,
                    unknown_attr_weight: float = 0.0, outside_weight: float = 0.0) -> None:
        cfg = self.cfg
        loss_attr = attribute_loss(out.attr_logits, attr_labels, attr_known,
                                   unknown_attr_weight)                               # Eq. 8
        if self.crf is None:
            loss_value = tag_loss(out.tag_logits, tag_labels, tag_mask, attr_known,
                                  outside_weight)                                     # Eq. 11
        else:
            loss_value = crf_tag_loss(self.crf, out.tag_logits, tag_labels, tag_mask,
                                      attr_known, outside_weight)
        loss = cfg.attr_loss_weight * loss_attr + loss_value
        loss_kl = None
        # The KL term (Eq. 12-13) compares two predicted distributions and reads no label, so
        # partial labels leave it as it is: for an attribute the record does not know it is the
        # only attribute-side signal left, and it keeps y^a consistent with the tagger.
        if cfg.kl_enabled:
            tag_probs = (out.tag_logits.float().softmax(-1) if self.crf is None
                         else tag_marginals(self.crf, out.tag_logits, tag_mask))
            loss_kl = kl_term(attr_probs.float(), value_to_attribute_probs(tag_probs, tag_mask),
                              cfg.kl_form)
            loss = loss + cfg.kl_lambda * loss_kl                                     # Eq. 14
        out.loss, out.loss_attr, out.loss_value, out.loss_kl = loss, loss_attr, loss_value, loss_kl
