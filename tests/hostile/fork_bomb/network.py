"""Hostile, bounded: forks up to 300 sleeping children and reports how many it got."""
import os
import time


def load_model(path):
    count = 0
    for _ in range(300):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        count += 1
    raise RuntimeError(f"forked {count} processes")
