"""The datasets shipped inside the package: what they are, where they lie, under which license.

Only data whose license allows redistribution ships (OA-Mine's English subset, Apache-2.0); the
files install with the package (pyproject's package-data), and the recipes in `configs/runs/`
point at them by a path relative to the recipe, so a fresh clone trains without `../shared`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
"""The folder of the shipped datasets (`src/mjave/datasets` in a clone, site-packages installed)."""


@dataclass(frozen=True)
class ShippedDataset:
    """One shipped dataset: its splits, license files and attribution, all inside `folder`."""

    name: str
    description: str
    license: str
    attribution: str
    splits: tuple[str, ...]
    license_files: tuple[str, ...]

    @property
    def folder(self) -> Path:
        return ROOT / self.name

    def split(self, name: str) -> Path:
        """The path of split `name` (`train`, `valid`); a KeyError names the splits there are."""
        if name not in self.splits:
            raise KeyError(f"{self.name} has no split {name!r}; it has {', '.join(self.splits)}")
        return self.folder / f"{name}.jsonl"

    def paths(self) -> dict[str, Path]:
        """Split name -> file."""
        return {s: self.split(s) for s in self.splits}


DATASETS: dict[str, ShippedDataset] = {
    "oamine": ShippedDataset(
        name="oamine",
        description="OA-Mine English product titles: 10 categories, 115 category-attribute "
                    "pairs; 1,236 train / 216 valid texts (test held back)",
        license="Apache-2.0",
        attribution="OA-Mine (Zhang et al., WWW 2022, amazon-science/oa-mine); subset and splits "
                    "of ExtractGPT (Brinkmann et al., wbsg-uni-mannheim/ExtractGPT)",
        splits=("train", "valid"),
        license_files=("LICENSE.OAMine-data.md", "LICENSE.ExtractGPT", "NOTICE.md"),
    ),
}


def dataset(name: str) -> ShippedDataset:
    """The shipped dataset `name`; a KeyError lists the shipped ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"no shipped dataset {name!r}; shipped: {', '.join(DATASETS)}") from None


def dataset_path(name: str, split: str = "train") -> Path:
    """The file of a shipped split, e.g. `dataset_path("oamine", "valid")`, for `data.train=`."""
    return dataset(name).split(split)


__all__ = ["DATASETS", "ROOT", "ShippedDataset", "dataset", "dataset_path"]
