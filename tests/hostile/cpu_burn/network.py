"""Hostile: spins on the CPU forever."""


def load_model(path):
    while True:
        pass
