"""Grade a Cityscapes-8 model (Lab 05): Task 1 (UNet, mIoU) or Task 2 (low complexity, FoM).

    python checks/check_efficient.py --task 1|2 --path model_task1.pth [--data data/cityscapes]
    python checks/check_efficient.py --task 2 MODEL_PATH DATA_PATH   (the course's positional form)
        [--split val] [--image-size 256 512] [--batch-size 8] [--device auto] [--json]

Task 1: a labkit ``UNet(classes=8)``; goal mIoU >= 0.72 on the validation split.
Task 2: a labkit ``EfficientUNet(classes=8)``, FP32 or INT8 (told apart by the file's keys); goal
mIoU >= 0.66, ranked by FoM = MACs^2 x size_KB^2 / (mIoU - 0.65), lower is better.
Widths and depth are read from the weight shapes, so any ``base_channels`` works.

The lines match the course's test: ``flops =`` is the multiply-accumulates (MACs) of one
1x3x256x512 forward pass, which thop calls FLOPs; ``Model parameter size`` is in KB (1024 bytes).
INT8 models are counted honestly, where thop reports ~0: MACs of the quantized convolutions (the
same number as the FP32 model), and bytes of the int8 weights + a float32 scale and int32 zero point
per output channel + float32 biases + each layer's output scale and zero point.

With ``--network network/network.py`` (the course's hand-in: ``load_model(MODEL_PATH)`` returns the
student's model) the model is not rebuilt by labkit: it runs in the sandbox
(labkit.grading.sandbox: no network, dataset hidden, limits), MACs and size are measured there with
labkit's counters, only logits come back, and mIoU is computed here. The verdict's JSON carries
the sandbox's record; the trust boundary and both sha256 are printed.

Exit codes: 0 goal reached, 1 below the goal, 2 invalid file, 3 dataset missing or unreadable. The file is read
with ``torch.load(weights_only=True, map_location="cpu")`` and loaded strictly into the network
labkit builds (INT8: rebuilt, prepared for QAT and converted first, then loaded).

mIoU comes from ``labkit.grading.reference`` (its own confusion matrix, never the student's code).
The UNet / EfficientUNet is built from this copy of labkit's layers; while one is still a student
TODO the check refuses (exit 3) and names the function to implement.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from torch.utils.data import DataLoader  # noqa: E402

from labkit.data.cityscapes import CATEGORY_NAMES, NUM_CLASSES, Cityscapes8  # noqa: E402
from labkit.grading.contract import CheckResult, common_parser, dataset_batches, read_submission, run_check  # noqa: E402
from labkit.grading.limits import QUANTIZED_DTYPES  # noqa: E402
from labkit.grading.reference import evaluate_multiclass_segmentation, refuse_student_todos  # noqa: E402
from labkit.grading.tasks import (COURSE_IMAGE_SIZE, COURSE_INPUT, FOM_MIOU_FLOOR, MIOU_GOALS, TASKS,  # noqa: E402
                                  fom_or_none)
from labkit.grading.student_network import sandbox_lines, sandboxed_network  # noqa: E402
from labkit.io import SubmissionError, load_into  # noqa: E402
from labkit.models.efficient_unet import EfficientUNet, efficient_unet_kwargs  # noqa: E402
from labkit.models.registry import build_model, infer_kwargs  # noqa: E402
from labkit.profile import count_macs, model_size_bytes  # noqa: E402
from labkit.quant.qat import build_int8_model, is_int8_state_dict, quiet_quantization_warnings  # noqa: E402

DEFAULT_DATA = f"data/{TASKS['efficient'].dataset}"  # relative to where the check runs


def build_parser():
    parser = common_parser(__doc__.splitlines()[0])
    parser.add_argument("--task", type=int, choices=(1, 2), required=True)
    parser.add_argument("--split", default="val", help="val/validation (either layout's name works)")
    parser.add_argument("--image-size", type=int, nargs=2, default=COURSE_IMAGE_SIZE, metavar=("H", "W"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--network", default=None,
                        help="the student's network.py (load_model(path)); graded in the sandbox")
    parser.add_argument("model_path", nargs="?", default=None,
                        help="the course's positional form: check_efficient.py --task 2 MODEL_PATH DATA_PATH")
    parser.add_argument("data_path", nargs="?", default=None, help="dataset root (positional form)")
    for action in parser._actions:
        if action.dest == "path":
            action.required = False  # --path FILE or the positional MODEL_PATH
    parser.set_defaults(data=DEFAULT_DATA)
    return parser


def resolve_paths(args):
    """``--path``/``--data`` or the course's positional ``MODEL_PATH DATA_PATH``; one of each at most."""
    if args.model_path is not None:
        if args.path is not None:
            raise SubmissionError("give the model file once: --path FILE or MODEL_PATH, not both")
        args.path = args.model_path
    if args.data_path is not None:
        args.data = args.data_path
    if args.path is None:
        raise SubmissionError("no model file given: check_efficient.py --task 1|2 MODEL_PATH DATA_PATH "
                              "(or --path FILE --data ROOT)")
    return args


