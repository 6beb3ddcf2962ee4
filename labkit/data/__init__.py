"""Datasets, one module each (``pets``, ``cifar10``, ``cityscapes``), plus downloading and caching.

Import the dataset module you need, e.g. ``from labkit.data import pets``.
"""
from labkit.download import ChecksumError, DatasetNotFoundError

__all__ = ["ChecksumError", "DatasetNotFoundError"]
