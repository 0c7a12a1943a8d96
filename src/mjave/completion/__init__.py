"""Catalog completion: suggest the attribute values a catalog table lacks (`mjave complete`).

See docs/completion.md. `complete` streams products through a trained model and writes the
suggestions and conflicts; `select_threshold` picks the score threshold on held-out values.
"""

from mjave.completion.calibrate import Calibration, select_threshold
from mjave.completion.suggest import CompletionSummary, complete

__all__ = ["Calibration", "CompletionSummary", "complete", "select_threshold"]
