"""Hostile: never returns from load_model."""
import time


def load_model(path):
    time.sleep(10**6)
