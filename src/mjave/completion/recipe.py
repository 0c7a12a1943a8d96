"""The catalog-completion recipe, shipped with the package (`recipe.yaml` beside this file).

One file is the model of `mjave experiment completion` (its default `base`) and the one
docs/completion.md tells a catalog team to train for `mjave complete`; configs/runs/completion.yaml
includes it and adds data. Torch-free: reading it needs only mjave.config.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mjave.config import DataConfig, RunConfig, load

RECIPE_PATH = Path(__file__).with_name("recipe.yaml")


def completion_recipe(train: str = "") -> RunConfig:
    """The recipe as a RunConfig, with `train` as its training file (none by default)."""
    cfg = load(RunConfig, RECIPE_PATH)
    return replace(cfg, data=replace(cfg.data or DataConfig(), train=train))


__all__ = ["RECIPE_PATH", "completion_recipe"]
