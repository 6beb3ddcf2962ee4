"""Training minutes of a recipe on a GPU, estimated from the work per image: an ESTIMATE, not a measurement.

No GPU has run labkit's GPU recipes yet; they are sized with this estimate to fit a Colab session
on a T4 (at most 75 minutes of training per notebook). Per training phase (one model, its images,
epochs and batch size, validated every epoch):

    seconds per epoch = images x max(compute, memory) + steps x host
    compute = MACs x 2 FLOP x passes / (peak FLOP/s x utilisation)
    memory  = activations x element bytes x 2 (written, read) x passes / (bandwidth x share)

with 3 passes per training image (the forward, and the backward's two products) and 1 per
validation image. MACs and activations (the elements of every layer's output) are counted on the
meta device (:func:`image_cost`), so nothing is computed.

The T4's figures and where they come from (:data:`T4`): NVIDIA's T4 datasheet gives 65 TFLOPS
float16 with tensor cores, 8.1 TFLOPS float32, 320 GB/s. Utilisation 10-15 % of that peak:
NVIDIA's DeepLearningExamples (PyTorch ResNet-50 v1.5 README) measure 1,190 images/s of
mixed-precision inference on a T4 at batch 128, i.e. 1,190 x 4.1 GMACs x 2 = 9.8 TFLOPS, 15 % of
peak; training is assumed to do no better, and 10 % is the pessimistic end. Memory at 50-70 % of
the bandwidth, and 10-20 ms per step for Python and kernel launches: assumptions, not measured.
Left out: data loading (Colab has 2 vCPUs; the cached data sets need little work per image),
the first epoch's warm-up, the final test evaluation and checks. ``benchmarks/bench_gpu_budget.py``
writes the README's recipe table from this; a GPU, when one is lent, gives the real images/s.

Example (notebook 01's GPU recipe: UNet-64 at 256x256, 25 epochs on the Pets train split):
    >>> from labkit.models.unet import UNet
    >>> macs, activations = image_cost(lambda: UNet(base_channels=64), (3, 256, 256))
    >>> macs, activations
    (48167387136, 105840640)
    >>> phase = Phase("UNet-64", macs, activations, train_images=3312, valid_images=368, epochs=25, batch_size=16)
    >>> [round(m, 1) for m in estimate_minutes([phase])]   # T4: (optimistic, pessimistic)
    [43.3, 65.4]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from labkit.profile import count_macs

TRAIN_PASSES, VALID_PASSES = 3, 1
COLAB_SESSION_MINUTES = 75  # the training a FULL GPU recipe may take on a T4 (issue 36)


@dataclass(frozen=True)
class GPU:
    """A GPU's peaks and the (optimistic, pessimistic) share of them a conv net's training reaches."""
    name: str
    float16_flops: float  # FLOP/s with tensor cores
    float32_flops: float
    bandwidth: float      # bytes/s
    utilisation: tuple[float, float]      # share of the FLOP/s peak
    bandwidth_share: tuple[float, float]  # share of the bandwidth
    host_seconds_per_step: tuple[float, float]
    source: str


T4 = GPU("NVIDIA T4 (Colab)", 65e12, 8.1e12, 320e9, (0.15, 0.10), (0.7, 0.5), (0.010, 0.020),
         source="T4 datasheet peaks; 10-15 % utilisation from NVIDIA DeepLearningExamples' ResNet-50 v1.5 "
                "T4 AMP inference, 1,190 img/s at batch 128 (9.8 TFLOPS, 15 %); memory share and host time assumed")


@dataclass(frozen=True)
class Phase:
    """One model trained for ``epochs`` on ``train_images``, validated on ``valid_images`` each epoch."""
    name: str
    macs: int         # forward MACs per image
    activations: int  # elements of every layer's output per image, forward
    train_images: int
    valid_images: int
    epochs: int
    batch_size: int
    precision: str = "float16"  # "float32" for quantization-aware training (fake quantization)

    @property
    def steps_per_epoch(self) -> int:
        return self.train_images // self.batch_size  # the last partial batch is dropped


def image_cost(build: Callable[[], nn.Module], image_shape: Sequence[int], *, device="meta") -> tuple[int, int]:
    """``(MACs, activations)`` of one image of ``image_shape`` (C, H, W) through ``build()``'s model.

    The model is built on ``device`` (the meta device: shapes only, nothing computed); a model that
    cannot run there (fake quantization) is measured on ``device="cpu"``.
    """
    with torch.device(device):
        model = build().eval()
    image = torch.zeros(1, *image_shape, device=device)
    elements = 0

    def count(module, inputs, output):
        nonlocal elements
        elements += output.numel() if isinstance(output, torch.Tensor) else 0
    leaves = [module for module in model.modules() if not any(module.children())]
    handles = [module.register_forward_hook(count) for module in leaves]
    try:
        with torch.no_grad():
            model(image)
    finally:
        for handle in handles:
            handle.remove()
    return count_macs(model, image), elements


def phase_seconds(phase: Phase, gpu: GPU = T4) -> tuple[float, float]:
    """Estimated ``(optimistic, pessimistic)`` seconds of ``phase`` on ``gpu``."""
    peak, element_bytes = ((gpu.float16_flops, 2) if phase.precision == "float16" else (gpu.float32_flops, 4))
    passes = phase.train_images * TRAIN_PASSES + phase.valid_images * VALID_PASSES
    seconds = []
    for utilisation, share, host in zip(gpu.utilisation, gpu.bandwidth_share, gpu.host_seconds_per_step):
        compute = phase.macs * 2 * passes / (peak * utilisation)
        memory = phase.activations * element_bytes * 2 * passes / (gpu.bandwidth * share)
        seconds.append(phase.epochs * (max(compute, memory) + phase.steps_per_epoch * host))
    return seconds[0], seconds[1]


def estimate_minutes(phases: Sequence[Phase], gpu: GPU = T4) -> tuple[float, float]:
    """Estimated ``(optimistic, pessimistic)`` training minutes of ``phases`` one after another."""
    both = [phase_seconds(phase, gpu) for phase in phases]
    return sum(fast for fast, _ in both) / 60, sum(slow for _, slow in both) / 60


def bound_by(phase: Phase, gpu: GPU = T4) -> str:
    """``"compute"`` or ``"memory"``: which term sets the pessimistic estimate of ``phase``.

    Example:
        >>> bound_by(Phase("depthwise", macs=10**9, activations=10**8, train_images=1, valid_images=0,
        ...                epochs=1, batch_size=1))
        'memory'
    """
    flops = gpu.float16_flops if phase.precision == "float16" else gpu.float32_flops
    element_bytes = 2 if phase.precision == "float16" else 4
    compute = phase.macs * 2 / (flops * gpu.utilisation[1])
    memory = phase.activations * element_bytes * 2 / (gpu.bandwidth * gpu.bandwidth_share[1])
    return "compute" if compute >= memory else "memory"
