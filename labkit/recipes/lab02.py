"""Lab 02 — ResNet34-UNet from scratch beside a U-Net, on Oxford-IIIT Pet: both models train with
the same recipe, one after the other."""
from __future__ import annotations

from labkit.recipes.table import Cost, RecipeTable

TABLE = RecipeTable(
    lab="02", title="ResNet34-UNet vs U-Net on Oxford-IIIT Pet",
    columns=("SMOKE", "CPU", "GPU"),
    rows={  # key: (unit and meaning,                                   SMOKE,      CPU,        GPU)
        "epochs": ("training epochs, each model",                          4,         18,        150),
        "batch_size": ("images per optimizer step",                        8,         16,         16),
        "image_size": ("square side, pixels (ResNet34-UNet needs >= 32)",  32,        128,        256),
        "unet_base_channels": ("width of the U-Net it is compared with (64: the paper's)",
                                                                           8,         16,         24),
        "unet_depth": ("levels of that U-Net",                             3,          4,          4),
        "lr": ("peak learning rate (AdamW, weight decay 1e-4)",         3e-3,       3e-3,       1e-3),
        "schedule": ("learning-rate schedule (labkit.train.make_scheduler)",
                                                                    "cosine", "onecycle", "onecycle"),
        "scale": ("zoom range of the augmentation, ± fraction (0: no augmentation)",
                                                                         0.0,       0.25,       0.25),
        "workers": ("DataLoader worker processes (capped at this machine's cores)",
                                                                           0,          0,          4),
    },
    costs={
        "SMOKE": Cost("its measured minutes and test Dice of both models on the fixture: the row named in the last column",
                      "the machine and date in that row", "README.md Results, 02 SMOKE row; notebook 02"),
        "CPU": Cost("not measured at its 18 epochs; the real-data run's 6 epochs: see the note",
                    "the machine and date in that row", "README.md Results, 02 FULL row"),
        "GPU": Cost("41-64 (U-Net-24) + 46-72 (ResNet34-UNet) training minutes on a Colab T4, one session "
                    "each: an ESTIMATE (labkit.gpu_budget), never run", "not measured: no GPU was lent",
                    "README.md Recipes, gpu-budget table"),
    },
    notes=("the real-data run runs the CPU recipe with EPOCHS 6: test Dice of both models with "
           "their 95 % intervals, and minutes, in README.md Results, 02 FULL row.",),
)
