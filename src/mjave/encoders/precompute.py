"""Fill a run's feature store before training (`mjave features`): every data file of the run
config encoded once, so trainings and experiments that share the store skip the encoders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from mjave.config import RunConfig
from mjave.data.errors import DataError, RowIssues
from mjave.data.formats import read_records
from mjave.encoders.features import FeatureStats, extract_features


@dataclass
class FileFeatures:
    """What encoding one data file did: the rows it skipped and the features it added."""

    path: str
    issues: RowIssues
    stats: FeatureStats


def feature_store_dir(cfg: RunConfig) -> str:
    """The run's feature store: `features_dir`, or `<output_dir>/features`."""
    return cfg.features_dir or str(Path(cfg.output_dir) / "features")


def precompute_features(cfg: RunConfig, batch_size: int = 32,
                        progress: bool | Callable[..., Any] | None = None
                        ) -> Iterator[FileFeatures]:
    """Encode the train, valid and test files of `cfg` into its feature store, one file at a
    time (yielded as done); a DataError when the config names no data file."""
    paths = [p for p in (cfg.data.train, cfg.data.valid, cfg.data.test) if p]
    if not paths:
        raise DataError("no data files in the config (data.train / data.valid / data.test)")
    store = feature_store_dir(cfg)
    for path in paths:
        records, issues = read_records(path, format=cfg.data.format, strict=not cfg.data.lenient,
                                       labelled=True)
        stats = extract_features(records, store, cfg.encoder, image_root=cfg.data.image_root,
                                 batch_size=batch_size, progress=progress,
                                 image=cfg.encoder.image_encoder != "none")
        yield FileFeatures(path, issues, stats)


__all__ = ["FileFeatures", "feature_store_dir", "precompute_features"]
