"""The three DataLoaders of a recipe (train, valid, test), set up for the device they feed.

- On CUDA the batches are pinned (``pin_memory``): :func:`labkit.train.fit` copies them with
  ``non_blocking=True``, so the copy of the next batch overlaps the GPU's work on this one.
- With workers, the valid and test loaders keep theirs between epochs (``persistent_workers``):
  they do not augment, so there is nothing to reseed, and the validation pass of every epoch
  saves the workers' start.
- The train loader starts its workers afresh every epoch, on purpose. A new iterator draws the
  workers' seeds from the main process's RNG, so the augmentations follow ``fit(seed=...)``: the
  same for every model of a comparison (``labkit.compare``, notebook 02) and the same after a
  resume (the RNG state is in the checkpoint). Persistent training workers would continue their
  own random streams instead. Starting two forked workers costs well under a second per epoch.

Example:
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> data = TensorDataset(torch.zeros(8, 3, 4, 4), torch.zeros(8, 1, 4, 4))
    >>> train, valid, test = split_loaders(data, data, data, batch_size=4, workers=2, device="cuda")
    >>> train.pin_memory, train.persistent_workers, valid.persistent_workers, len(train)
    (True, False, True, 2)
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset


class SplitLoaders(NamedTuple):
    """Fit on ``train`` (shuffled, last partial batch dropped), decide on ``valid``, report ``test`` once."""
    train: DataLoader
    valid: DataLoader
    test: DataLoader


def loader_options(device, workers: int, *, persistent: bool) -> dict:
    """``DataLoader`` keyword arguments for a loader that feeds ``device`` with ``workers`` workers.

    Example:
        >>> loader_options("cpu", 0, persistent=True)
        {'num_workers': 0, 'pin_memory': False}
        >>> loader_options("cuda", 2, persistent=True)
        {'num_workers': 2, 'pin_memory': True, 'persistent_workers': True}
    """
    options = {"num_workers": workers, "pin_memory": torch.device(device).type == "cuda"}
    if workers > 0:
        options["persistent_workers"] = persistent
    return options


def split_loaders(train_set: Dataset, valid_set: Dataset, test_set: Dataset, *, batch_size: int,
                  test_batch_size: int | None = None, workers: int = 0, device="cpu",
                  worker_init_fn: Callable | None = None) -> SplitLoaders:
    """``(train, valid, test)`` loaders of ``batch_size``; see the module's docstring for the options.

    ``test_batch_size``: the test loader's, when it differs (the course grades Cityscapes with batch 1).
    ``worker_init_fn``: e.g. :func:`labkit.data.pets.seed_augmentation_worker`, which gives each
    training worker its own augmentation stream.
    """
    common = {"worker_init_fn": worker_init_fn}
    train = DataLoader(train_set, shuffle=True, drop_last=True, batch_size=batch_size, **common,
                       **loader_options(device, workers, persistent=False))
    valid, test = (DataLoader(data, batch_size=size, **common, **loader_options(device, workers, persistent=True))
                   for data, size in ((valid_set, batch_size), (test_set, test_batch_size or batch_size)))
    return SplitLoaders(train, valid, test)
