"""Hostile: allocates far past the memory cap (64 GiB)."""


def load_model(path):
    hog = bytearray(64 * 2**30)
    return hog
