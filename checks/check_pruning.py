"""Check a pruned ResNet-20 (Lab 03): test accuracy >= 90.0% and sparsity >= 50.0%.

    python checks/check_pruning.py --path 123_pruning.pt [--data data/cifar10] [--batch-size 128]
        [--device auto] [--json]

Prints the course's messages ("Congratulations! ..." / "Oops! Something is wrong!" + the reason),
then a specific hint. ``--data`` (default: ``data/cifar10`` in the repository) may hold the official
``cifar-10-batches-py`` folder or image folders ``test/<class>/*.png``. The file is read with
``weights_only=True, map_location="cpu"`` and loaded strictly into labkit's ResNet-20; accuracy is
computed on the test set (batch 128 unless ``--batch-size``, no shuffling, the course's
normalisation) and sparsity as zeros / total over every Conv2d and Linear weight, both by
``labkit.grading.reference`` (never the student's labkit.prune.magnitude or labkit.evaluate). Exit codes:
0 passed, 1 below a goal, 2 invalid file, 3 dataset missing.
"""
from __future__ import annotations

import sys

from torch.utils.data import DataLoader

from labkit.data.cifar10 import CIFAR10
from labkit.grading.contract import CheckResult, common_parser, dataset_batches, load_submission, run_check
from labkit.grading.reference import course_sparsity, evaluate_classification
from labkit.grading.tasks import ACCURACY_GOAL, SPARSITY_GOAL, TASKS
from labkit.models.resnet20 import resnet20
from labkit.paths import DATA_DIR

TASK = "pruning"
DEFAULT_DATA = DATA_DIR / TASKS[TASK].dataset  # the goals compare with a strict "<", like the course's
OFFICIAL_TEST_SIZE = 10_000

WRONG_ARCHITECTURE = ("Your model's architecture seems to be wrong! Have you removed pruning mask "
                      "before saving?")


def build_parser():
    parser = common_parser(__doc__.splitlines()[0], batch_size=128)
    parser.set_defaults(data=str(DEFAULT_DATA))
    return parser


def evaluate_submission(args) -> CheckResult:
    notes: list[str] = []
    model = load_submission(args.path, resnet20(), wrong_architecture=WRONG_ARCHITECTURE, notes=notes)

    loader = dataset_batches(lambda: DataLoader(CIFAR10(args.data, "test"), batch_size=args.batch_size,
                                                shuffle=False), where=args.data)
    test_set = loader.dataset
    accuracy = evaluate_classification(model, loader, device=args.device)["accuracy"]
    sparsity = course_sparsity(model)
    if len(test_set) != OFFICIAL_TEST_SIZE:
        notes.append(f"evaluated on {len(test_set)} images from {args.data}; the official test set "
                     f"has {OFFICIAL_TEST_SIZE}, so this is not the graded number")
    metrics = {"accuracy": accuracy, "sparsity": sparsity, "test_images": len(test_set)}

    problems, hints = [], []
    if accuracy < ACCURACY_GOAL:
        problems.append(f"Your test accuracy is {accuracy:.2f}%, which is too low!")
        hints.append(f"hint: the goal is {ACCURACY_GOAL:.1f}%: fine-tune longer after the last pruning "
                     "round (masks attached), or keep the last round that stayed above the goal")
    if sparsity < SPARSITY_GOAL:
        problems.append(f"Your model's sparsity is {sparsity:.2f}%, which is too low!")
        hints.append(f"hint: the goal is {SPARSITY_GOAL:.1f}% zeros over all Conv2d and Linear "
                     "weights (biases and BatchNorm do not count); prune further before saving")
    if problems:
        message = "\n".join(["Oops! Something is wrong!", *problems, *hints])
        return CheckResult(TASK, False, message, metrics, notes)
    notes.insert(0, f"test accuracy {accuracy:.2f}% on {len(test_set)} images")
    message = ("Congratulations! You've achieved the goals of this task.\n"
               f"Your model's sparsity is {sparsity:.2f}%.")
    return CheckResult(TASK, True, message, metrics, notes)


def main(argv: list[str] | None = None) -> int:
    return run_check(TASK, build_parser(), evaluate_submission, argv)


if __name__ == "__main__":
    sys.exit(main())
