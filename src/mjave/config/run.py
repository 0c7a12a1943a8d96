"""One file describes a run: data, encoders, model and training, composed in `RunConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mjave.config.core import ConfigError, load, read_config_file

from mjave.config.data import DataConfig
from mjave.config.encoder import EncoderConfig
from mjave.config.model import ModelConfig
from mjave.config.train import TrainConfig


@dataclass
class RunConfig:
    """Everything that defines a run; written into every model folder as config.json."""

    output_dir: str = "runs/model"
    features_dir: str | None = None   # frozen-feature store; default <output_dir>/features
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


EXPERIMENT_KEYS = frozenset({"base", "models", "eval_data", "repeats", "reference"})


def load_run_config(path: str | Path) -> RunConfig:
    """`RunConfig` from a sparse file; an experiment config given instead (it has a `base`) is
    refused with a message that says what it is and where its run config is."""
    try:
        return load(RunConfig, path)
    except ConfigError as e:
        try:
            data = read_config_file(path)   # the limits of `load`: no /dev/zero read twice
        except ConfigError:
            raise e from None
        if isinstance(data, dict) and EXPERIMENT_KEYS & set(data):
            base = data.get("base")
            where = (f"its models start from {base}" if isinstance(base, str)
                     else "its models start from its `base` section")
            raise ConfigError(f"{e}: {path} is an experiment config (`mjave experiment "
                              f"<name> --config {path}`), not a run config; {where}, which "
                              "`mjave train --config` runs (recipes: configs/runs/)") from None
        raise
