"""How big and how costly is a model: parameters, MACs, bytes, latency, peak memory.

What the numbers mean, and how they relate to the course's own procedure (Cityscapes Task 2):

- **MACs** (multiply-accumulates) of the Conv and Linear layers, counted exactly. The course's
  tool, thop, also counts MACs but prints them as "FLOPs"; labkit says MACs (1 MAC = 2 FLOPs).
  thop counts ``ConvTranspose2d`` stride**2 times too high (4x at stride 2): for UNet-64 on a
  1x3x256x512 input thop 0.1.1 reports 109.476 G against the exact 96.335 G. labkit counts
  ``in_channels / groups * out_channels * kH * kW * H_in * W_in`` per transposed conv, the same
  number ``torch.utils.flop_counter.FlopCounterMode`` gives (halved).
- **Size** in bytes. For a float model it is the course's measure: the sum of
  ``nelement * element_size`` over ``parameters()`` and ``buffers()``. An eager or FX INT8 model
  keeps its weights in packed params, which are neither, so that measure reports almost nothing;
  labkit adds what an INT8 model really stores (see ``model_size_bytes``).
- **Latency**: median wall time of a forward pass under ``torch.no_grad``.

Example:
    >>> import torch
    >>> from labkit.models.unet import UNet
    >>> model = UNet(base_channels=16)
    >>> macs = count_macs(model, input_size=(1, 3, 256, 512))
    >>> size_kb = model_size_bytes(model) / 1024   # the course's FoM of the two: labkit.grading.tasks.fom
"""
from __future__ import annotations

import contextlib
import copy
import ctypes
import io
import math
import resource
import statistics
import sys
import time
from itertools import chain

import torch
import torch.ao.nn.quantized as nnq
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from labkit.device import resolve_device

# Layers whose MACs are counted; the quantized ones also cover their fused subclasses
# (ConvReLU2d, ConvAdd2d, LinearReLU, ...) and dynamic quantized Linear.
_CONV_TRANSPOSE = (nn.modules.conv._ConvTransposeNd, nnq.ConvTranspose1d, nnq.ConvTranspose2d,
                   nnq.ConvTranspose3d)
