"""Where the records are: `DataConfig`."""

from __future__ import annotations

from dataclasses import dataclass

from mjave.config.core import path_field


@dataclass
class DataConfig:
    """Where the records are. Paths are files in any format mjave reads (format by extension);
    in a config file a relative path is relative to that file."""

    train: str = path_field("")
    valid: str | None = path_field()
    test: str | None = path_field()
    format: str | None = None
    image_root: str | None = path_field()  # image paths in records are relative to this folder
    lenient: bool = False          # skip bad rows (counted and reported) instead of stopping
