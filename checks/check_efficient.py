"""Grade a Cityscapes-8 model (Lab 05): Task 1 (UNet, mIoU) or Task 2 (low complexity, FoM).

    python checks/check_efficient.py --task 1|2 --path model_task1.pth [--data data/cityscapes]
    python checks/check_efficient.py --task 2 MODEL_PATH DATA_PATH   (the course's positional form)
        [--split val] [--image-size 256 512] [--batch-size 8] [--device auto] [--json] [--sandbox-gpu]

Task 1: goal mIoU >= 0.72 on the validation split; labkit's reference network is ``UNet(classes=8)``.
Task 2: labkit's reference network is ``EfficientUNet(classes=8)``, FP32 or INT8 (told apart by the file's keys); goal
mIoU >= 0.66, ranked by FoM = MACs^2 x size_KB^2 / (mIoU - 0.65), lower is better.
Widths and depth are read from the weight shapes, so any ``base_channels`` works.

The lines match the course's test: ``flops =`` is the multiply-accumulates (MACs) of one
1x3x256x512 forward pass, which thop calls FLOPs; ``Model parameter size`` is in KB (1024 bytes).
INT8 models are counted honestly, where thop reports ~0: MACs of the quantized convolutions (the
same number as the FP32 model), and bytes of the int8 weights + a float32 scale and int32 zero point
per output channel + float32 biases + each layer's output scale and zero point.

The architecture is the hand-in's own, as in the course ("using your ./network/network.py &
model_task1.pth"): the check uses ``network/network.py`` (Task 1) or ``network2/network.py`` (Task 2)
beside the weights file, or the file ``--network`` names (which wins). Its ``load_model(MODEL_PATH)``
runs in the sandbox (labkit.grading.sandbox: no network, dataset hidden, limits; torch, torchvision
and numpy only, ``import labkit`` refused), MACs and size are measured there with labkit's counters,
only logits come back, and mIoU is computed here. The verdict's JSON carries the sandbox's record;
the trust boundary and both sha256 are printed. Without any network.py the file is loaded into
labkit's reference network (below), and the verdict says so.

Every route says the same about a student's model: a state_dict that does not load lists the missing
and unexpected keys and the wrong shapes (the first ten of each and a count; ``load_errors`` in
``--json``); an output channel count other than 8 is graded with a note saying what it means
(labkit.grading.categories); torch's INT8 dispatcher errors become what to fix
(labkit.grading.network_faults).

Evaluation size: ``--image-size``, else the course's 256x512, except for a SMOKE hand-in: a network.py
that says ``SMOKE_IMAGE_SIZE = (H, W)`` (written by labkit for a SMOKE run) is graded at that size when
the dataset's frames have it (labkit's synthetic fixture), and the verdict says that missing the goal
on synthetic data is expected.

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

from labkit.data.cityscapes import CATEGORY_NAMES, Cityscapes8  # noqa: E402
from labkit.grading.categories import GRADED_CLASSES, CategoryLogits, category_scores, channel_note  # noqa: E402
from labkit.grading.contract import (EXIT_INVALID, CheckResult, common_parser, dataset_batches,  # noqa: E402
                                     read_submission, run_check)
from labkit.grading.network_faults import compare_state_dicts  # noqa: E402
from labkit.grading.limits import QUANTIZED_DTYPES  # noqa: E402
from labkit.grading.reference import evaluate_multiclass_segmentation, refuse_student_todos  # noqa: E402
from labkit.grading.tasks import (COURSE_IMAGE_SIZE, COURSE_INPUT, FOM_MIOU_FLOOR, MIOU_GOALS, TASKS,  # noqa: E402
                                  fom_or_none)
from labkit.grading.student_network import (NETWORK_FOLDERS, network_beside, sandbox_lines,  # noqa: E402
                                             sandboxed_network, smoke_image_size)
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
    parser.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help=f"evaluation size (default {COURSE_IMAGE_SIZE[0]} {COURSE_IMAGE_SIZE[1]}, the course's; "
                             "a SMOKE network.py's own size on the fixture it was trained on)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--network", default=None,
                        help="the student's network.py (load_model(path)), graded in the sandbox; default: "
                             "network/network.py (Task 1) or network2/network.py (Task 2) beside the weights")
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


REFERENCE = {1: "UNet", 2: "EfficientUNet"}


class NotLoaded(SubmissionError):
    """The file does not fit the network: ``details`` carries the key lists for ``--json``."""

    def __init__(self, message: str, details: dict):
        super().__init__(message)
        self.details = details


def reference_line(args) -> str:
    """What the verdict says when no network.py was found: the kit's network was graded, not the student's."""
    folder = NETWORK_FOLDERS[args.task]
    return (f"Graded with labkit's reference {REFERENCE[args.task]} (no {folder}/network.py beside "
            f"{Path(args.path).name}, no --network). The course grades your own network: hand in "
            f"{folder}/network.py beside the weights (./{folder}/network.py & {Path(args.path).name}).")


def _load(model, state: dict, description: str, task: int):
    """``load_into`` after listing any mismatch the way every route lists it (first ten of each, counts)."""
    report = compare_state_dicts(model.state_dict(), state, model=description)
    report.advice = (f"the file does not fit labkit's {description}; if it holds your own network, hand in "
                     f"{NETWORK_FOLDERS[task]}/network.py beside it (the course grades your network.py), "
                     "else save the state_dict of the model labkit's constructor built")
    if report:
        raise NotLoaded(report.message(f"labkit's reference {description} (your file's widths and depth)"),
                        {"load_errors": report.to_dict()})
    return load_into(model, state)


def build_submitted_model(task: int, state: dict):
    """The labkit network the file belongs to, with its weights loaded; and a description."""
    int8 = is_int8_state_dict(state)
    folder = NETWORK_FOLDERS[task]
    if task == 1:
        kwargs = infer_kwargs("unet", state)
        if int8 or not kwargs:
            raise SubmissionError("Task 1 expects your network/network.py beside the file, or the state_dict of a "
                                  f"float labkit UNet(classes=8) (first keys: {sorted(state)[:3]}); put "
                                  f"{folder}/network.py beside it, or pass --network. Task 2 models go with --task 2")
        return _load(build_model("unet", **kwargs), state, "UNet", task), f"UNet {kwargs}", int8, kwargs
    kwargs = efficient_unet_kwargs(state)
    if not kwargs:
        raise SubmissionError("Task 2 expects your network2/network.py beside the file, or the state_dict of a "
                              f"labkit EfficientUNet, FP32 or INT8 (first keys: {sorted(state)[:3]}); put "
                              f"{folder}/network.py beside it, or pass --network. A UNet goes with --task 1")
    model = build_int8_model(**kwargs) if int8 else EfficientUNet(**kwargs)
    return (_load(model, state, "EfficientUNet", task), f"EfficientUNet {kwargs}, {'INT8' if int8 else 'FP32'}",
            int8, kwargs)


def _frame_size(args) -> tuple[int, int]:
    """(H, W) of the first frame of the split, read from its header."""
    from PIL import Image
    with Image.open(Cityscapes8(args.data, args.split, image_size=None).samples[0][0]) as image:
        return image.size[1], image.size[0]


def evaluation_size(args, network) -> list[str]:
    """Set ``args.image_size`` (``--image-size``, a SMOKE file's own size on its fixture, else the course's);
    the verdict's lines about a SMOKE hand-in."""
    claimed = smoke_image_size(network) if network else None
    given = args.image_size is not None
    if not given:
        args.image_size = list(COURSE_IMAGE_SIZE)
        if claimed:
            frames = dataset_batches(lambda: _frame_size(args), where=args.data).loader
            if tuple(frames) == claimed:
                args.image_size = list(claimed)
    if not claimed:
        return []
    size = f"{args.image_size[0]}x{args.image_size[1]}"
    why = ("--image-size" if given else "the size it was trained at" if tuple(args.image_size) == claimed
           else f"the course's size: these frames are not the fixture's {claimed[0]}x{claimed[1]}")
    return [f"SMOKE hand-in: network.py says it was trained by a SMOKE run on labkit's synthetic fixture at "
            f"{claimed[0]}x{claimed[1]} (SMOKE_IMAGE_SIZE); graded at {size} ({why}). On synthetic data, missing "
            f"the goal is expected: the goals are for the real Cityscapes at {COURSE_IMAGE_SIZE[0]}x"
            f"{COURSE_IMAGE_SIZE[1]}, and a SMOKE run only shows that the pipeline learns."]