_CONV = (nn.modules.conv._ConvNd, nnq.Conv1d, nnq.Conv2d, nnq.Conv3d)
_LINEAR = (nn.Linear, nnq.Linear)
_QUANTIZED_NAMESPACES = ("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (``requires_grad`` ones only with ``trainable_only=True``).

    For INT8 models this is not the number of weights: packed weights are not parameters.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def is_quantized(model: nn.Module) -> bool:
    """True when the model holds torch.ao quantized modules (eager or FX ``convert`` output)."""
    return any(type(m).__module__.startswith(_QUANTIZED_NAMESPACES) for m in model.modules())


def _layer_macs(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    """MACs of one call of a Conv, ConvTranspose or Linear layer (float or quantized); else 0."""
    if isinstance(module, _CONV_TRANSPOSE):
        # Every input pixel is multiplied by a whole (out_channels/groups, kH, kW) kernel slice.
        kernel_slice = (module.out_channels // module.groups) * math.prod(module.kernel_size)
        return inputs[0].numel() * kernel_slice
    if isinstance(module, _CONV):
        # Every output pixel is a dot product over (in_channels/groups, kH, kW).
        kernel_slice = (module.in_channels // module.groups) * math.prod(module.kernel_size)
        return output.numel() * kernel_slice
    if isinstance(module, _LINEAR):
        return output.numel() * module.in_features
    return 0


def _model_device(model: nn.Module) -> torch.device:
    tensor = next(chain(model.parameters(), model.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def count_macs(
    model: nn.Module,
    example_input: torch.Tensor | None = None,
    *,
    input_size: tuple[int, ...] = (1, 3, 256, 256),
    method: str = "auto",
) -> int:
    """Multiply-accumulates of one forward pass (Conv, ConvTranspose, Linear, matmul layers).

    Bias additions, BatchNorm, activations, pooling and upsampling are not counted; they are a
    fraction of a percent in CNNs. (The course's Task 2 counts on a (1, 3, 256, 512) input.)

    Args:
        model: float or INT8 (torch.ao eager / FX) model. It runs once in eval mode.
        example_input: the input to run; default a zero tensor of ``input_size`` on the
            model's device.
        input_size: shape of the default input, (N, C, H, W).
        method: ``"flop_counter"``: ``torch.utils.flop_counter.FlopCounterMode`` FLOPs / 2; exact
            for float models and also sees functional calls (``F.conv2d``, ``x @ w``), but counts 0
            for quantized ops. ``"hooks"``: forward hooks on Conv*/ConvTranspose*/Linear modules,
            float and quantized (``torch.ao.nn.quantized`` Conv2d, ConvReLU2d, ConvTranspose2d,
            Linear, LinearReLU, ...). ``"auto"`` (default): hooks for models with quantized
            modules, the flop counter otherwise.

    Returns:
        The number of MACs (an int). thop calls this number "FLOPs".

    To count a large model without computing anything, build it on the meta device:
    ``with torch.device("meta"): model = UNet()``, then ``count_macs(model)`` (measured: UNet-64
    48,167,387,136 MACs at 1x3x256x256, 96,334,774,272 at 1x3x256x512).

    Example:
        >>> count_macs(nn.Conv2d(3, 8, kernel_size=3, padding=1), input_size=(1, 3, 32, 32))
        221184
    """
    if method == "auto":
        method = "hooks" if is_quantized(model) else "flop_counter"
    if method not in ("hooks", "flop_counter"):
        raise ValueError(f"method must be 'auto', 'hooks' or 'flop_counter', got {method!r}")
    if example_input is None:
        example_input = torch.zeros(input_size, device=_model_device(model))

    was_training = model.training
    model.eval()  # BatchNorm in train mode would update its running statistics
    try:
        with torch.no_grad():
            if method == "flop_counter":
                with FlopCounterMode(display=False) as counter:
                    model(example_input)
                return counter.get_total_flops() // 2
            total = 0

            def add_macs(module, inputs, output):
                nonlocal total
                total += _layer_macs(module, inputs, output)

            handles = [m.register_forward_hook(add_macs) for m in model.modules()
                       if isinstance(m, _CONV_TRANSPOSE + _CONV + _LINEAR)]
            try:
                model(example_input)
            finally:
                for handle in handles:
                    handle.remove()
            return total
    finally:
        model.train(was_training)


def _stored_tensor_bytes(tensor: torch.Tensor) -> int:
    """Bytes of a tensor's elements plus, for a quantized tensor, its quantization parameters.

    qparams count as a float32 scale and an int32 zero point: 8 bytes per output channel for
    per-channel quantization, 8 bytes per tensor otherwise. (torch keeps per-channel scales as
    float64 and zero points as int64 in memory; 4 + 4 bytes is what a deployed model needs.)
    """
    size = tensor.nelement() * tensor.element_size()
    if tensor.is_quantized:
        per_channel = tensor.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
        size += 8 * (tensor.q_per_channel_scales().numel() if per_channel else 1)
    return size


def model_size_bytes(model: nn.Module) -> int:
    """Bytes a model's weights and constants take; the course's size measure for float models.

    Counted:
      - every tensor in ``parameters()`` and ``buffers()``: ``nelement * element_size``. For a
        float model this is all, and equals the course's Task 2 size (divide by 1024 for KB);
      - INT8 (torch.ao) layers keep weights in packed params, outside ``parameters()``. For each
        of them (``module._weight_bias()``): the int8 weights (1 byte each), their scales and
        zero points (8 bytes per channel, or per tensor; see ``_stored_tensor_bytes``), and the
        float32 bias;
      - the output scale and zero point (a Python float and int; 8 bytes) that every static
        quantized module (conv, linear, QFunctional, ...) keeps for its output.

    Example:
        >>> model_size_bytes(nn.Conv2d(3, 8, kernel_size=3))   # (8*3*3*3 + 8) * 4 bytes
        896
    """
    total = sum(t.nelement() * t.element_size() for t in chain(model.parameters(), model.buffers()))
    for module in model.modules():
        if not type(module).__module__.startswith(_QUANTIZED_NAMESPACES):
            continue
        if hasattr(module, "_weight_bias"):
            weight, bias = module._weight_bias()
            total += _stored_tensor_bytes(weight)
            total += 0 if bias is None else bias.nelement() * bias.element_size()
        # Dynamic quantized layers return floats: their scale/zero_point attributes are unused.
        is_dynamic = ".dynamic." in type(module).__module__
        if not is_dynamic and isinstance(getattr(module, "scale", None), float):
            total += 8
    return total


def state_dict_size_bytes(model: nn.Module) -> int:
    """Size of ``torch.save(model.state_dict())``, i.e. the file a student hands in."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def latency(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    warmup: int = 3,
    repeats: int = 10,
) -> dict:
    """Wall time of ``model(example_input)`` in eval mode under ``torch.no_grad``.

    The first ``warmup`` calls are not timed (they allocate memory, pick kernels). On CUDA the
    device is synchronized around each call, so the time covers the computation, not just the
    kernel launches.

    Args:
        model: the model, already on the device of ``example_input``.
        example_input: a batch, e.g. ``torch.randn(1, 3, 256, 512)``.
        warmup: untimed calls first.
        repeats: timed calls.

    Returns:
        ``{"median_ms", "mean_ms", "min_ms", "max_ms", "repeats", "warmup", "device",
        "threads", "batch_size", "page_faults"}``; report the median, with the device and threads
        beside it. ``page_faults`` is the process's minor page faults per timed call: memory the OS
        had to hand out afresh (see :func:`keep_freed_memory`).

    Example:
        >>> stats = latency(nn.Conv2d(3, 8, 3), torch.randn(1, 3, 64, 64), repeats=5)
        >>> sorted(stats)[:3]
        ['batch_size', 'device', 'max_ms']
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    on_cuda = example_input.is_cuda

    def sync():
        if on_cuda:
            torch.cuda.synchronize(example_input.device)

    was_training = model.training
    model.eval()
    times_ms = []
    try:
        with torch.no_grad():
            for _ in range(warmup):
                model(example_input)
            faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(repeats):
                sync()
                start = time.perf_counter()
                model(example_input)
                sync()
                times_ms.append((time.perf_counter() - start) * 1000.0)
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before) / repeats
    finally:
        model.train(was_training)
    return {
        "median_ms": statistics.median(times_ms),
        "mean_ms": statistics.fmean(times_ms),
        "min_ms": min(times_ms),
        "max_ms": max(times_ms),
        "repeats": repeats,
        "warmup": warmup,
        "device": str(example_input.device),
        "threads": torch.get_num_threads(),
        "batch_size": example_input.shape[0],
        "page_faults": faults,
    }


# glibc's mallopt parameters and its defaults (man 3 mallopt)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD = -1, -3, 128 * 1024


@contextlib.contextmanager
def keep_freed_memory():
    """While inside, freed CPU memory stays in the process for reuse instead of going back to the OS.

    By default glibc's ``malloc`` gives large blocks (from 128 KiB, rising with use) straight back to the
    OS on ``free``; a forward pass at batch 128 frees its activations, and the next pass then page-faults
    the same memory in again — for the dense ResNet-20 about 30,000 minor faults per call here, a cost
    that grows with the activations, not the MACs, and that swings with the virtual machine's load.
    glibc raises its thresholds as a process frees big blocks, so how much of it a call pays depends
    on what the process did before (e.g. less right after training). Inside this block the trim and
    mmap thresholds are raised (``mallopt``; 32 MiB is glibc's highest mmap threshold) so repeated calls
    reuse their memory; on leaving, glibc's default thresholds (128 KiB) are set again, but not its
    habit of raising the mmap threshold as big blocks are freed: ``mallopt`` cannot hand that back, so
    afterwards every block from 128 KiB up is returned to the OS when freed. Off Linux/glibc it changes
    nothing and yields ``False``.

    Example:
        >>> with keep_freed_memory():
        ...     stats = latency(nn.Conv2d(3, 8, 3), torch.randn(1, 3, 64, 64), repeats=2)
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):  # not glibc (macOS, Windows, musl without mallopt)
        yield False
        return
    mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)
    try:
        yield True
    finally:
        mallopt(_M_TRIM_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)
        mallopt(_M_MMAP_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)


def compare_latency(models: dict[str, nn.Module], *, input_shape: tuple[int, ...] = (1, 3, 32, 32),
                    batch_sizes: tuple[int, ...] = (1, 128), rounds: int = 5, repeats: int = 20,
                    warmup: int = 5, memory_format: torch.memory_format = torch.channels_last,
                    steady_memory: bool = True) -> list[dict]:
    """Median CPU latency of several models, measured side by side, so a busy machine hits them alike.

    Each round times every model once per batch size (:func:`latency`, ``repeats`` calls after
    ``warmup``), in turn; a model's latency is the lowest of its round medians, the least disturbed
    one. Its speed-up is paired: the first model's time over its own *in the same round*, the median
    over the rounds — a slow spell of the machine then slows both sides of a ratio alike.
    ``input_shape`` is one item's ``(1, C, H, W)``; batches repeat it ``batch_sizes`` times.

    Every model is timed in the same ``memory_format`` (a copy is converted, weights and input batches
    alike; the models passed in are left as they are). The default, channels_last, is the layout
    labkit trains in on the CPU and the one oneDNN's CPU convolutions run fastest in (the dense
    ResNet-20 is faster in it than in NCHW, benchmarks/README.md), so a speed-up is not inflated by
    timing the reference in a slow layout. ``torch.contiguous_format`` times NCHW.

    With ``steady_memory`` (the default) the timing runs inside :func:`keep_freed_memory`, so no
    model pays for memory the allocator handed back to the OS after the previous call; the rows say
    how many page faults each call still met (``page_faults_b{N}``, the median over the rounds).

    Returns one row per model: ``model``, ``latency_b{N}_ms`` per batch size, ``speedup_b{N}`` against
    the first model, ``page_faults_b{N}``, ``threads``, ``layout``.

    Example:
        >>> rows = compare_latency({"wide": nn.Conv2d(3, 64, 3), "thin": nn.Conv2d(3, 8, 3)},
        ...                        batch_sizes=(4,), rounds=1, repeats=2, warmup=1)
        >>> [row["model"] for row in rows], rows[0]["speedup_b4"]
        (['wide', 'thin'], 1.0)
    """
    if not models:
        raise ValueError("compare_latency needs at least one model")
    if len(input_shape) != 4:
        memory_format = torch.contiguous_format  # channels_last exists for (N, C, H, W) only
    inputs = {size: torch.randn(size, *input_shape[1:]).contiguous(memory_format=memory_format)
              for size in batch_sizes}
    models = {name: copy.deepcopy(model).to(memory_format=memory_format) for name, model in models.items()}
    times = {name: {size: [] for size in batch_sizes} for name in models}
    faults = {name: {size: [] for size in batch_sizes} for name in models}
    with keep_freed_memory() if steady_memory else contextlib.nullcontext():
        for _ in range(rounds):
            for name, model in models.items():
                for size, batch in inputs.items():
                    stats = latency(model, batch, warmup=warmup, repeats=repeats)
                    times[name][size].append(stats["median_ms"])
                    faults[name][size].append(stats["page_faults"])
    first = next(iter(models))
    rows = []
    for name in models:
        row = {"model": name}
        for size in batch_sizes:
            row[f"latency_b{size}_ms"] = min(times[name][size])
        for size in batch_sizes:
            ratios = [reference / own for reference, own in zip(times[first][size], times[name][size])]
            row[f"speedup_b{size}"] = statistics.median(ratios)
        for size in batch_sizes:
            row[f"page_faults_b{size}"] = statistics.median(faults[name][size])
        row["threads"] = torch.get_num_threads()
        row["layout"] = "channels_last" if memory_format == torch.channels_last else "nchw"
        rows.append(row)
    return rows

# ----------------------------------------------------------------------------- memory and MACs without computing

def macs_on_meta(model: nn.Module, input_size: tuple[int, ...] = (1, 3, 256, 256)) -> int:
    """MACs of ``model`` on an ``input_size`` input, counted on a meta-device copy.

    The meta device has shapes but no data, so nothing is computed and ``model`` itself (on any
    device, trained or not) is left untouched.

    Example:
        >>> macs_on_meta(nn.Conv2d(3, 8, kernel_size=1), input_size=(1, 3, 16, 16))   # 8*16*16*3
        6144
    """
    shadow = copy.deepcopy(model).to("meta")
    return count_macs(shadow, torch.zeros(input_size, device="meta"))


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory in MiB: CUDA allocator peak on GPU, the process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak_kb / (2**20 if sys.platform == "darwin" else 2**10)


def reset_peak_memory(device: str | torch.device) -> bool:
    """Start a new peak for :func:`peak_memory_mb`; ``False`` if this OS cannot.

    CUDA: resets the allocator's peak. CPU: on Linux, writing ``5`` to ``/proc/self/clear_refs``
    resets the process's peak resident size (VmHWM, also what ``getrusage`` reports); elsewhere
    the CPU peak covers the whole process lifetime and this returns ``False``.
    """
    device = resolve_device(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False
