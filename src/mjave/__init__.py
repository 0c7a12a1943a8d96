"""mjave: multimodal joint attribute prediction and value extraction (M-JAVE, Zhu et al. 2020).

`from mjave import Extractor` loads a trained model folder for prediction; the name is imported
lazily so that `import mjave` (data tools, metrics) does not pay for importing torch.
`mjave.enable_logging()` shows log records and progress bars of long work called from Python.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {"Extractor": "mjave.inference.extractor", "predict_file": "mjave.inference.batch",
         "PredictSummary": "mjave.inference.batch", "enable_logging": "mjave.logs",
         "disable_logging": "mjave.logs"}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mjave' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
