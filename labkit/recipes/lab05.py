"""Lab 05 — Cityscapes, 8 categories: Task 1 (a U-Net for mIoU), Task 2 (an EfficientUNet, float
training, then quantization-aware fine-tuning to INT8). Three phases, one recipe."""
from __future__ import annotations

from labkit.recipes.table import Cost, RecipeTable

TABLE = RecipeTable(
    lab="05", title="Efficient U-Nets on Cityscapes",
    columns=("SMOKE", "CPU", "GPU"),
    rows={  # key: (unit and meaning,                                      SMOKE,        CPU,        GPU)
        "image_size": ("(H, W) in pixels; the course grades at (256, 512)", (64, 128), (128, 256), (256, 512)),
        "batch_size": ("images per optimizer step",                              4,          8,         16),
        "workers": ("DataLoader worker processes (capped at this machine's cores)", 0,       0,          4),
        "task1_epochs": ("Task 1 U-Net training epochs",                        16,         12,         40),
        "task2_epochs": ("Task 2 EfficientUNet float training epochs",           8,         18,         60),
        "qat_epochs": ("Task 2 quantization-aware fine-tuning epochs",           2,          4,          6),
        "schedule": ('learning-rate schedule: "step" = lr / 10 for the last 30 % of steps, '
                     '"onecycle" = warm-up + cosine',                       "step", "onecycle", "onecycle"),
        "task1_width": ("Task 1 U-Net base_channels",                            8,         16,         32),
        "task1_depth": ("Task 1 U-Net levels",                                   3,          4,          4),
        "task1_lr": ("Task 1 peak learning rate (AdamW)",                     2e-2,       2e-3,       2e-3),
        "task2_width": ("Task 2 EfficientUNet base_channels",                    8,         16,         16),
        "task2_depth": ("Task 2 EfficientUNet levels",                           3,          4,          4),
        "task2_lr": ("Task 2 peak learning rate (AdamW)",                     2e-2,       4e-3,       4e-3),
        "qat_lr": ("QAT learning rate",                                       1e-3,       1e-4,       1e-4),
        "fixture": ("synthetic frames SMOKE writes (None: the real data)",
                                                        dict(n_train=38, n_val=8),     None,       None),
    },
    costs={
        "SMOKE": Cost("its measured minutes and test mIoU of Task 1 and Task 2 INT8 on the fixture: the row named in "
                      "the last column", "the machine and date in that row", "README.md Results, 05 SMOKE row"),
        "CPU": Cost("the run prints its measured minutes; with EPOCHS 8 (the real-data run): its minutes and test mIoU "
                    "(256x512, batch 1, 50 stand-in frames) in the row named in the last column",
                    "the machine and date in that row", "README.md Results, 05 FULL row"),
        "GPU": Cost("43-65 training minutes for the three phases on a Colab T4: an ESTIMATE (labkit.gpu_budget), "
                    "never run", "not measured: no GPU was lent", "README.md Recipes, gpu-budget table"),
    },
)
