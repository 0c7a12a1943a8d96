"""The model's configuration: sizes from the paper's Table 2 and one switch per ablation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mjave.config.core import check_range


@dataclass
class ModelConfig:
    """M-JAVE hyper-parameters and ablation switches (paper Tables 2, 5 and 6).

    Every switch removes exactly one term of the equations, so the ablation rows are configs:

    - `use_image=False`                  -> JAVE (text only; the image is never read)
    - `global_cross_attention=False`     -> w/o global-gated CrossMAtt (right part of Eq. 5)
    - `regional_cross_attention=False`   -> w/o regional-gated CrossMAtt (last term of Eq. 9)
    - `global_gate=False`                -> w/o global visual gate (g^G = 1 in Eq. 5)
    - `regional_gate=False`              -> w/o regional visual gate (g^R = 1 in Eq. 9)
    - `attr_conditioning=False`          -> w/o AttrPred (drop W8 y^a in Eq. 9)
    - `kl_lambda=0`                      -> w/o KL loss (lambda in Eq. 14)
    - `multitask=False`                  -> w/o MTL: the two tasks get separate attention
      layers, the tagger sees no attribute prediction (W8 is dropped and the regional gate gets
      zeros) and there is no KL term, so neither loss reaches the other task's parameters.
    - `gold_attr_conditioning=True`      -> the Table 5 upper bound of the value task: the tagger
      is conditioned on the gold attributes instead of the predicted ones.

    `attention_softmax=False` reproduces the official TensorFlow code, which uses the raw scaled
    scores of Eq. 1 and 3 as weights (it leaves out the softmax of Eq. 2 and 4).
    """

    architecture: str = "mjave"   # a name in mjave.model.registry (baselines register there)
    text_dim: int = 768
    image_dim: int = 2048
    num_attributes: int = 1
    attention_size: int = 200
    dropout: float = 0.1
    attention_softmax: bool = True
    use_image: bool = True
    global_cross_attention: bool = True
    regional_cross_attention: bool = True
    global_gate: bool = True
    regional_gate: bool = True
    attr_conditioning: bool = True
    multitask: bool = True
    gold_attr_conditioning: bool = False
    kl_lambda: float = 0.5
    # Eq. 13 as printed ("paper") sums y^a_l log(y^a_l / y^{v->a}_l) over attributes. Neither
    # vector is a distribution (each entry is its own probability), so that sum is no divergence:
    # it goes below 0 and rewards y^{v->a} above y^a, i.e. B/I tags of every predicted
    # attribute somewhere in the text. "bernoulli" sums the KL of the L Bernoulli pairs
    # (adds (1-p) log((1-p)/(1-q))): >= 0, 0 only at agreement, so spurious tags cost.
    kl_form: Literal["paper", "bernoulli"] = "paper"
    # Weight of the attribute loss in Eq. 14 (the paper: 1). Eq. 8 sums the BCE over the L
    # attributes, so with many attributes it dwarfs the per-token tag loss and, under a
    # fine-tuned encoder, shapes the shared token states for classification, not tagging.
    attr_loss_weight: float = 1.0
    # How Eq. 7 pools the token states: "sum" (the paper's) or "mean" over the real tokens. A sum
    # hands every token the attribute loss's whole gradient while the tag loss (a mean over the
    # batch's tagged words) gives it a share, so on long texts (WDC-PAVE: median 77 words) the
    # attribute task owns the shared encoder; the mean makes the balance length-free.
    attr_pooling: Literal["sum", "mean"] = "sum"
    restrict_to_category: bool = False  # decode only attributes seen with the text's category
    # How tags are read off the tag probabilities: "argmax" per word (the paper's) or "viterbi",
    # the most probable valid BIO sequence (no I-X after O or another attribute's tag). "crf"
    # also changes training: the tagger becomes a linear-chain CRF over BIO tags with learned
    # transition scores (`mjave.model.crf`), trained by its sequence likelihood and decoded by
    # Viterbi under those transitions; span scores then read the CRF's marginals (M-JAVE, JAVE
    # and token-classification only).
    decoding: Literal["argmax", "viterbi", "crf"] = "argmax"
    # Decoded spans whose score (`mjave.inference.decode.span_scores`) is below this are dropped
    # (0 keeps every span, the paper's behaviour). Under "crf" the score's probabilities are
    # the CRF's marginals, so the cut means the same.
    min_span_score: float = 0.0
    # At most this many values (spans) per attribute in a text, the best-scoring ones; 0: no
    # limit (the paper's). OA-Mine and WDC-PAVE annotate one value per attribute and product
    # (`mjave data stats` shows a dataset's largest count).
    max_values_per_attribute: int = 0
    # Beyond the paper (issue #31): "bilinear" adds to each token's h' (Eq. 5) the product
    # (W_f^t [h_i; c_i]) * (W_f^v vG), c_i the token's text self-attention state: a low-rank
    # bilinear term in the token (with its context) and the pooled image. The
    # paper's only token-image products are the gate of Eq. 6 and the attention weights over
    # regions, and an attribute the photo decides by *matching* (is this colour word the colour
    # in the photo?) needs one: Eq. 9 reads h' linearly. "none" is the paper's model.
    token_image_fusion: Literal["none", "bilinear"] = "none"
    # Beyond the paper (issue #35): value knowledge. The values each attribute takes in the
    # training table (`mjave.data.lexicon`, saved in the model folder), matched in the text, enter
    # as two flags per token and attribute (begins / lies inside a known value), projected into
    # the token states h before Eq. 1 and into the tag logits of Eq. 9. Training matches each
    # record against the table without its own values (leave-one-out, as an unseen value is at
    # test time) and hides a further `value_knowledge_drop` of the matched values at random.
    value_knowledge: bool = False
    value_knowledge_drop: float = 0.0
    # Beyond the paper (issue #31): image-only values. For closed-vocabulary attributes
    # (`mjave.data.closed_values`: a few values, each seen often; or the declared
    # `implicit_attributes`) a head scores "none" and every value of each from the photo,
    # y^c = softmax_c(W_c LN(vG)) (from the pooled text for a text-only model: the reference),
    # trained on the product's known value (its gold span's, or a product-level one the text
    # does not state, `Record.implicit_values`). A value is predicted without a span when the
    # text has none of its attribute, it beats "none" and scores at least `implicit_threshold`.
    implicit_values: bool = False
    implicit_attributes: list[str] = field(default_factory=list)
    implicit_max_values: int = 20
    implicit_loss_weight: float = 1.0
    implicit_threshold: float = 0.2
    # When a text has spans of a closed attribute with different values (an outfit sentence's
    # "red shirt with black shoes"), keep those whose value the implicit head finds likeliest
    # in the photo (`mjave.inference.decode.SpanBatch.agree_with_implicit`).
    implicit_agreement: bool = False
    # What the implicit head reads of the photo: "global" (vG, the regions' mean) or
    # "global+max" ([vG; max_k v_k]): with the colour histogram, a region's bins peak at the
    # garment's colour wherever the background fills the rest of the image.
    implicit_image_pool: Literal["global", "global+max"] = "global"
    # How the implicit head normalises what it reads of the photo: "per_source" (a LayerNorm
    # per source, CNN and colour histogram, each scaled to the largest source's norm,
    # `mjave.model.mjave.SourceNorm`) or "joint" (one LayerNorm over [CNN; histogram], as
    # first built): under one LayerNorm the 1280 CNN features fit the 420 training photos
    # before the 64 histogram bins are heard, and memorise them (docs/results.md: valid Color
    # +8.6 / +8.1 F1 on two generated catalogs). The same head without the colour histogram.
    implicit_image_norm: Literal["joint", "per_source"] = "per_source"
    # Set from the encoders like image_dim: the histogram's share of image_dim (the last
    # `image_colour_dim` features; 0 without `encoder.image_colour_bins`).
    image_colour_dim: int = 0
    # Set from the schema (`AttributeSchema.closed_values`): columns per closed attribute.
    implicit_sizes: list[int] = field(default_factory=list)

    @property
    def num_implicit_values(self) -> int:
        return sum(self.implicit_sizes)

    def __post_init__(self) -> None:
        check_range("model", self, {
            "dropout": (0, 1, False), "attention_size": (1, None, True),
            "num_attributes": (1, None, True), "text_dim": (1, None, True),
            "image_dim": (1, None, True), "kl_lambda": (0, None, True),
            "image_colour_dim": (0, None, True),
            "attr_loss_weight": (0, None, True), "min_span_score": (0, None, True),
            "value_knowledge_drop": (0, 1, False), "implicit_max_values": (2, None, True),
            "implicit_loss_weight": (0, None, True), "implicit_threshold": (0, 1, True)})
        if self.max_values_per_attribute < 0:
            raise ValueError("max_values_per_attribute must be 0 (no limit) or more, got "
                             f"{self.max_values_per_attribute}")

    @property
    def num_tags(self) -> int:
        return 1 + 2 * self.num_attributes

    @property
    def crf(self) -> bool:
        """Whether the tagger is a CRF (`decoding="crf"`): it has transition weights."""
        return self.decoding == "crf"

    @property
    def kl_enabled(self) -> bool:
        return self.multitask and self.kl_lambda > 0

    @property
    def global_image_enabled(self) -> bool:
        return self.use_image and self.global_cross_attention

    @property
    def regional_image_enabled(self) -> bool:
        return self.use_image and self.regional_cross_attention


ABLATIONS: dict[str, dict[str, object]] = {
    "M-JAVE": {},
    "JAVE": {"use_image": False},
    "w/o global-gated CrossMAtt": {"global_cross_attention": False},
    "w/o regional-gated CrossMAtt": {"regional_cross_attention": False},
    "w/o global visual gate": {"global_gate": False},
    "w/o regional visual gate": {"regional_gate": False},
    "JAVE w/o MTL": {"use_image": False, "multitask": False},
    "JAVE w/o AttrPred": {"use_image": False, "attr_conditioning": False},
    "JAVE w/o KL": {"use_image": False, "kl_lambda": 0.0},
    "JAVE upper bound (value task)": {"use_image": False, "gold_attr_conditioning": True},
}
"""Named configs for every ablation row of the paper's Tables 5 and 6 (overrides of ModelConfig)."""
