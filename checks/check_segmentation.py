"""Grade a binary-segmentation model (Labs 01 and 02) on the Oxford-IIIT Pet test split.

    python checks/check_segmentation.py --path saved_models/unet.pth [--model unet|resnet34_unet]
        [--network network/network.py] [--data data/oxford-iiit-pet] [--image-size 256]
        [--batch-size 8] [--device auto] [--memory 6G] [--json] [--sandbox-gpu]

With ``--network`` the student's own ``network.py`` (``load_model(path)`` returns the model) is
imported in a sandbox (labkit.grading.sandbox: no network, dataset hidden, limits) and only its
logits come back; Dice is computed here. The verdict's JSON carries the sandbox's record.

The course's tiers: Dice >= 0.90 full marks, >= 0.85 80%, >= 0.80 60%, else 0. Exit code 0 when the
goal is reached (Dice >= 0.90: full marks), 1 below it (the verdict and ``--json``'s ``credit`` give the
partial credit: 0.8, 0.6 or 0), 2 for an invalid file, 3 when the dataset is missing.
The file is read with ``torch.load(weights_only=True, map_location="cpu")`` and loaded strictly into
the network labkit builds (widths read from the file's weight shapes).

Dice is computed by ``labkit.grading.reference`` (never by ``labkit.metrics.dice_score``, which the
student edition leaves to the student). The network is labkit's UNet / ResNet34-UNet built from the
layers of this copy of labkit; while one of them is still a student TODO the check refuses (exit 3)
and names the function to implement.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from torch.utils.data import DataLoader  # noqa: E402

from labkit.data import pets  # noqa: E402
from labkit.grading.contract import CheckResult, common_parser, dataset_batches, read_submission, run_check  # noqa: E402
from labkit.grading.reference import evaluate_segmentation, refuse_student_todos  # noqa: E402
from labkit.grading.tasks import TASKS, credit_for  # noqa: E402
from labkit.grading.student_network import sandbox_lines, sandboxed_network  # noqa: E402
from labkit.io import SubmissionError, load_into  # noqa: E402
from labkit.models.registry import SEGMENTATION_MODELS, build_model, infer_kwargs  # noqa: E402
from labkit.selfcheck.layout import course_layouts, layout_difference, layout_of  # noqa: E402

DEFAULT_DATA = f"data/{TASKS['segmentation'].dataset}"  # relative to where the check runs; tiers: credit_for


def build_parser():
    parser = common_parser(__doc__.splitlines()[0], batch_size=8)
    parser.add_argument("--model", default="unet", choices=SEGMENTATION_MODELS)
    parser.add_argument("--image-size", type=int, default=256, help="evaluate at this square size")
    parser.add_argument("--network", default=None,
                        help="the student's network.py (load_model(path)); graded in the sandbox")
    parser.set_defaults(data=DEFAULT_DATA)
    return parser


def pets_test_batches(args):
    return dataset_batches(lambda: DataLoader(pets.OxfordIIITPet(args.data, "test", image_size=args.image_size),
                                              batch_size=args.batch_size, shuffle=False), where=args.data)


def verdict(dice: float, described: str, test_set, args, notes, extra: dict | None = None) -> CheckResult:
    credit, tier = credit_for(dice)
    message = (f"Model: {described}\n"
               f"Dice on the test split ({len(test_set)} images, {args.image_size}x{args.image_size}): "
               f"{dice:.4f} -> {tier}")
    metrics = {"dice": dice, "credit": credit, "test_images": len(test_set)} | (extra or {})
    return CheckResult("segmentation", credit == 1.0, message, notes=notes, metrics=metrics)  # 0: the goal


def evaluate_network(args) -> CheckResult:
    """The student's network.py in the sandbox; Dice computed in this process."""
    notes: list[str] = []
    loader = pets_test_batches(args)  # a dataset problem is found before the student's code starts
    with sandboxed_network(args.network, args.path, data=args.data, memory=args.memory,
                           input_size=(1, 3, args.image_size, args.image_size), images=len(loader.dataset),
                           gpu=args.sandbox_gpu) as model:
        dice = evaluate_segmentation(model, loader, device="cpu")["dice"]
    result = verdict(dice, f"your network.py ({args.network})", loader.dataset, args, notes,
                     {"sandbox": model.result.to_dict()})
    result.message += "\n" + "\n".join(sandbox_lines(model.result))
    return result


def layout_refusal(state, model: str) -> str:
    """Why ``state`` does not load into the course's ``model``: the other model, or the first differing key."""
    other = [name for name in SEGMENTATION_MODELS if name != model and infer_kwargs(name, state)]
    if other:
        return f"this file is a {other[0]} state_dict, not a {model} one: grade it with --model {other[0]}"
    difference = layout_difference(layout_of(state), course_layouts()[model], sizes_may_differ=True)
    if difference is None:
        return (f"this file does not look like a labkit {model} state_dict (first keys: {sorted(state)[:4]}): "
                "hand in the state_dict of the trained model (save_state_dict(model, path))")
    return (f"this file's state_dict is not in the course's {model} layout, which the TA's check loads "
            f"strictly: {difference}. Fix the module, run `python -m labkit selfcheck "
            f"{'01' if model == 'unet' else '02'}` and train again")


def evaluate_submission(args) -> CheckResult:
    if args.network:
        return evaluate_network(args)
    notes: list[str] = []
    state = read_submission(args.path, notes=notes)
    kwargs = infer_kwargs(args.model, state)
    if not kwargs:
        raise SubmissionError(layout_refusal(state, args.model))
    if kwargs.get("classes") != 1:
        raise SubmissionError(f"the model has {kwargs.get('classes')} output channels; the binary task "
                              "uses ONE logit channel (classes=1, logit > 0 is the pet)")
    with refuse_student_todos(args.model):  # its layers are the student's; Dice is labkit.grading.reference's
        model = load_into(build_model(args.model, **kwargs), state)
        loader = pets_test_batches(args)
        dice = evaluate_segmentation(model, loader, device=args.device)["dice"]
    return verdict(dice, f"{args.model} {kwargs}", loader.dataset, args, notes)


def main(argv=None) -> int:
    return run_check("segmentation", build_parser(), evaluate_submission, argv)


if __name__ == "__main__":
    sys.exit(main())
