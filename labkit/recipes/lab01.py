"""Lab 01 — U-Net on Oxford-IIIT Pet: SMOKE, the two CPU recipes and the GPU one.

The CPU recipe was chosen with ``benchmarks/bench_pets_recipes.py`` on validation Dice (tables and
reasoning: benchmarks/README.md): bfloat16 trains it faster on a CPU with bfloat16 units (timed side by side by
``benchmarks/bench_cpu_recipe.py --variants``), which makes room for 100 epochs, a gain on every fold of a
3-fold cross-validation; half a Lovasz hinge and a moving average of the weights were kept, though on the
folds neither gain is larger than the noise. A CPU without bfloat16 units runs the 60-epoch float32 recipe.
"""
from __future__ import annotations

from labkit.recipes.table import Cost, RecipeTable, Variant


def _cpu_has_bfloat16() -> bool:
    from labkit import device  # looked up at pick time, so a test can stand in for the CPU
    return device.cpu_has_bfloat16()


TABLE = RecipeTable(
    lab="01", title="U-Net on Oxford-IIIT Pet",
    columns=("SMOKE", "CPU", "CPU (bfloat16)", "GPU"),
    rows={  # key: (unit and meaning,                                SMOKE,    CPU,  CPU (bfloat16),  GPU)
        "epochs": ("training epochs",                                  12,       60,         100,         25),
        "batch_size": ("images per optimizer step",                     8,       16,          16,         16),
        "image_size": ("square side, pixels",                          64,      128,         128,        256),
        "base_channels": ("U-Net width at level 1, doubling per level (64: the paper's)",
                                                                        8,       16,          16,         64),
        "lr": ("peak learning rate (AdamW, weight decay 1e-4)",     3e-3,     3e-3,        3e-3,       1e-3),
        "schedule": ("learning-rate schedule (labkit.train.make_scheduler)",
                                                                 "cosine", "onecycle", "onecycle", "onecycle"),
        "scale": ("zoom range of the augmentation, ± fraction (0: no augmentation)",
                                                                      0.0,     0.25,        0.25,       0.25),
        "lovasz": ("weight of the Lovasz hinge added to BCE + soft Dice", 0.0, 0.0,          0.5,        0.0),
        "bfloat16": ("forward pass in bfloat16 on the CPU (GPU: float16 always)",
                                                                    False,    False,        True,      False),
        "ema": ("decay of the weights' moving average, the copy evaluated and kept (None: the weights)",
                                                                     None,     None,        0.99,       None),
        "workers": ("DataLoader worker processes (capped at this machine's cores)",
                                                                        0,        0,           0,          4),
    },
    costs={
        "SMOKE": Cost("sized for about 1 minute on 2 CPU cores; its measured minutes and test Dice on the fixture: "
                      "the row named in the last column", "the machine and date in that row", "README.md Results, 01 SMOKE row"),
        "CPU": Cost("validation Dice 0.8368 (last 10 epochs, 3-fold cross-validation on the 250 real Pets train + "
                    "valid images), 4.2-4.4 training minutes per fold of 167 images",
                    "2-core Intel Xeon CPU, torch 2.14.1, 2026-12-07",
                    "benchmarks/README.md, bench_pets_recipes cross-validated table"),
        "CPU (bfloat16)": Cost("validation Dice 0.8552 (last 10 epochs, the same 3 folds); 9.30 training minutes on "
                               "225 images (seed 0; seed 1: 9.99 min)",
                               "folds: 2-core Intel Xeon CPU, 2026-12-07; minutes: 2-core AMD EPYC CPU with AVX512-BF16, "
                               "torch 2.14.1, 2026-12-03",
                               "benchmarks/README.md, bench_pets_recipes tables (cross-validated; rows 8 and 10)"),
        "GPU": Cost("43-65 training minutes on a Colab T4: an ESTIMATE (labkit.gpu_budget), never run",
                    "not measured: no GPU was lent", "README.md Recipes, gpu-budget table"),
    },
    variants=(Variant("CPU (bfloat16)", instead_of="CPU", applies=_cpu_has_bfloat16,
                      rule="where the CPU computes bfloat16 natively (labkit.device.cpu_has_bfloat16)"),),
    notes=("the real-data run: test Dice with its 95 % interval on the 50 stand-in test images and "
           "training minutes in README.md Results, 01 FULL row.",),
)
