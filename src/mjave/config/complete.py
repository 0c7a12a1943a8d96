"""How `mjave complete` turns a model's predictions into catalog rows: `CompleteConfig`.

The inputs (model, products, catalog table, output, a calibration file) are the command's
arguments; this is how it treats them, so one file (`mjave complete --config FILE`) fixes a
team's settings and `--set key=value` varies one, as `mjave train` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mjave.config.core import ConfigError, check_range, path_field
from mjave.config.train import SEED_MAX

DEFAULT_CONFIDENCE = 0.9
"""`min_precision` is judged on a one-sided lower bound of the held-out precision at this
confidence (docs/completion.md, section 3: measured against the plain estimate, 0.5)."""

DEFAULT_FOLDS = 5
"""Folds of the product-grouped cross-validation of the threshold."""

EVIDENCE_WIDTH = 60
"""Characters of evidence kept either side of a value in a long text."""

DEFAULT_KNOWN_SHARE = 0.1
"""A suggestion fills a known gap when at least this share of its category's products carry
the attribute in the table (docs/completion.md, "Two kinds of suggestion"). At 1 in 10 the
held-out values (a sample of the table's pairs) hold the attribute often enough to judge it; an
attribute rarer than that is one the team does not record for the category (or a stray row),
and a suggestion of it is a new attribute no held-out value speaks for."""


@dataclass
class CompleteConfig:
    """Settings of one `mjave complete` run (docs/completion.md, section 3).

    min_precision: choose the threshold that reaches this precision on held-out known values;
        when it cannot be backed the run refuses (no rows) unless `force`.
    confidence: of the lower precision bound `min_precision` is judged on (0.5: the estimate).
    cv_folds, cv_seed: the product-grouped cross-validation of the threshold (< 2: not run).
    threshold: fixed threshold when `min_precision` is None (None: 0, every decoded value).
    conflict_threshold: None = the suggestion threshold, but at least 0.5.
    conflicts: the conflicts file (None: conflicts.csv beside the suggestions).
    work_dir: where the temporary database goes (None: the suggestions' folder).
    known_attribute_share: the cut between the two kinds of suggestion: `fills_known_gap` when
        at least this share of the product's category carry the attribute in the table (and
        one does), else `new_attribute` (mjave.completion.kinds).
    include_new_attributes: also write the `new_attribute` suggestions into the suggestions
        file (marked in its `kind` column, no precision claimed); by default they go only to
        the review file beside it.
    reviews: a review database (`mjave review --db`): its accepted and rejected suggestions are
        judged pairs too, so each kind gets its own threshold and `new_attribute` suggestions
        join the promise once enough are reviewed (mjave.completion.reviewed).
    exclude_attributes: attributes whose suggestions are dropped from every output (and from
        the calibration), e.g. one the per-attribute precision shows failing.
    """

    min_precision: float | None = None
    confidence: float = DEFAULT_CONFIDENCE
    force: bool = False
    cv_folds: int = DEFAULT_FOLDS
    cv_seed: int = 0
    threshold: float | None = None
    conflict_threshold: float | None = None
    conflicts: str | None = None
    batch_size: int = 32
    device: str = "auto"              # auto | cpu | cuda | cuda:N
    image_root: str | None = path_field()
    input_format: str | None = None   # of the products; None: by extension
    evidence_width: int = EVIDENCE_WIDTH
    work_dir: str | None = None
    known_attribute_share: float = DEFAULT_KNOWN_SHARE
    include_new_attributes: bool = False
    reviews: str | None = path_field()
    exclude_attributes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.min_precision is not None and self.threshold is not None:
            raise ConfigError("complete: give either min_precision or threshold, not both")
        check_range("complete", self, {
            "confidence": (0.5, 1, False), "cv_folds": (0, None, True),
            "cv_seed": (0, SEED_MAX, True), "batch_size": (1, None, True),
            "evidence_width": (0, None, True), "known_attribute_share": (0, 1, True)})
        optional = {k: (0, 1, True) for k in ("min_precision", "threshold", "conflict_threshold")
                    if getattr(self, k) is not None}
        check_range("complete", self, optional)
        blank = [a for a in self.exclude_attributes if not str(a).strip()]
        if blank:
            raise ConfigError("complete: exclude_attributes: an attribute name is empty")


__all__ = ["CompleteConfig", "DEFAULT_CONFIDENCE", "DEFAULT_FOLDS", "DEFAULT_KNOWN_SHARE",
           "EVIDENCE_WIDTH"]