def build_submitted_model(task: int, state: dict):
    """The labkit network the file belongs to, with its weights loaded; and a description."""
    int8 = is_int8_state_dict(state)
    if task == 1:
        kwargs = infer_kwargs("unet", state)
        if int8 or not kwargs:
            raise SubmissionError("Task 1 expects the state_dict of a float labkit UNet(classes=8) "
                                  f"(first keys: {sorted(state)[:3]}); Task 2 models go with --task 2")
        return load_into(build_model("unet", **kwargs), state), f"UNet {kwargs}", int8, kwargs
    kwargs = efficient_unet_kwargs(state)
    if not kwargs:
        raise SubmissionError("Task 2 expects the state_dict of a labkit EfficientUNet, FP32 or INT8 "
                              f"(first keys: {sorted(state)[:3]}); a UNet goes with --task 1")
    model = build_int8_model(**kwargs) if int8 else EfficientUNet(**kwargs)
    return load_into(model, state), f"EfficientUNet {kwargs}, {'INT8' if int8 else 'FP32'}", int8, kwargs


def city_batches(args):
    return dataset_batches(lambda: DataLoader(Cityscapes8(args.data, args.split, image_size=tuple(args.image_size)),
                                              batch_size=args.batch_size, shuffle=False), where=args.data)


def evaluate_network(args) -> CheckResult:
    """The student's network.py in the sandbox: MACs/size from there, mIoU computed in this process."""
    loader = city_batches(args)  # a dataset problem is found before the student's code starts
    with sandboxed_network(args.network, args.path, data=args.data, memory=args.memory,
                           input_size=COURSE_INPUT) as model:
        scores = evaluate_multiclass_segmentation(model, loader, num_classes=NUM_CLASSES, device="cpu")
    result = model.result
    described = f"your network.py ({args.network}){', quantized' if result.quantized else ''}"
    verdict = grade(args, scores, loader.dataset, description=described, macs=result.macs,
                    size_kb=result.size_bytes / 1024, int8=bool(result.quantized), notes=[])
    verdict.metrics["sandbox"] = result.to_dict()
    verdict.message += "\n" + "\n".join(sandbox_lines(result))
    return verdict


def evaluate_submission(args) -> CheckResult:
    args = resolve_paths(args)
    if args.network:
        return evaluate_network(args)
    notes: list[str] = []
    with quiet_quantization_warnings():  # reading quantized tensors warns about TypedStorage
        state = read_submission(args.path, allowed_dtypes=QUANTIZED_DTYPES, notes=notes)
    with refuse_student_todos("UNet" if args.task == 1 else "EfficientUNet"):  # the layers are the student's
        model, description, int8, kwargs = build_submitted_model(args.task, state)
    if kwargs["classes"] != NUM_CLASSES:
        raise SubmissionError(f"the model has {kwargs['classes']} output channels; Cityscapes-8 needs "
                              f"classes={NUM_CLASSES} ({', '.join(CATEGORY_NAMES)})")
    device = args.device
    if int8 and device != "cpu":
        device = "cpu"  # torch.ao INT8 kernels run on the CPU only
        if args.device == "cuda":
            notes.append("INT8 models run on the CPU; --device cuda was ignored")
    with refuse_student_todos("UNet" if args.task == 1 else "EfficientUNet"):  # mIoU: labkit.grading.reference
        macs = count_macs(model, input_size=COURSE_INPUT)
        size_kb = model_size_bytes(model) / 1024
        loader = city_batches(args)
        scores = evaluate_multiclass_segmentation(model, loader, num_classes=NUM_CLASSES, device=device)
    return grade(args, scores, loader.dataset, description=description, macs=macs, size_kb=size_kb, int8=int8,
                 notes=notes)


def grade(args, scores: dict, dataset, *, description: str, macs: int, size_kb: float, int8: bool,
          notes: list) -> CheckResult:
    """The verdict (the course's lines) from the scores and the measured MACs and size."""
    miou, goal = scores["mIoU"], MIOU_GOALS[args.task]
    passed = miou >= goal

    lines = [f"Task {args.task}: {description}",
             f"flops ={macs}",
             f"Model parameter size ={size_kb:.3f} KB",
             f"Final IoU = {miou:.6f}"]
    metrics = {"miou": miou, "macs": macs, "size_kb": size_kb, "int8": int8,
               "overall_accuracy": scores["OverallAcc"], "mean_accuracy": scores["MeanAcc"],
               "class_iou": dict(zip(CATEGORY_NAMES, scores["ClassIoU"])),
               "images": len(dataset), "split": dataset.split, "image_size": list(args.image_size)}
    if args.task == 2:
        metrics["fom"] = fom_or_none(macs, size_kb, miou)
        lines.append(f"FoM = {metrics['fom']:.4e}  (flops^2 x KB^2 / (mIoU - {FOM_MIOU_FLOOR}); lower is better)"
                     if metrics["fom"] is not None else f"FoM = undefined (it needs mIoU > {FOM_MIOU_FLOOR})")
        if int8:
            lines.append("INT8 counted honestly: MACs of the quantized convs; size = int8 weights + "
                         "per-channel scale/zero point + float32 biases + output qparams.")
    lines.append("IoU per category: " + ", ".join(f"{name} {iou:.3f}" for name, iou in
                                                  zip(CATEGORY_NAMES, scores["ClassIoU"])))
    lines.append(f"({len(dataset)} images of split {dataset.split!r} at "
                 f"{args.image_size[0]}x{args.image_size[1]}, {dataset.layout} layout)")
    if passed:
        lines.append("Congratulations! You've achieved the goals of this task.")
    else:
        lines += ["Oops! Something is wrong!",
                  f"Your mIoU is {miou:.4f}, below the goal of {goal:.2f} for Task {args.task}."]
    return CheckResult(f"efficient-task{args.task}", passed, "\n".join(lines), metrics=metrics, notes=notes)


def main(argv=None) -> int:
    return run_check("efficient", build_parser(), evaluate_submission, argv)


if __name__ == "__main__":
    sys.exit(main())
