"""A linear-chain CRF over BIO tags (Lafferty et al. 2001), the tagger's `decoding="crf"`.

The tag logits of Eq. 9 become emission scores and the CRF adds learned start, transition and
end scores, so a tag sequence y_1..y_n over a text's tagged words (first pieces) scores

    s(y) = start[y_1] + sum_i e_i[y_i] + sum_{i>1} trans[y_{i-1}, y_i] + end[y_n]

and p(y) = exp s(y) / Z. Transitions that BIO forbids (an I-l that does not follow B-l or I-l,
a sequence that opens with I-l) are fixed at `FORBIDDEN`, so neither training nor decoding ever
gives them mass. Training minimises -log p(gold) (`mjave.model.losses.crf_tag_loss`); decoding
(`mjave.inference.crf`) runs Viterbi and forward-backward in numpy with `potentials()`, so an
ONNX graph stays the network alone.

Tag layout as everywhere (`AttributeSchema`): O at 0, B-l at 1 + 2l, I-l at 2 + 2l. Tensors here
are "packed": the tagged positions of each row moved to its front (`pack`), `mask` a prefix.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

FORBIDDEN = -1e4
"""Score of a transition BIO forbids: exp(-1e4) is 0 in float32 and sums of it stay finite."""


def bio_allowed(num_tags: int) -> tuple[Tensor, Tensor]:
    """(K,) may a sequence start with the tag, and (K, K) may `next` follow `prev` ([prev, next]):
    I-l only after B-l or I-l, everything else anywhere."""
    start = torch.ones(num_tags, dtype=torch.bool)
    trans = torch.ones(num_tags, num_tags, dtype=torch.bool)
    inside = torch.arange(2, num_tags, 2)
    start[inside] = False
    trans[:, inside] = False
    trans[inside - 1, inside] = True     # B-l -> I-l
    trans[inside, inside] = True         # I-l -> I-l
    return start, trans


def pack(values: Tensor, tag_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(B, T, ...) values at the tagged positions moved to the front of each row, in order:
    (packed values, packed prefix mask (B, T), index (B, T) of each packed position in T)."""
    index = torch.sort((~tag_mask).to(torch.int8), dim=1, stable=True).indices
    packed_mask = tag_mask.gather(1, index)
    if values.dim() == 3:
        packed = values.gather(1, index.unsqueeze(-1).expand(-1, -1, values.shape[-1]))
    else:
        packed = values.gather(1, index)
    return packed, packed_mask, index


def unpack(packed: Tensor, index: Tensor, packed_mask: Tensor) -> Tensor:
    """(B, T, K) `pack` undone: packed rows back at their positions, zeros elsewhere."""
    packed = packed.masked_fill(~packed_mask.unsqueeze(-1), 0.0)
    out = torch.zeros_like(packed)
    return out.scatter(1, index.unsqueeze(-1).expand_as(packed), packed)


class BIOCRF(nn.Module):
    """Learned start (K,), transition (K, K) and end (K,) scores; zeros at first, so an untrained
    CRF is the per-word softmax with BIO constraints."""

    def __init__(self, num_tags: int):
        super().__init__()
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))  # [prev, next]
        self.end = nn.Parameter(torch.zeros(num_tags))
        start_ok, trans_ok = bio_allowed(num_tags)
        # Not persistent: the weights file holds only what is learned.
        self.register_buffer("start_ok", start_ok, persistent=False)
        self.register_buffer("trans_ok", trans_ok, persistent=False)

    def potentials(self) -> tuple[Tensor, Tensor, Tensor]:
        """(start, transitions, end) in float32 with the BIO-forbidden entries at FORBIDDEN."""
        return (self.start.float().masked_fill(~self.start_ok, FORBIDDEN),
                self.transitions.float().masked_fill(~self.trans_ok, FORBIDDEN),
                self.end.float())

    def alphas(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """(B, N, K) forward scores: alpha_i[k] = log-sum-exp of the scores of every prefix
        y_1..y_i with y_i = k; past a row's end the last one is carried on."""
        start, trans, _ = self.potentials()
        alpha = [start + emissions[:, 0]]
        for i in range(1, emissions.shape[1]):
            nxt = torch.logsumexp(alpha[-1].unsqueeze(-1) + trans, dim=1) + emissions[:, i]
            alpha.append(torch.where(mask[:, i, None], nxt, alpha[-1]))
        return torch.stack(alpha, 1)

    def log_partition(self, emissions: Tensor, mask: Tensor,
                      allowed: Tensor | None = None) -> Tensor:
        """(B,) log Z: log-sum-exp of s(y) over every tag sequence (the forward algorithm);
        with `allowed` (B, N, K) bool only over sequences whose every tag is allowed. Packed
        inputs: `emissions` (B, N, K), `mask` (B, N) a prefix. An empty row gives 0."""
        emissions = emissions.float()
        if allowed is not None:
            emissions = emissions.masked_fill(~allowed, FORBIDDEN)
        if emissions.shape[1] == 0:
            return emissions.sum((1, 2))
        last = self.alphas(emissions, mask)[:, -1]
        return torch.logsumexp(last + self.potentials()[2], dim=-1).masked_fill(~mask[:, 0], 0.0)

    def marginals(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """(B, N, K) p(y_i = k | text) by forward-backward (differentiable); rows past a
        sequence's end are a meaningless distribution (mask them)."""
        _, trans, end = self.potentials()
        emissions = emissions.float()
        n = emissions.shape[1]
        if n == 0:
            return emissions
        end_b = end.expand(emissions.shape[0], -1)
        betas = [end_b]
        for i in range(n - 2, -1, -1):       # beta_i = lse_j trans[., j] + e_{i+1}[j] + beta_{i+1}
            nxt = torch.logsumexp(trans + (emissions[:, i + 1] + betas[-1]).unsqueeze(1), dim=2)
            betas.append(torch.where(mask[:, i + 1, None], nxt, end_b))
        joint = self.alphas(emissions, mask) + torch.stack(betas[::-1], 1)      # (B, N, K)
        return joint.softmax(-1)

def repair_bio(labels: Tensor, ignore: int = -100) -> Tensor:
    """Packed (B, N) gold tags with every I-l that cannot continue (first, or after O or another
    attribute's tag) read as B-l, as the chunker reads it (`mjave.data.spans.bio_to_spans`):
    a sequence the CRF forbids would have probability 0. After an unlabelled (`ignore`) position
    an I-l stays, since some tag there lets it continue."""
    prev = torch.nn.functional.pad(labels[:, :-1], (1, 0), value=0)
    inside = (labels > 0) & (labels % 2 == 0)
    continues = (prev == labels) | (prev == labels - 1) | (prev == ignore)
    return torch.where(inside & ~continues, labels - 1, labels)


def tag_marginals(crf: BIOCRF, tag_logits: Tensor, tag_mask: Tensor) -> Tensor:
    """(B, T, K) CRF marginals p(y_i = k | text) at the tagged positions, zeros elsewhere: what
    a per-token softmax gives without a CRF (the KL term of Eq. 12-13 reads them)."""
    emissions, mask, index = pack(tag_logits, tag_mask)
    return unpack(crf.marginals(emissions, mask), index, mask)
