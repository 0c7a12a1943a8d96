"""`train.select_on` (issue #31): a model naming values without a span keeps the epoch where
spans and those values together (pair F1) are best, not where the spans alone peak."""

from __future__ import annotations

import pytest

from mjave.config import ConfigError, RunConfig
from mjave.config.model import ModelConfig
from mjave.config.train import TrainConfig
from mjave.training.trainer import selection_metric


@pytest.mark.parametrize("select_on, implicit, metric", [
    ("auto", False, "value"), ("auto", True, "pair"), ("value", True, "value"),
    ("pair", False, "pair")])
def test_the_metric_the_best_epoch_is_chosen_on(select_on, implicit, metric):
    config = RunConfig(model=ModelConfig(implicit_values=implicit),
                       train=TrainConfig(select_on=select_on))
    assert selection_metric(config) == metric


def test_an_unknown_metric_is_refused():
    with pytest.raises(ConfigError, match="select_on"):
        TrainConfig(select_on="attribute")