def city_batches(args):
    return dataset_batches(lambda: DataLoader(Cityscapes8(args.data, args.split, image_size=tuple(args.image_size)),
                                              batch_size=args.batch_size, shuffle=False), where=args.data)


def score(model, loader, device: str) -> tuple[dict, list[str]]:
    """mIoU of the 8 categories (labkit.grading.reference), whatever the model's channel count; and the note
    that count needs (labkit.grading.categories: the same on every route)."""
    counted = CategoryLogits(model)
    scores = category_scores(evaluate_multiclass_segmentation(counted, loader, num_classes=GRADED_CLASSES,
                                                              device=device))
    share = counted.no_category_pixels / counted.pixels if counted.pixels else None
    note = channel_note(counted.channels, share)
    scores["channels"] = counted.channels
    return scores, [note] if note else []


def evaluate_network(args, network: Path, *, beside: bool) -> CheckResult:
    """The student's network.py in the sandbox: MACs/size from there, mIoU computed in this process."""
    smoke = evaluation_size(args, network)
    loader = city_batches(args)  # a dataset problem is found before the student's code starts
    with sandboxed_network(network, args.path, data=args.data, memory=args.memory, input_size=COURSE_INPUT,
                           images=len(loader.dataset), image_size=tuple(args.image_size), gpu=args.sandbox_gpu) as model:
        scores, notes = score(model, loader, "cpu")
    result = model.result
    found = f"{NETWORK_FOLDERS[args.task]}/network.py beside the weights" if beside else f"--network {network}"
    described = f"your network.py ({found}){', quantized' if result.quantized else ''}"
    verdict = grade(args, scores, loader.dataset, description=described, macs=result.macs,
                    size_kb=result.size_bytes / 1024, int8=bool(result.quantized), notes=[], lines=notes + smoke,
                    smoke=bool(smoke))
    verdict.metrics["sandbox"] = result.to_dict()
    verdict.metrics["architecture"] = "network.py"
    verdict.message += "\n" + "\n".join(sandbox_lines(result))
    return verdict


