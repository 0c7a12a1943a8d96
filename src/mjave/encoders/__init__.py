"""Text encoders, image encoders and the on-disk feature store (section 2.2 of the paper).

Names are imported lazily, so `from mjave.encoders import FeatureStore` (numpy + safetensors)
does not pay for importing torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "HFTextEncoder": "text", "BiLSTMTextEncoder": "text", "load_tokenizer": "text",
    "default_english_encoder_path": "text",
    "ImageEncoder": "image", "EfficientNetLiteEncoder": "image", "ResNetEncoder": "image",
    "build_image_encoder": "image", "configured_image_encoder": "image", "load_image": "image",
    "ColourHistogramEncoder": "colour",
    "FeatureStore": "store", "StoreMismatchError": "store",
    "EncoderConfig": "features", "FeatureStats": "features", "extract_features": "features",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mjave.encoders' has no attribute {name!r}")
    return getattr(importlib.import_module(f"mjave.encoders.{module}"), name)
