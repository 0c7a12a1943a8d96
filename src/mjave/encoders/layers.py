"""A BERT-family or MPNet encoder run in two parts, for top-layer fine-tuning (`train_layers`).

With `encoder.train_layers: K` the embeddings and the bottom L - K transformer layers stay
frozen: `lower` runs them once per text (into the feature store) and `upper` runs the top K
layers on that output at every training step. Both parts build the attention mask with
`create_bidirectional_mask`, the function the models' own forward uses, so `upper(lower(x))`
is the ordinary forward exactly (max difference 0.0 in float32, tests/test_train_layers.py).

Only model types whose forward is "embeddings, then `encoder.layer[i](hidden, mask)` in turn"
are split (MPNet also passes its relative position bias, computed from the hidden states alone);
anything else gets an error instead of silently different states.
"""

from __future__ import annotations

from torch import Tensor, nn

SPLITTABLE = ("bert", "roberta", "xlm-roberta", "mpnet")
"""`config.model_type`s that `lower`/`upper` can split (MiniLM is a "bert")."""


def check_splittable(model_type: str, where: str) -> None:
    """ValueError naming the encoder when its layers cannot be split."""
    if model_type not in SPLITTABLE:
        raise ValueError(f"encoder.train_layers below 'all' needs a BERT-family or MPNet encoder "
                         f"(model_type {', '.join(SPLITTABLE)}); {where} is a {model_type!r} "
                         "model. Use train_layers: all to fine-tune it whole, or 0 to keep it "
                         "frozen")


def split_index(train_layers: int, num_layers: int, where: str) -> int:
    """How many layers stay below the `train_layers` trained ones (0: the embeddings alone)."""
    if not 1 <= train_layers <= num_layers:
        raise ValueError(f"encoder.train_layers={train_layers}, but {where} has {num_layers} "
                         f"layers (use 1 to {num_layers}, 0 for frozen, or all)")
    return num_layers - train_layers


def num_layers(model: nn.Module) -> int:
    return len(model.encoder.layer)


def freeze_below(model: nn.Module, split: int) -> None:
    """Only layers `split:` keep gradients: the embeddings, the layers below, MPNet's shared
    relative position bias (the cached states depend on it) and the unused pooler are frozen."""
    model.requires_grad_(False)
    model.encoder.layer[split:].requires_grad_(True)


def lower_modules(model: nn.Module, split: int) -> list[nn.Module]:
    """The modules `lower` runs (their dropout must stay off: the cache holds eval outputs)."""
    return [model.embeddings, *model.encoder.layer[:split]]


def run_layers(model: nn.Module, hidden: Tensor, attention_mask: Tensor, start: int,
               stop: int | None = None) -> Tensor:
    """Layers `start:stop` of `model.encoder` on `hidden` (B, T, d); `attention_mask` (B, T)
    is 1 on real tokens."""
    from transformers.masking_utils import create_bidirectional_mask

    mask = create_bidirectional_mask(config=model.config, inputs_embeds=hidden,
                                     attention_mask=attention_mask)
    extra = {}
    if model.config.model_type == "mpnet":
        extra["position_bias"] = model.encoder.compute_position_bias(hidden)
    for layer in model.encoder.layer[start:stop]:
        out = layer(hidden, mask, **extra)
        hidden = out[0] if isinstance(out, tuple) else out   # MPNet layers return a tuple
    return hidden


def lower(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, split: int) -> Tensor:
    """The states after the embeddings and layers `:split` (what the feature store caches)."""
    return run_layers(model, model.embeddings(input_ids=input_ids), attention_mask, 0, split)


def upper(model: nn.Module, hidden: Tensor, attention_mask: Tensor, split: int) -> Tensor:
    """The last hidden states from the output of layer `split - 1` (of the embeddings at 0)."""
    return run_layers(model, hidden, attention_mask, split)


__all__ = ["SPLITTABLE", "check_splittable", "freeze_below", "lower", "lower_modules",
           "num_layers", "run_layers", "split_index", "upper"]
