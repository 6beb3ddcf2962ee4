"""Hostile: replaces labkit's MAC and size counters to look tiny in the Task 2 ranking.

``import labkit`` is refused in the sandbox (the course's rule: torch, torchvision and numpy only), so
it digs the already-loaded counters out of the garbage collector instead; the fingerprint catches it.
"""
import gc
import types

import torch

profile = next(obj for obj in gc.get_objects()
               if isinstance(obj, types.ModuleType) and obj.__name__ == "labkit.profile")
profile.count_macs = lambda *args, **kwargs: 1
profile.model_size_bytes = lambda model: 1


def load_model(path):
    return torch.nn.Conv2d(3, 8, 1)
