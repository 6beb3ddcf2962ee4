"""Hostile: replaces labkit's MAC and size counters to look tiny in the Task 2 ranking."""
import torch

import labkit.profile

labkit.profile.count_macs = lambda *args, **kwargs: 1
labkit.profile.model_size_bytes = lambda model: 1


def load_model(path):
    return torch.nn.Conv2d(3, 8, 1)
