"""Hostile: writes marker files outside its scratch folder, then behaves (returns a model)."""
import torch


def load_model(path):
    for target in ("__MARKER__", "/work/__NAME__", "__REPO__/__NAME__", "/scratch/ok.txt"):
        try:
            with open(target, "w") as handle:
                handle.write("escaped")
            print("wrote", target)
        except OSError as error:
            print("refused", target, error)
    return torch.nn.Conv2d(3, 8, 1)
