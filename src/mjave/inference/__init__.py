"""Inference: the one decoder from model outputs to scored character spans, the `Extractor`
Python API, long-text windowing and streaming batch prediction over files.

Names are imported lazily (`from mjave.inference import Extractor`), so importing the package
costs nothing until one is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Extractor": "extractor",
    "predict_file": "batch", "PredictSummary": "batch",
    "Window": "windows", "plan_windows": "windows", "window_encoding": "windows",
    "merge_spans": "windows", "merge_attribute_probs": "windows",
    "decode_example": "decode", "Decoded": "decode",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mjave.inference' has no attribute {name!r}")
    return getattr(importlib.import_module(f"mjave.inference.{module}"), name)
