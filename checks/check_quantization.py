"""Grade a hand-quantized ResNet-20 (Lab 04) on the CIFAR-10 test set.

    python checks/check_quantization.py --path 123_quantization.pt [--data data/cifar10]
        [--batch-size 128] [--device auto] [--json]

The file is the state_dict of :class:`labkit.models.quantized_resnet20.QuantizedResNet20`, whose
150 keys are the course's INT8 ResNet-20 schema exactly (``quant.output_scale``, then per layer
``bias_fp32``, int8 ``weight_int8``, float32 ``weight_scale``, int32 ``weight_zero_point``,
``output_scale`` / ``output_zero_point``; shortcuts ``layer{2,3}.0.downsample.0.*``), so a file
this check accepts is one the course's check accepts. It is read with
``torch.load(weights_only=True, map_location="cpu")`` and loaded strictly, dtypes included, into
an empty ``QuantizedResNet20()`` (no student TODO in it); no calibration happens here. Accuracy is
``labkit.grading.reference``'s. A file with labkit 0.1's first
names (``conv1.weight``, ``input_scale``, ``layer2.0.downsample.weight``) gets a hint listing the
renames. Goal: test accuracy >= 90.0% (the course's). Exit codes: 0 goal achieved, 1 below it,
2 invalid file, 3 dataset missing.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from torch.utils.data import DataLoader  # noqa: E402

from labkit.data.cifar10 import CIFAR10  # noqa: E402
from labkit.grading.contract import CheckResult, common_parser, dataset_batches, load_submission, run_check  # noqa: E402
from labkit.grading.reference import evaluate_classification  # noqa: E402
from labkit.grading.limits import COURSE_INT8_DTYPES, FLOAT_DTYPES, QUANTIZED_DTYPES  # noqa: E402
from labkit.grading.tasks import ACCURACY_GOAL, TASKS  # noqa: E402
from labkit.models.quantized_resnet20 import QuantizedResNet20, course_names_for_old_keys  # noqa: E402

DEFAULT_DATA = f"data/{TASKS['quantization'].dataset}"  # relative to where the check runs
ARCHITECTURE_ERROR = "Your model's architecture seems to be wrong!"


def build_parser():
    parser = common_parser(__doc__.splitlines()[0], batch_size=128)
    parser.set_defaults(data=DEFAULT_DATA)
    return parser


def rename_hint(renames: dict[str, str]) -> str:
    """'rename a -> b, c -> d, ...' for labkit 0.1's old INT8 names, the three kinds first."""
    shown = {}
    for old, new in renames.items():  # one example of each kind, then the rule
        kind = ("input" if old.startswith("input_") else "downsample" if ".downsample." in old
                else "weight")
        shown.setdefault(kind, f"{old} -> {new}")
    rules = [shown[kind] for kind in ("weight", "input", "downsample") if kind in shown]
    if "input_zero_point" in renames:
        rules.insert(rules.index(shown["input"]) + 1, "input_zero_point -> quant.output_zero_point")
    return (f"this file uses labkit 0.1's old names for the INT8 ResNet-20 ({len(renames)} keys), not the "
            "course's: rename " + ", ".join(rules) + " (every int8 <layer>.weight -> <layer>.weight_int8, "
            "every layerN.0.downsample.* -> layerN.0.downsample.0.*); or rebuild with this labkit version "
            "(labkit.quant.manual.quantize_resnet20) and save its state_dict again. "
            "labkit.models.quantized_resnet20.course_names_for_old_keys(state_dict) gives every rename")


def what_was_saved(state_dict: dict) -> str | None:
    """A hint when the file is another model of this lab, or labkit's old INT8 names."""
    keys = set(state_dict)
    renames = course_names_for_old_keys(state_dict)
    if renames:
        expected = set(QuantizedResNet20().state_dict())
        still_wrong = expected ^ {renames.get(key, key) for key in keys}
        if not still_wrong:
            return rename_hint(renames)
        return (rename_hint(renames) + f"; even renamed, {len(still_wrong)} keys differ from the course's "
                f"(e.g. {sorted(still_wrong)[0]}): rebuilding is the way")
    if "bn1.running_mean" in keys:
        return ("this is a float ResNet-20 state_dict (it has BatchNorm keys); save the model that "
                "labkit.quant.manual.quantize_resnet20 returns (BatchNorm fused, int8 weights)")
    if any(key.endswith("_packed_params.dtype") or key.endswith("_packed_params._packed_params")
           for key in keys):
        return ("this is a torch.ao (FX/eager) INT8 state_dict; this check grades the hand-quantized "
                "QuantizedResNet20 (the FX part of the lab is not graded by a file)")
    return None


def evaluate_submission(args) -> CheckResult:
    notes: list[str] = []
    model = load_submission(args.path, QuantizedResNet20(), wrong_architecture=ARCHITECTURE_ERROR,
                            notes=notes, explain=what_was_saved,
                            allowed_dtypes=COURSE_INT8_DTYPES + QUANTIZED_DTYPES[len(FLOAT_DTYPES):])
    # qint8/quint8/qint32 are read too, only so a torch.ao INT8 file gets its specific hint (what_was_saved)
    loader = dataset_batches(lambda: DataLoader(CIFAR10(args.data, "test"), batch_size=args.batch_size,
                                                shuffle=False), where=args.data)
    test_set = loader.dataset
    accuracy = evaluate_classification(model, loader, device=args.device)["accuracy"]
    metrics = {"accuracy": accuracy, "goal_accuracy": ACCURACY_GOAL, "test_images": len(test_set)}
    if accuracy < ACCURACY_GOAL:
        message = (f"Oops! Something is wrong!\nYour test accuracy is {accuracy:.2f}%, which is too low!\n"
                   "hint: compare with your float model's accuracy. A drop of more than a point or two "
                   "usually means wrong qparams: calibrate on training images of the float model, fuse "
                   "Conv-BN before quantizing the weights, and keep output_zero_point 0 after a ReLU.")
        return CheckResult("quantization", False, message, metrics, notes)
    message = ("Congratulations! You've achieved the goals of this task.\n"
               f"Your model's test accuracy is {accuracy:.2f}%.")
    return CheckResult("quantization", True, message, metrics, notes)


def main(argv=None) -> int:
    return run_check("quantization", build_parser(), evaluate_submission, argv)


if __name__ == "__main__":
    sys.exit(main())
