"""Datasets that ship inside mjave (license and attribution beside each): `mjave data list`.

    >>> from mjave.datasets import dataset_path
    >>> dataset_path("oamine", "valid").name
    'valid.jsonl'
"""

from mjave.datasets.shipped import DATASETS, ROOT, ShippedDataset, dataset, dataset_path

__all__ = ["DATASETS", "ROOT", "ShippedDataset", "dataset", "dataset_path"]
