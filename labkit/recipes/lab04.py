"""Lab 04 — INT8 ResNet-20 on CIFAR-10 (FX PTQ sweep, hand-made PTQ). FULL quantizes the course's
pretrained model; SMOKE has none for its synthetic images, so it trains a stand-in first. The INT8
kernels run on the CPU, so the CPU and GPU recipes are the same."""
from __future__ import annotations

from labkit.recipes.table import NA, Cost, RecipeTable

TABLE = RecipeTable(
    lab="04", title="INT8 ResNet-20 on CIFAR-10",
    columns=("SMOKE", "CPU", "GPU"),
    rows={  # key: (unit and meaning,                                     SMOKE,           CPU,              GPU)
        "epochs": ("training epochs of SMOKE's stand-in ResNet-20 (FULL loads the pretrained one)",
                                                                             8,             NA,               NA),
        "lr": ("the stand-in's learning rate (SGD, cosine)",             0.05,             NA,               NA),
        "augment": ("random crop and flip on the training loader (calibration never augments)",
                                                                         False,           True,             True),
        "batch_size": ("images per batch: training, calibration, evaluation",
                                                                            50,            128,              128),
        "hand_calibration_candidates": (
            "calibration images the hand-made PTQ tries, kept on validation (capped at the training images)",
                                                                         [100], [100, 1000, 5000], [100, 1000, 5000]),
        "latency_repeats": ("timed forward passes per latency measurement",  10,            50,               50),
    },
    costs={
        "SMOKE": Cost("its measured minutes and INT8 test accuracy on the fixture: the row named in the last column "
                      "(8 stand-in epochs: 4 reached only 82 % at one of 20 seeds/thread counts)",
                      "the machine and date in that row", "README.md Results, 04 SMOKE row; benchmarks/README.md"),
        "CPU": Cost("whole-notebook minutes and test accuracy FP32, FX INT8 and hand-made INT8 on the 5,000 "
                    "stand-in test images: the row named in the last column", "the machine and date in that row",
                    "README.md Results, 04 FULL row (the real-data run)"),
        "GPU": Cost("the CPU recipe: the INT8 models run on the CPU", "not measured on a GPU", "-"),
    },
)
