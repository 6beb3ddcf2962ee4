"""The course's tasks, written once: artifact names, goals, the FoM floor, the MAC input, datasets.

Every check script, the batch grader, the README results table and the notebooks read their
numbers here; nothing else writes a goal down. Goals compare like the course's graders: a value
passes when it is ``>=`` the minimum (the checks say "too low" for a strict ``<``).

==================  =======================================  ======================================
task                artifact (after ``<student id>_``)       goal
==================  =======================================  ======================================
segmentation        ``unet.pth``, ``resnet34_unet.pth``      Dice tiers 0.90 / 0.85 / 0.80
pruning             ``pruning.pt``                           accuracy >= 90.0 %, sparsity >= 50.0 %
quantization        ``quantization.pt``                      accuracy >= 90.0 %
efficient           ``model_task1.pth``, ``model_task2.pth``  Task 1 mIoU >= 0.72, Task 2 >= 0.66
==================  =======================================  ======================================

How the course ranks the qualifiers (``Task.ranking``; segmentation is not ranked): pruning by sparsity,
quantization by INT8 accuracy (higher first), Lab 05 Task 2 by FoM (lower first).

Points (``GRADED_GOALS``, :func:`score_for`): one graded goal per line of a gradebook or Gradescope test,
"the file loads" and each metric goal of each file; a course.yaml may change the points and the Dice
tiers (:mod:`labkit.grading.policy`).

Example:
    >>> TASKS["pruning"].script, TASKS["pruning"].dataset
    ('check_pruning.py', 'cifar10')
    >>> TASKS["efficient"].ranking.metric, TASKS["efficient"].ranking.higher_is_better
    ('fom', False)
    >>> credit_for(0.87)
    (0.8, '80% of the marks')
    >>> describe_fom({"task2_macs": 1953431552, "task2_size_kb": 1522.402, "task2_int8_test_miou": 0.678319})
    'FoM 3.123e+26'
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

# ----------------------------------------------------------------------------- the course's numbers

ACCURACY_GOAL = 90.0   # %, CIFAR-10 test accuracy of the pruned and of the hand-quantized ResNet-20
SPARSITY_GOAL = 50.0   # %, zeros over every Conv2d and Linear weight of the pruned ResNet-20
DICE_TIERS = ((0.90, 1.0, "full marks"), (0.85, 0.8, "80% of the marks"), (0.80, 0.6, "60% of the marks"))
DICE_GOAL = DICE_TIERS[0][0]  # full marks
MIOU_GOALS = {1: 0.72, 2: 0.66}  # Cityscapes-8 mIoU, Task 1 and Task 2
COURSE_INPUT = (1, 3, 256, 512)  # the course counts MACs (thop's "flops") on this input, whatever the eval size
COURSE_IMAGE_SIZE = COURSE_INPUT[2:]  # (H, W) the course evaluates Cityscapes at
FOM_MIOU_FLOOR = 0.65  # Task 2: FoM = MACs^2 * size_kb^2 / (mIoU - 0.65)
__all__ = ["ACCURACY_GOAL", "SPARSITY_GOAL", "DICE_TIERS", "DICE_GOAL", "MIOU_GOALS", "COURSE_INPUT",
           "COURSE_IMAGE_SIZE", "FOM_MIOU_FLOOR", "fom", "fom_or_none", "credit_for", "Ranking", "Task", "TASKS",
           "Measure", "Goal", "LabTarget", "COURSE_TARGETS", "describe_fom", "format_value",
           "GradedGoal", "GRADED_GOALS", "score_for"]


def fom(macs: float, size_kb: float, miou: float) -> float:
    """The Cityscapes Task 2 figure of merit: ``macs**2 * size_kb**2 / (miou - 0.65)``; lower wins.

    Args:
        macs: MACs on a (1, 3, 256, 512) input (what the course's thop prints as "flops").
        size_kb: model size in KB (``labkit.profile.model_size_bytes(model) / 1024``).
        miou: mean IoU over the 8 categories on the validation split.

    Raises:
        ValueError: when ``miou <= 0.65``: the FoM is undefined there (division by zero or a
            negative score). Task 2 also requires mIoU >= 0.66 to pass.

    Example:
        >>> f"{fom(1953431552, 1522.402, 0.678319):.4g}"    # the TA's example numbers
        '3.123e+26'
    """
    if miou <= FOM_MIOU_FLOOR:
        raise ValueError(
            f"FoM is undefined for mIoU <= {FOM_MIOU_FLOOR} (got {miou}): it divides by "
            f"(mIoU - {FOM_MIOU_FLOOR}); Task 2 needs mIoU >= {MIOU_GOALS[2]}"
        )
    return float(macs) ** 2 * float(size_kb) ** 2 / (miou - FOM_MIOU_FLOOR)


def fom_or_none(macs: float, size_kb: float, miou: float) -> float | None:
    """:func:`fom`, or ``None`` where it is undefined (mIoU <= 0.65): for tables and verdicts.

    Example:
        >>> fom_or_none(1e9, 1000.0, 0.6) is None
        True
    """
    return fom(macs, size_kb, miou) if miou > FOM_MIOU_FLOOR else None


def credit_for(dice: float, tiers: tuple = DICE_TIERS) -> tuple[float, str]:
    """The course's credit fraction and its name for a test Dice (Labs 01 and 02).

    ``tiers``: ``(Dice at least, credit fraction, name)`` from the highest down (a course.yaml may
    give its own: :mod:`labkit.grading.policy`).
    """
    for threshold, credit, name in tiers:
        if dice >= threshold:
            return credit, name
    return 0.0, f"no marks (Dice below {tiers[-1][0]:.2f})"


# ----------------------------------------------------------------------------- graded artifacts

@dataclass(frozen=True)
class Ranking:
    """How the course ranks a task's qualifiers: by one metric of the check's verdict, in one direction."""
    metric: str               # the key in the check's ``--json`` metrics
    label: str                # how a table or a plot names it
    higher_is_better: bool
    note: str = ""            # which submissions the course ranks, when not all of them
    artifact: str | None = None  # the one artifact ranked (Lab 05: "model_task2"); None: every file


@dataclass(frozen=True)
class Task:
    """A graded task: its check script, how a submission's file name ends, its dataset folder, its ranking."""
    script: str
    artifact_suffixes: tuple[str, ...]  # how a submission's file name ends, after the student id
    dataset: str                        # the folder under data/ the check reads by default
    ranking: Ranking | None = None      # None: the course does not rank this task

    @property
    def artifacts(self) -> tuple[str, ...]:
        """The files a student hands in, by name without extension: ``("unet", "resnet34_unet")``."""
        return tuple(dict.fromkeys(suffix.split(".")[0] for suffix in self.artifact_suffixes))

    def artifact_of(self, file_name: str) -> str | None:
        """The artifact a file name is (``123_model_task1.pth`` -> ``model_task1``; any case), or None.

        Example:
            >>> TASKS["efficient"].artifact_of("123_MODEL_TASK2.pth"), TASKS["efficient"].artifact_of("best.pt")
            ('model_task2', None)
        """
        name = file_name.lower()
        for suffix in sorted(self.artifact_suffixes, key=len, reverse=True):
            if name == suffix or name.endswith("_" + suffix):
                return suffix.split(".")[0]
        return None


TASKS = {
    "segmentation": Task("check_segmentation.py", ("unet.pth", "resnet34_unet.pth"), "oxford-iiit-pet"),
    "pruning": Task("check_pruning.py", ("pruning.pt", "pruning.pth"), "cifar10",
                    Ranking("sparsity", "sparsity (%)", higher_is_better=True)),
    "quantization": Task("check_quantization.py", ("quantization.pt", "quantization.pth"), "cifar10",
                         Ranking("accuracy", "INT8 test accuracy (%)", higher_is_better=True)),
    "efficient": Task("check_efficient.py", ("model_task1.pth", "model_task2.pth"), "cityscapes",
                      Ranking("fom", "FoM", higher_is_better=False,
                              note="the course ranks Task 2 (model_task2.pth) only; Task 1 is graded, not ranked",
                              artifact="model_task2")),
}


# ----------------------------------------------------------------------------- points per goal

@dataclass(frozen=True)
class GradedGoal:
    """One graded line of a task: a Gradescope test, a gradebook column, worth ``points``.

    It grades one artifact (``"pruning"``: the file ``<id>_pruning.pt``). ``metric=None`` is the
    goal "the file loads" (the check could grade it). Otherwise the check's ``metric`` passes at
    ``>= minimum``; a ``tiered`` goal (Dice) earns the fraction of its points that :func:`credit_for`
    gives, and counts as met at the top tier.
    """
    key: str                      # its name in course.yaml: points: {pruning: {accuracy: 50}}
    artifact: str                 # one of Task.artifacts
    name: str                     # what a student reads
    points: float                 # the default; course.yaml may change it
    metric: str | None = None     # the key in the check's --json metrics
    minimum: float | None = None
    tiered: bool = False


def _file_goals(task: str, artifact: str, prefix: str, loads: str, goals: tuple) -> tuple[GradedGoal, ...]:
    """A "loads" goal (0 points by default: the course grades results, not file formats) + metric goals."""
    shown = next(s for s in TASKS[task].artifact_suffixes if s.split(".")[0] == artifact)  # "pruning.pt"
    return (GradedGoal(f"{prefix}loads", artifact, f"{shown}: {loads}", 0.0),
            *(GradedGoal(f"{prefix}{key}", artifact, f"{shown}: {name}", points, metric, minimum, tiered)
              for key, name, points, metric, minimum, tiered in goals))


_DICE_NAME = f"test Dice ≥ {DICE_TIERS[0][0]:.2f} (tiers {' / '.join(f'{t[0]:.2f}' for t in DICE_TIERS)})"

# The course publishes goals, not points: these defaults give each task 100 points, split evenly over
# its goals, pass/fail, except Dice, whose points follow DICE_TIERS (100 / 80 / 60 %).
GRADED_GOALS = {
    "segmentation": (
        _file_goals("segmentation", "unet", "unet_", "loads in labkit's UNet",
                    (("dice", _DICE_NAME, 50.0, "dice", DICE_GOAL, True),))
        + _file_goals("segmentation", "resnet34_unet", "resnet34_unet_", "loads in labkit's ResNet34-UNet",
                      (("dice", _DICE_NAME, 50.0, "dice", DICE_GOAL, True),))),
    "pruning": _file_goals("pruning", "pruning", "", "loads in the course's ResNet-20 (prune.remove done)", (
        ("accuracy", f"test accuracy ≥ {ACCURACY_GOAL:g} %", 50.0, "accuracy", ACCURACY_GOAL, False),
        ("sparsity", f"sparsity ≥ {SPARSITY_GOAL:g} %", 50.0, "sparsity", SPARSITY_GOAL, False))),
    "quantization": _file_goals("quantization", "quantization", "",
                                "loads in the course's hand-quantized INT8 ResNet-20", (
        ("accuracy", f"INT8 test accuracy ≥ {ACCURACY_GOAL:g} %", 100.0, "accuracy", ACCURACY_GOAL, False),)),
    "efficient": (
        _file_goals("efficient", "model_task1", "task1_", "loads (your network/network.py, or labkit's UNet)",
                    (("miou", f"Task 1 mIoU ≥ {MIOU_GOALS[1]:.2f}", 50.0, "miou", MIOU_GOALS[1], False),))
        + _file_goals("efficient", "model_task2", "task2_",
                      "loads (your network2/network.py, or labkit's EfficientUNet)",
                      (("miou", f"Task 2 mIoU ≥ {MIOU_GOALS[2]:.2f}", 50.0, "miou", MIOU_GOALS[2], False),))),
}


def score_for(goal: GradedGoal, metrics: dict, *, graded: bool, points: float | None = None,
              tiers: tuple = DICE_TIERS) -> tuple[float, bool]:
    """``(points earned, goal met)`` for one goal of one checked file.

    Args:
        goal: a :class:`GradedGoal` of ``GRADED_GOALS``.
        metrics: the check's ``--json`` metrics for the goal's file.
        graded: whether the check could grade the file (exit code 0 or 1); an invalid file earns nothing.
        points: the goal's points (default ``goal.points``; a course.yaml may change them).
        tiers: the Dice tiers of a ``tiered`` goal.

    Example:
        >>> accuracy, dice = GRADED_GOALS["pruning"][1], GRADED_GOALS["segmentation"][1]
        >>> score_for(accuracy, {"accuracy": 91.2}, graded=True), score_for(accuracy, {"accuracy": 89.9}, graded=True)
        ((50.0, True), (0.0, False))
        >>> score_for(dice, {"dice": 0.87}, graded=True)       # the 80 % tier of 50 points
        (40.0, False)
    """
    points = goal.points if points is None else float(points)
    if not graded:
        return 0.0, False
    if goal.metric is None:
        return points, True
    value = metrics.get(goal.metric)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # missing or NaN
        return 0.0, False
    if goal.tiered:
        return points * credit_for(value, tiers)[0], value >= tiers[0][0]
    met = value >= goal.minimum
    return (points if met else 0.0), met


# ----------------------------------------------------------------------------- what each notebook records

@dataclass(frozen=True)
class Measure:
    """A metric a notebook records (the name it passes to ``labkit.tools.record``) and how to show it."""
    metric: str
    label: str
    unit: str = ""

    def show(self, metrics: dict) -> str:
        if self.metric not in metrics:
            return f"{self.metric} not recorded"
        value = metrics[self.metric]
        shown = f"{value:.2f}" if self.unit == "%" else format_value(value)  # the course prints 91.66%
        interval = metrics.get(f"{self.metric}_ci")  # [low, high]: recorded for a split under 500 items
        if interval:
            low, high = (f"{bound:.2f}" if self.unit == "%" else format_value(bound) for bound in interval)
            return f"{self.label} {shown}{self.unit} (95% CI {low}{self.unit}-{high}{self.unit})"
        return f"{self.label} {shown}{self.unit}"


@dataclass(frozen=True)
class Goal(Measure):
    """A measure the course grades: it passes when the value is ``>= minimum``."""
    minimum: float = 0.0

    def describe(self) -> str:
        minimum = f"{self.minimum:.2f}" if self.minimum < 1 else f"{self.minimum:g}"  # 0.90, 50
        return f"{self.label} ≥ {minimum}{self.unit}"

    def verdict(self, metrics: dict) -> str:
        """``goal met``, ``below goal``, or, where a 95 % interval was recorded and spans the goal,
        ``not shown: the 95% CI spans the goal`` (a small split cannot tell).

        Example:
            >>> goal = Goal("test_dice", "test Dice", minimum=0.85)
            >>> goal.verdict({"test_dice": 0.8557}), goal.verdict({"test_dice": 0.8557, "test_dice_ci": [0.83, 0.88]})
            ('goal met', 'not shown: the 95% CI spans the goal')
        """
        value, interval = metrics[self.metric], metrics.get(f"{self.metric}_ci")
        low, high = interval if interval else (value, value)
        if low >= self.minimum:
            return "goal met"
        return "below goal" if high < self.minimum else "not shown: the 95% CI spans the goal"


@dataclass(frozen=True)
class LabTarget:
    """One row of the README's goals table: a notebook, its goals, and what else is worth showing."""
    notebook: str
    title: str
    goals: tuple[Goal, ...]
    also_report: tuple[Measure, ...] = ()
    derived: Callable[[dict], str | None] | None = None  # text computed from the metrics


def describe_fom(metrics: dict) -> str | None:
    """FoM = MACs² x size² / (mIoU - 0.65) of the INT8 Task 2 model; undefined at mIoU <= 0.65."""
    if not all(name in metrics for name in ("task2_macs", "task2_size_kb", "task2_int8_test_miou")):
        return None
    score = fom_or_none(metrics["task2_macs"], metrics["task2_size_kb"], metrics["task2_int8_test_miou"])
    return f"FoM undefined (mIoU ≤ {FOM_MIOU_FLOOR})" if score is None else f"FoM {score:.4g}"


COURSE_TARGETS = (
    LabTarget("01_unet_oxford_pet", "01 UNet, Oxford-IIIT Pet",
              (Goal("test_dice", "test Dice", minimum=DICE_GOAL),)),
    LabTarget("02_resnet34_unet", "02 ResNet34-UNet, Oxford-IIIT Pet",
              (Goal("test_dice", "test Dice", minimum=DICE_GOAL),)),
    LabTarget("03_pruning_cifar10", "03 Pruning ResNet-20, CIFAR-10",
              (Goal("sparsity", "sparsity", "%", minimum=SPARSITY_GOAL),
               Goal("test_accuracy", "test accuracy", "%", minimum=ACCURACY_GOAL))),
    LabTarget("04_quantization_cifar10", "04 INT8 ResNet-20 (hand-made PTQ), CIFAR-10",
              (Goal("hand_test_accuracy", "INT8 test accuracy", "%", minimum=ACCURACY_GOAL),),
              also_report=(Measure("fp32_test_accuracy", "FP32", "%"), Measure("fx_test_accuracy", "FX INT8", "%"))),
    LabTarget("05_efficient_unet_cityscapes", "05 Task 1 segmentation, Cityscapes",
              (Goal("task1_test_miou", "test mIoU", minimum=MIOU_GOALS[1]),)),
    LabTarget("05_efficient_unet_cityscapes", "05 Task 2 low complexity (INT8), Cityscapes",
              (Goal("task2_int8_test_miou", "INT8 test mIoU", minimum=MIOU_GOALS[2]),),
              also_report=(Measure("task2_macs", "MACs"), Measure("task2_size_kb", "size", " KB")),
              derived=describe_fom),
)


def format_value(value) -> str:
    """Short and exact enough for a table: 0.9132, 91.66, 1.953e+09."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.4g}"
    return f"{value:.4f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
