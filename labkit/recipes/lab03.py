"""Lab 03 — pruning ResNet-20 on CIFAR-10. One table, three parts:

- the graded pruning (keys without a dot): SMOKE prunes a stand-in it trains first, round by round;
  FULL prunes the course's pretrained model gradually, with distillation from the dense model (chosen
  with ``benchmarks/bench_prune_recipes.py``); ``CPU (iterative)`` and ``GPU (iterative)`` are the first
  build's round-by-round schedules, kept for that comparison;
- ``structured.*``: the channel-pruning section (``labkit.prune.channels``; chosen with
  ``benchmarks/bench_structured_prune.py``), the same on a GPU as on a CPU;
- ``GPU (from scratch)``: ``labkit.train.train_baseline``'s defaults, the usual CIFAR ResNet recipe.

``recipes.pick("03", ..., part="structured")`` gives the structured part's keys without their prefix.

How they were chosen (moved here with the recipes from labkit.prune and labkit.train):

- CPU: on the real CIFAR-10 images one epoch of the 20,000 training images with distillation took ~58 s on
  2 idle CPU cores (345 images/s), so 28 epochs fit the 30-minute budget with the evaluations. lr 0.05 and
  the global magnitude ranking were kept from 6-epoch runs of lr 0.02/0.05/0.1, LAMP ranking, alpha 0.9 and
  a shorter pruning phase, chosen on validation (benchmarks/README.md). GPU: a longer run, not measured.
- CPU (iterative): stopped at 85 % (the 90 % round fell below the floor) after 6 of its 30 minutes, which
  is why FULL prunes gradually.
- structured: 8 epochs (~6 min on 2 CPU cores) of half of stage 1's channels (stem included), stages 2 and
  3 whole, cost 0.70 points for 28 % fewer MACs and 1.33x less batch-128 time, measured with the memory
  kept (benchmarks/README.md, bench_structured_prune; one run).
- GPU (from scratch): SGD + cosine, the usual CIFAR ResNet recipe, meant to reach >= 92 % test accuracy on a
  GPU; not measured by labkit (no GPU with CIFAR-10 was available when it was written).
"""
from __future__ import annotations

from labkit.recipes.table import NA, Cost, RecipeTable

