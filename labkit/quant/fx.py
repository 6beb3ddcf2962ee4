"""Post-training INT8 quantization with torch's FX graph mode, and the calibration-size sweep.

The course's recipe: ``QConfigMapping().set_global(get_default_qconfig(backend))``, ``prepare_fx``
(inserts observers), run calibration images (training split only), ``convert_fx`` (int8 kernels).
torch.ao warns on every call that it is deprecated (and about ``reduce_range``); labkit hides
those warnings inside its own functions only (``quiet_quantization_warnings``), so notebook output
stays readable without silencing anything for the rest of the notebook.

Example:
    >>> import torch
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> from labkit.models.resnet20 import resnet20
    >>> images = TensorDataset(torch.randn(16, 3, 32, 32), torch.zeros(16, dtype=torch.long))
    >>> int8_model = quantize_fx(resnet20(), DataLoader(images, batch_size=8), num_images=16)
    >>> int8_model(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""
from __future__ import annotations

import copy
import time

import torch
from torch import nn
from torch.ao.quantization import QConfigMapping, get_default_qconfig
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from labkit.evaluate import evaluate_classification
from labkit.profile import latency, state_dict_size_bytes
from labkit.quant.qat import quiet_quantization_warnings, set_backend


@torch.no_grad()
def quantize_fx(model: nn.Module, calibration_loader, *, num_images: int | None = None,
                backend: str = "fbgemm", progress: bool = False) -> nn.Module:
    """INT8 copy of ``model`` (the original is untouched): prepare_fx, calibrate, convert_fx.

    Args:
        model: a float model (e.g. ResNet-20); it runs on the CPU.
        calibration_loader: yields ``(images (N, 3, H, W), labels)`` from the training split.
        num_images: calibrate on the first ``num_images`` images (None: the whole loader).
        backend: ``"fbgemm"`` (the course's) or ``"x86"``; sets the process's quantized engine
            (``torch.backends.quantized.engine``), which the converted model needs to run.

    Returns the converted ``GraphModule``; it takes and returns float tensors (the quantize /
    dequantize steps are inside).
    """
    set_backend(backend)
    model = copy.deepcopy(model).cpu().eval()
    example_images = next(iter(calibration_loader))[0][:1]
    with quiet_quantization_warnings():
        qconfig_mapping = QConfigMapping().set_global(get_default_qconfig(backend))
        prepared = prepare_fx(model, qconfig_mapping, example_inputs=(example_images,))
        seen = 0
        for images, _ in tqdm(calibration_loader, desc="calibrate", leave=False, disable=not progress):
            if num_images is not None:
                images = images[:num_images - seen]
            prepared(images)  # the observers record each activation's min and max
            seen += len(images)
            if num_images is not None and seen >= num_images:
                break
        return convert_fx(prepared)


def calibration_loader(train_dataset, num_images: int, *, seed: int = 0, batch_size: int = 128) -> DataLoader:
    """The first ``num_images`` of a seeded random permutation of ``train_dataset``, in batches.

    The same ``seed`` gives nested sets: the 10 images of a small calibration set are also the
    first 10 of a larger one. Pass the training split without augmentation.
    """
    if not 1 <= num_images <= len(train_dataset):
        raise ValueError(f"calibration sizes must be between 1 and the {len(train_dataset)} training "
                         f"images, got {num_images}")
    order = torch.randperm(len(train_dataset), generator=torch.Generator().manual_seed(seed))
    return DataLoader(Subset(train_dataset, order[:num_images].tolist()), batch_size=batch_size)


# The course's sweep; default_calibration_sizes ends it at however many training images there are.
SWEEP_SIZES = (1, 5, 10, 50, 100, 500, 1000, 5000, 10000)


def default_calibration_sizes(num_images: int, *, sizes=SWEEP_SIZES) -> list[int]:
    """The sweep for a training set of ``num_images``: the ``sizes`` below it, then all of them.

    Example:
        >>> default_calibration_sizes(20000)
        [1, 5, 10, 50, 100, 500, 1000, 5000, 10000, 20000]
        >>> default_calibration_sizes(500)
        [1, 5, 10, 50, 100, 500]
    """
    if num_images < 1:
        raise ValueError(f"the calibration set is empty (num_images={num_images}); point DATA_ROOT "
                         "at a CIFAR-10 folder with training images")
    return [size for size in sizes if size < num_images] + [num_images]


def best_calibration(rows: list[dict]) -> dict:
    """The sweep row to keep: the highest ``accuracy``; on a tie, the fewer calibration images.

    Pass rows measured on a validation split: choosing on the test split would make the test
    accuracy reported afterwards optimistic.

    Example:
        >>> best_calibration([{"num_images": 10, "accuracy": 90.0}, {"num_images": 100, "accuracy": 91.0},
        ...                   {"num_images": 1000, "accuracy": 91.0}])["num_images"]
        100
    """
    if not rows:
        raise ValueError("no sweep rows to choose from; run calibration_sweep with at least one size")
    return max(rows, key=lambda row: (row["accuracy"], -row["num_images"]))


def calibration_sweep(model: nn.Module, train_dataset, eval_loader, sizes, *, seed: int = 0,
                      batch_size: int = 128, backend: str = "fbgemm", progress: bool = True) -> list[dict]:
    """Quantize ``model`` with FX for each calibration size and measure its accuracy on ``eval_loader``.

    Pass the validation loader (a split carved from the training images, disjoint from
    ``train_dataset``) when the sweep chooses a size (:func:`best_calibration`); the test split is
    for the chosen model, once. The calibration images come from :func:`calibration_loader` with
    one ``seed``, so a larger set contains every smaller one and only the size changes between
    rows. Sizes above ``len(train_dataset)`` are refused (:func:`default_calibration_sizes` gives
    a sweep that ends at all of them).

    Returns one row per size: ``{"num_images", "accuracy" (%), "seconds"}``, where ``seconds``
    is the time to prepare, calibrate and convert (not the evaluation).
    """
    too_large = [size for size in sizes if size > len(train_dataset)]
    if too_large:
        raise ValueError(f"calibration sizes {too_large} exceed the {len(train_dataset)} training images; "
                         f"use sizes up to {len(train_dataset)}, or None for the default sweep "
                         f"{default_calibration_sizes(len(train_dataset))}")
    rows = []
    for size in tqdm(sizes, desc="calibration sizes", disable=not progress):
        loader = calibration_loader(train_dataset, size, seed=seed, batch_size=batch_size)
        started = time.perf_counter()
        int8_model = quantize_fx(model, loader, num_images=size, backend=backend)
        seconds = time.perf_counter() - started
        accuracy = evaluate_classification(int8_model, eval_loader, device="cpu")["accuracy"]
        rows.append({"num_images": size, "accuracy": accuracy, "seconds": seconds})
    return rows


def measure_model(model: nn.Module, test_loader, *, example_input: torch.Tensor, repeats: int = 20,
                  device="cpu") -> dict:
    """Test accuracy (%), state_dict file size (KiB) and median CPU latency (ms) of one model.

    The same three numbers for FP32 and INT8 models, so they can sit in one table.
    ``example_input`` is the batch timed, e.g. ``torch.randn(1, 3, 32, 32)``.
    """
    with quiet_quantization_warnings():
        accuracy = evaluate_classification(model, test_loader, device=device)["accuracy"]
        timing = latency(model.cpu(), example_input.cpu(), warmup=3, repeats=repeats)
        size_kib = state_dict_size_bytes(model) / 1024
    return {"accuracy": accuracy, "state_dict_kib": size_kib, "latency_ms": timing["median_ms"],
            "threads": timing["threads"], "batch_size": timing["batch_size"]}
