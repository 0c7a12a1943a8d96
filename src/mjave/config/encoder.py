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

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
"""Tried, in order, as `<image_root>/<product_id><ext>` for records that name no image."""


@dataclass
class EncoderConfig:
    """Which encoders turn text and images into features (section 2.2) and how.

    text_encoder: "minilm" (the pip MiniLM-L6, 384-d), "mpnet" (the pip all-mpnet-base-v2,
        768-d, assembled once into the cache) or a local Hugging Face model folder.
    text_kind: "hf" (pretrained, frozen features are cached) or "bilstm" (trained in the model).
    fine_tune: train the HF encoder with the model (then its features are not cached).
    char_level: one token per character (the JAVE scheme for Chinese) from the folder's vocab.txt.
    image_encoder: "efficientnet-lite0" (pip weights, 1280-d), "efficientnet-lite2",
        "resnet101" / "resnet50" (the paper's 2048-d features; weights must be given), "none".
    image_weights: local .pth / .safetensors file; None = the packaged weights where they exist.
    image_size: square input side; 224 gives the paper's 7 x 7 = 49 regions.
    max_length: tokens per text including the two special tokens ([CLS] and [SEP] for BERT,
        <s> and </s> for MPNet; the paper's 46 + 2).
    missing_image: "error" stops on a missing/unreadable image; "zeros" stores zero features
        (counted, and retried on the next run).
    """

    text_encoder: str = "minilm"
    text_kind: TextKind = "hf"
    fine_tune: bool = False
    char_level: bool = False
    image_encoder: ImageEncoderName = "efficientnet-lite0"
    image_weights: str | None = None
    image_size: int = 224
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
        if self.max_length < 3:
            raise ValueError(f"encoder.max_length must be at least 3, not {self.max_length}")

    @property
    def caches_text(self) -> bool:
        """Only a frozen pretrained encoder gives features that can be computed once."""
        return self.text_kind == "hf" and not self.fine_tune

    @property
    def uses_images(self) -> bool:
        return self.image_encoder != "none"
