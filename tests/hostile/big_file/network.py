"""Hostile: writes a 200 MB file into its scratch folder (over the file-size limit)."""
import torch


def load_model(path):
    with open("/scratch/big.bin" if __import__("os").path.isdir("/scratch") else "big.bin", "wb") as handle:
        for _ in range(200):
            handle.write(b"\0" * 2**20)
    return torch.nn.Conv2d(3, 8, 1)
