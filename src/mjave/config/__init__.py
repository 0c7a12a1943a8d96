"""Every config of mjave (data, encoder, model, train, run, complete) and the one engine that
loads, overrides and saves them. Torch-free: reading or checking a config never imports torch."""

from mjave.config.core import (ConfigError, apply_overrides, from_dict, load, parse_overrides,
                               path_field, save, set_values, to_dict)
from mjave.config.complete import CompleteConfig
from mjave.config.data import DataConfig
from mjave.config.encoder import IMAGE_EXTENSIONS, EncoderConfig
from mjave.config.model import ABLATIONS, ModelConfig
from mjave.config.run import RunConfig, load_run_config
from mjave.config.train import TrainConfig

__all__ = ["ABLATIONS", "CompleteConfig", "ConfigError", "DataConfig", "EncoderConfig",
           "IMAGE_EXTENSIONS", "ModelConfig", "RunConfig", "TrainConfig", "apply_overrides",
           "from_dict", "load", "load_run_config", "parse_overrides", "path_field", "save",
           "set_values", "to_dict"]
