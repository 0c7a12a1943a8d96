"""Which encoders turn text and images into features (section 2.2): `EncoderConfig`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

TextKind = Literal["hf", "bilstm"]
ImageEncoderName = Literal["efficientnet-lite0", "efficientnet-lite2", "resnet101", "resnet50",
                           "none"]
MissingImage = Literal["error", "zeros"]

NAMED_TEXT_ENCODERS = ("minilm", "mpnet")
"""Values of `text_encoder` that name a pip-installed model rather than a folder
(`mjave.encoders.text.resolve_text_encoder_path`; docs/encoders.md)."""

MAX_COLOUR_BINS = 8
"""The most bins per channel of the colour histogram (8^3 = 512 features per region)."""

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
"""Tried, in order, as `<image_root>/<product_id><ext>` for records that name no image."""


@dataclass
class EncoderConfig:
    """Which encoders turn text and images into features (section 2.2) and how.

    text_encoder: "minilm" (the pip MiniLM-L6, 384-d), "mpnet" (the pip all-mpnet-base-v2,
        768-d, assembled once into the cache) or a local Hugging Face model folder.
    text_kind: "hf" (pretrained, frozen features are cached) or "bilstm" (trained in the model).
    fine_tune: the older spelling of `train_layers: all`, read only when train_layers is not
        given (configs and model folders written before train_layers keep their meaning).
    train_layers: how many of the HF encoder's top transformer layers train with the model:
        0 = frozen (its final states are cached), "all" = full fine-tuning (embeddings too,
        nothing cached), K = the top K layers train while the embeddings and the L - K layers
        below stay frozen; their output is computed once per text into the feature store and
        each step runs only the top K layers and the head (docs/encoders.md). K = L trains
        every layer over cached embeddings. BERT-family and MPNet encoders only.
    char_level: one token per character (the JAVE scheme for Chinese) from the folder's vocab.txt.
    image_encoder: "efficientnet-lite0" (pip weights, 1280-d), "efficientnet-lite2",
        "resnet101" / "resnet50" (the paper's 2048-d features; weights must be given), "none".
    image_weights: local .pth / .safetensors file; None = the packaged weights where they exist.
    image_size: square input side; 224 gives the paper's 7 x 7 = 49 regions.
    image_colour_bins: 0 = the CNN features alone (the paper's); N in 2..8 appends to every
        region the joint RGB histogram of its pixels, N bins per channel, so the image features
        have D + N^3 dimensions (1280 + 64 at N = 4; docs/encoders.md, "colour histogram").
        ImageNet features name a garment's colour only ~75% of the time (issue #31).
    max_length: tokens per text including the two special tokens ([CLS] and [SEP] for BERT,
        <s> and </s> for MPNet; the paper's 46 + 2).
    missing_image: "error" stops on a missing/unreadable image; "zeros" stores zero features
        (counted, and retried on the next run).
    """

    text_encoder: str = "minilm"
    text_kind: TextKind = "hf"
    fine_tune: bool = False
    train_layers: int | str | None = None
    char_level: bool = False
    image_encoder: ImageEncoderName = "efficientnet-lite0"
    image_weights: str | None = None
    image_size: int = 224
    image_colour_bins: int = 0
    max_length: int = 48
    missing_image: MissingImage = "error"

    def __post_init__(self) -> None:
        for name, tp in (("text_kind", TextKind), ("image_encoder", ImageEncoderName),
                         ("missing_image", MissingImage)):
            if getattr(self, name) not in get_args(tp):
                raise ValueError(f"encoder.{name} must be one of {list(get_args(tp))}, "
                                 f"not {getattr(self, name)!r}")
        if self.image_size < 32:
            raise ValueError(f"encoder.image_size must be at least 32, not {self.image_size}")
        if isinstance(self.image_colour_bins, bool) or self.image_colour_bins not in (
                0, *range(2, MAX_COLOUR_BINS + 1)):
            raise ValueError(f"encoder.image_colour_bins must be 0 (off) or 2 to "
                             f"{MAX_COLOUR_BINS} bins per channel, not {self.image_colour_bins!r}")
        if self.max_length < 3:
            raise ValueError(f"encoder.max_length must be at least 3, not {self.max_length}")
        self.train_layers = _checked_train_layers(self.train_layers)
        if self.text_kind != "hf" and self.train_layers not in (None, 0):
            raise ValueError(f"encoder.train_layers={self.train_layers} applies to a Hugging Face "
                             f"encoder (text_kind: hf), not text_kind: {self.text_kind}")

    @property
    def layers_trained(self) -> int | str:
        """`train_layers` made definite: as given, else "all" under the older `fine_tune: true`
        and 0 otherwise."""
        if self.train_layers is not None:
            return self.train_layers
        return "all" if self.fine_tune else 0

    @property
    def trains_text_encoder(self) -> bool:
        """The HF encoder is part of the trained model (some or all of its layers train)."""
        return self.text_kind == "hf" and self.layers_trained != 0

    @property
    def caches_text(self) -> bool:
        """Only a frozen pretrained encoder gives features that can be computed once."""
        return self.text_kind == "hf" and self.layers_trained == 0

    @property
    def caches_lower_layers(self) -> bool:
        """Top-layer fine-tuning: the output of the frozen layers below is cached instead."""
        return self.text_kind == "hf" and self.layers_trained not in (0, "all")

    @property
    def uses_images(self) -> bool:
        return self.image_encoder != "none"


def _checked_train_layers(value: object) -> int | str | None:
    """None, "all" or a count >= 0; a digit string (what `--set` gives where the current value
    is "all") becomes the count."""
    if value is None or value == "all":
        return value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"encoder.train_layers must be a number of top layers (0 = frozen) or "
                         f"'all', not {value!r}")
    return value