def evaluate_reference(args) -> CheckResult:
    """No network.py: the file loaded into labkit's reference network, which the verdict says."""
    evaluation_size(args, None)
    notes: list[str] = []
    with quiet_quantization_warnings():  # reading quantized tensors warns about TypedStorage
        state = read_submission(args.path, allowed_dtypes=QUANTIZED_DTYPES, notes=notes)
    with refuse_student_todos(REFERENCE[args.task]):  # the layers are the student's
        model, description, int8, kwargs = build_submitted_model(args.task, state)
    device = args.device
    if int8 and device != "cpu":
        device = "cpu"  # torch.ao INT8 kernels run on the CPU only
        if args.device == "cuda":
            notes.append("INT8 models run on the CPU; --device cuda was ignored")
    with refuse_student_todos(REFERENCE[args.task]):  # mIoU: labkit.grading.reference
        macs = count_macs(model, input_size=COURSE_INPUT)
        size_kb = model_size_bytes(model) / 1024
        loader = city_batches(args)
        scores, channel_lines = score(model, loader, device)
    verdict = grade(args, scores, loader.dataset, description=description, macs=macs, size_kb=size_kb, int8=int8,
                    notes=notes, lines=channel_lines + [reference_line(args)])
    verdict.metrics["architecture"] = f"labkit {REFERENCE[args.task]}"
    return verdict


def evaluate_submission(args) -> CheckResult:
    args = resolve_paths(args)
    try:
        network, beside = (Path(args.network), False) if args.network else (network_beside(args.path, args.task), True)
        if network is not None:
            return evaluate_network(args, network, beside=beside)
        return evaluate_reference(args)
    except SubmissionError as error:
        details = getattr(error, "details", None)
        if not details:
            raise
        return CheckResult(f"efficient-task{args.task}", False, f"Oops! Something is wrong!\n{error}",
                           metrics=details, exit_code=EXIT_INVALID)


def grade(args, scores: dict, dataset, *, description: str, macs: int, size_kb: float, int8: bool,
          notes: list, lines: list = (), smoke: bool = False) -> CheckResult:
    """The verdict (the course's lines) from the scores and the measured MACs and size; ``lines``: what the
    route adds (channel count, reference network, SMOKE), printed before the verdict's last lines."""
    miou, goal = scores["mIoU"], MIOU_GOALS[args.task]
    passed = miou >= goal

    text = [f"Task {args.task}: {description}",
            f"flops ={macs}",
            f"Model parameter size ={size_kb:.3f} KB",
            f"Final IoU = {miou:.6f}"]
    metrics = {"miou": miou, "macs": macs, "size_kb": size_kb, "int8": int8,
               "overall_accuracy": scores["OverallAcc"], "mean_accuracy": scores["MeanAcc"],
               "class_iou": dict(zip(CATEGORY_NAMES, scores["ClassIoU"])), "output_channels": scores.get("channels"),
               "images": len(dataset), "split": dataset.split, "image_size": list(args.image_size)}
    if args.task == 2:
        metrics["fom"] = fom_or_none(macs, size_kb, miou)
        text.append(f"FoM = {metrics['fom']:.4e}  (flops^2 x KB^2 / (mIoU - {FOM_MIOU_FLOOR}); lower is better)"
                    if metrics["fom"] is not None else f"FoM = undefined (it needs mIoU > {FOM_MIOU_FLOOR})")
        if int8:
            text.append("INT8 counted honestly: MACs of the quantized convs; size = int8 weights + "
                        "per-channel scale/zero point + float32 biases + output qparams.")
    text.append("IoU per category: " + ", ".join(f"{name} {iou:.3f}" for name, iou in
                                                 zip(CATEGORY_NAMES, scores["ClassIoU"])))
    text.append(f"({len(dataset)} images of split {dataset.split!r} at "
                f"{args.image_size[0]}x{args.image_size[1]}, {dataset.layout} layout)")
    text += [f"note: {line}" for line in lines]
    if passed:
        text.append("Congratulations! You've achieved the goals of this task.")
    else:
        text += ["Oops! Something is wrong!",
                 f"Your mIoU is {miou:.4f}, below the goal of {goal:.2f} for Task {args.task}"
                 + (" (expected for a SMOKE run on synthetic data: the goal is for real data)." if smoke else ".")]
    return CheckResult(f"efficient-task{args.task}", passed, "\n".join(text), metrics=metrics, notes=notes)


def main(argv=None) -> int:
    return run_check("efficient", build_parser(), evaluate_submission, argv)


if __name__ == "__main__":
    sys.exit(main())