_GRADUAL = "gradual pruning only"
TABLE = RecipeTable(
    lab="03", title="pruning ResNet-20 on CIFAR-10",
    columns=("SMOKE", "CPU", "GPU", "CPU (iterative)", "GPU (iterative)", "GPU (from scratch)"),
    rows={  # key: (unit and meaning, SMOKE, CPU, GPU, CPU (iterative), GPU (iterative), GPU (from scratch))
        "schedule": ('"iterative": prune to each target, fine-tune, next; "gradual": a cubic sparsity curve, then '
                     "fine-tuning, distilled from the dense model",
                     "iterative", "gradual", "gradual", "iterative", "iterative", NA),
        "targets": ("sparsities, fractions of zero weights, in order (gradual: the last one)",
                    [0.5, 0.7, 0.8], [0.9], [0.93], (0.5, 0.7, 0.8, 0.85, 0.9), (0.3, 0.5, 0.7, 0.8, 0.9, 0.92), NA),
        "epochs_per_round": ("fine-tuning epochs after each round (one, or one per round)",
                             2, NA, NA, (0.5, 1, 1, 1.5, 3), 15, NA),
        "augment": ("random crop and flip on the training images", False, True, True, NA, NA, NA),
        "lr": ("peak learning rate (SGD, cosine)", 0.02, 0.05, 0.05, 0.01, 0.01, 0.1),
        "batch_size": ("images per step", 50, 128, 128, NA, NA, 128),
        "accuracy_floor": ("test accuracy to keep, % (labkit.grading.tasks.ACCURACY_GOAL)",
                           90.0, 90.0, 90.0, NA, NA, NA),
        "baseline_epochs": ("epochs of SMOKE's stand-in ResNet-20 (FULL loads the pretrained one)",
                            4, NA, NA, NA, NA, NA),
        "baseline_lr": ("the stand-in's learning rate (SGD, cosine)", 0.05, NA, NA, NA, NA, NA),
        "final_sparsity": (f"{_GRADUAL}: the sparsity it ends at, a fraction", NA, 0.9, 0.93, NA, NA, NA),
        "epochs": ("training epochs in all (from scratch: of the dense model)", NA, 28, 150, NA, NA, 200),
        "prune_fraction": (f"{_GRADUAL}: share of the steps that prune (the rest fine-tune)",
                           NA, 0.5, 0.5, NA, NA, NA),
        "distill_alpha": ("weight of the distillation loss from the dense model", NA, 0.7, 0.7, NA, NA, NA),
        "temperature": ("distillation temperature", NA, 4.0, 4.0, NA, NA, NA),
        "ranking": ('which weights go first: "magnitude" = smallest absolute value, globally', NA, "magnitude", "magnitude", NA, NA, NA),
        "momentum": ("SGD momentum", NA, NA, NA, NA, NA, 0.9),
        "weight_decay": ("SGD weight decay", NA, NA, NA, NA, NA, 5e-4),
        "nesterov": ("Nesterov momentum", NA, NA, NA, NA, NA, True),
        # the structured section: the same on a GPU as on a CPU
        "structured.ratio": ("channels removed per stage, the stem with stage 1 (resnet20_stage_ratios(0.5, 0, 0))",
                             *[{"conv1": 0.5, "layer1": 0.5, "layer2": 0.0, "layer3": 0.0}] * 3, NA, NA, NA),
        "structured.epochs": ("fine-tuning epochs", 4, 8, 8, NA, NA, NA),
        "structured.prune_fraction": ("share of the steps that prune", 0.25, 0.25, 0.25, NA, NA, NA),
        "structured.prune_steps": ("pruning steps", 4, 4, 4, NA, NA, NA),
        "structured.lr": ("peak learning rate (SGD, cosine)", 0.02, 0.02, 0.02, NA, NA, NA),
        "structured.distill_alpha": ("weight of the distillation loss", 0.7, 0.7, 0.7, NA, NA, NA),
        "structured.temperature": ("distillation temperature", 4.0, 4.0, 4.0, NA, NA, NA),
        "structured.importance": ('channel ranking: "l2" norm of their weights', "l2", "l2", "l2", NA, NA, NA),
        "structured.latency_rounds": ("rounds of the latency comparison", 2, 5, 5, NA, NA, NA),
    },
    costs={
        "SMOKE": Cost("its measured minutes, sparsity and test accuracy on the fixture: the row named in the last column",
                      "the machine and date in that row", "README.md Results, 03 SMOKE row"),
        "CPU": Cost("the real-data run's sparsity, test accuracy and pruning minutes: README.md Results, 03 FULL row; "
                    "structured (0.5/0/0, 8 epochs): 90.84 %, 6.29 min, 1.33x faster at batch 128",
                    "structured: 2-core Intel Xeon CPU, torch 2.14.1, 2026-12-07",
                    "benchmarks/README.md, bench_prune_recipes and bench_structured_prune; README.md Results"),
        "GPU": Cost("150 epochs to 93 % sparsity", "not measured: no GPU was lent", "benchmarks/README.md"),
        "CPU (iterative)": Cost("5.71 min, stopped at 85 % sparsity (its 90 % round fell below the floor), "
                                "88.30 % test accuracy", "2-core AMD EPYC CPU, torch 2.14.1, 2026-12-01",
                                "benchmarks/README.md, bench_prune_recipes table"),
        "GPU (iterative)": Cost("-", "not measured: no GPU was lent", "-"),
        "GPU (from scratch)": Cost("the usual CIFAR ResNet recipe, aimed at >= 92 % test accuracy",
                                   "not measured: no GPU with CIFAR-10 was lent", "-"),
    },
    notes=("the real-data run runs the structured section with STRUCTURED_EPOCHS 2: its test "
           "accuracy is in README.md Results, 03 FULL row.",),
)
