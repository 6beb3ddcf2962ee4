"""What a sandboxed student network may use: CPU threads, CPU seconds, wall clock, and (opt-in) the GPU.

One budget, stated once, read by the sandbox (:func:`labkit.grading.student_network.sandboxed_network`)
and by ``python -m labkit grade`` (its default ``--timeout``):

- **threads**: the check's share of the cores. The batch grader gives each check
  ``cores // --jobs`` threads (``OMP_NUM_THREADS``, :func:`labkit.grading.batch.threads_per_check`);
  the sandbox uses that many; a check run by hand uses the cores it may run on.
- **CPU seconds** (RLIMIT_CPU counts every thread of the sandbox together)::

      cpu_seconds = max(CPU_FLOOR_S, START_CPU_S + SAFETY * CPU_S_PER_FRAME * frames * images)

  where ``frames`` is the image's pixels over a course frame's (256x512). ``CPU_S_PER_FRAME`` = 8 s is
  the one-core time of the heaviest model we mean to accept: the recipe's UNet-32 takes an estimated
  1-1.8 s per 256x512 frame on one core (Lab 05's 500 frames: 8-15 min), a UNet-64 four times its
  MACs, 4-7 s. ``SAFETY`` = 2 covers a slower grading core and what threads add to the CPU total
  (sharing work between threads costs CPU time that one thread would not spend). Lab 05's 500 frames:
  8,120 CPU-s (the old limit, 1800, was hit by a correct UNet-64 on one thread).
- **wall clock**: the CPU seconds spread over the threads at half efficiency (a model that uses its
  threads half well finishes within it), never under ``WALL_FLOOR_S``.
- **grade's timeout** (per submission, the check process): the same compute budget over the check's
  threads at half efficiency (without the floors), plus ``CHECK_OVERHEAD_S`` for the check's own
  start, data loading and metric, never under ``TIMEOUT_FLOOR_S``, for the test set the task's check
  sees by default (``TEST_SETS``; the course's data sets, not counted from ``--data``).
- **GPU** (``--sandbox-gpu``, opt-in): the NVIDIA device nodes that exist are bound read-write into the
  bubblewrap view (:func:`gpu_bind_args`), nothing else; without it no ``/dev/nvidia*`` is bound and
  ``CUDA_VISIBLE_DEVICES`` is empty in the sandbox.

Example:
    >>> cpu_seconds_for(500, (256, 512)), wall_seconds_for(500, (256, 512), threads=8)
    (8120, 3600)
    >>> grade_timeout("efficient", threads=1)
    8420
    >>> gpu_bind_args(["/dev/nvidiactl", "/dev/nvidia0"])
    ['--dev-bind', '/dev/nvidiactl', '/dev/nvidiactl', '--dev-bind', '/dev/nvidia0', '/dev/nvidia0']
"""
from __future__ import annotations

import math
import os
import re

COURSE_FRAME_PIXELS = 256 * 512   # the course's Cityscapes frame; budgets scale with pixels per image
CPU_S_PER_FRAME = 8.0             # one core, the heaviest model accepted (a UNet-64 is 4-7 s; see above)
SAFETY = 2.0                      # slower grading cores, threads' own CPU overhead
START_CPU_S = 120.0               # import torch, load_model, count MACs/size in the sandbox
CPU_FLOOR_S = 1800                # the limit before it scaled: never lower
PARALLEL_EFFICIENCY = 0.5         # wall clock assumes threads used at least half well
WALL_FLOOR_S = 3600               # the sandbox's wall clock before it scaled: never lower
CHECK_OVERHEAD_S = 300.0          # grade's timeout over the sandbox's wall clock: check start, data, metric
TIMEOUT_FLOOR_S = 600.0           # grade's old default: never lower
EXTRA_PROCESSES = 32              # tasks the sandbox user may have beyond its compute threads

# (images, (H, W)) of the split each task's check grades by default: the course's data sets
TEST_SETS = {
    "segmentation": (3669, (256, 256)),   # Oxford-IIIT Pet test split, --image-size 256
    "pruning": (10000, (32, 32)),         # CIFAR-10 test
    "quantization": (10000, (32, 32)),    # CIFAR-10 test
    "efficient": (500, (256, 512)),       # Cityscapes val at the course's 256x512
}

NVIDIA_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
NVIDIA_GPU = re.compile(r"^nvidia\d+$")


def threads_available() -> int:
    """The threads this check may use: ``OMP_NUM_THREADS`` (the batch grader's share), else its cores.

    Example:
        >>> threads_available() >= 1
        True
    """
    given = os.environ.get("OMP_NUM_THREADS", "")
    if given.isdigit() and int(given) > 0:
        return int(given)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def cpu_seconds_for(images: int, image_size: tuple[int, int]) -> int:
    """RLIMIT_CPU for a sandbox that runs ``images`` images of ``image_size`` (H, W) (formula above).

    Example:
        >>> cpu_seconds_for(500, (256, 512)), cpu_seconds_for(10, (64, 128))
        (8120, 1800)
    """
    frames = image_size[0] * image_size[1] / COURSE_FRAME_PIXELS
    return max(CPU_FLOOR_S, math.ceil(START_CPU_S + SAFETY * CPU_S_PER_FRAME * frames * max(0, images)))


def wall_seconds_for(images: int, image_size: tuple[int, int], *, threads: int) -> int:
    """The sandbox's wall clock: its CPU seconds over ``threads`` used half well, at least ``WALL_FLOOR_S``.

    Example:
        >>> wall_seconds_for(500, (256, 512), threads=1), wall_seconds_for(500, (256, 512), threads=2)
        (8120, 8120)
    """
    effective = max(1.0, threads * PARALLEL_EFFICIENCY)
    return max(WALL_FLOOR_S, math.ceil(cpu_seconds_for(images, image_size) / effective))


def max_processes_for(threads: int) -> int:
    """The sandbox user's task limit: its threads plus ``EXTRA_PROCESSES`` (at least the old 64)."""
    return max(64, threads + EXTRA_PROCESSES)


def compute_seconds_for(images: int, image_size: tuple[int, int], *, threads: int) -> float:
    """The model's CPU budget (no floor) spread over ``threads`` used half well: how long a correct model
    may take on this machine.

    Example:
        >>> compute_seconds_for(500, (256, 512), threads=1), compute_seconds_for(500, (256, 512), threads=16)
        (8120.0, 1015.0)
    """
    frames = image_size[0] * image_size[1] / COURSE_FRAME_PIXELS
    return (START_CPU_S + SAFETY * CPU_S_PER_FRAME * frames * max(0, images)) / max(1.0, threads * PARALLEL_EFFICIENCY)


def grade_timeout(task: str, *, threads: int) -> int:
    """``python -m labkit grade``'s default ``--timeout`` (seconds per submission) for ``task``.

    The task's test set (``TEST_SETS``) at the budget above over the check's ``threads``, plus
    ``CHECK_OVERHEAD_S`` for the check's start, data loading and metric; at least ``TIMEOUT_FLOOR_S``.

    Example:
        >>> grade_timeout("efficient", threads=1), grade_timeout("efficient", threads=8), grade_timeout("pruning", threads=8)
        (8420, 2330, 643)
    """
    images, size = TEST_SETS[task]
    return max(int(TIMEOUT_FLOOR_S), math.ceil(compute_seconds_for(images, size, threads=threads) + CHECK_OVERHEAD_S))


def nvidia_device_paths(dev: str = "/dev") -> list[str]:
    """The NVIDIA device nodes present: ``/dev/nvidia0..N`` (numeric order), then nvidiactl, nvidia-uvm,
    nvidia-uvm-tools and nvidia-modeset where they exist. ``[]`` on a machine without them.

    Example:
        >>> nvidia_device_paths("/nonexistent")
        []
    """
    try:
        names = os.listdir(dev)
    except OSError:
        return []
    gpus = sorted((name for name in names if NVIDIA_GPU.match(name)), key=lambda name: int(name[6:]))
    return [os.path.join(dev, name) for name in gpus + [n for n in NVIDIA_NODES if n in names]]


def gpu_bind_args(paths: list[str]) -> list[str]:
    """bubblewrap arguments binding each device node read-write at the same path, and nothing else.

    Example:
        >>> gpu_bind_args([])
        []
    """
    args: list[str] = []
    for path in paths:
        args += ["--dev-bind", path, path]
    return args


def gpu_device_args(dev: str = "/dev") -> list[str]:
    """:func:`gpu_bind_args` for the device nodes of this machine; ``EnvironmentProblem`` when it has none."""
    from labkit.grading.limits import EnvironmentProblem
    devices = nvidia_device_paths(dev)
    if not devices:
        raise EnvironmentProblem(f"--sandbox-gpu was given but there are no NVIDIA device nodes in {dev}; grade "
                                 "without --sandbox-gpu or on a machine with an NVIDIA GPU")
    return gpu_bind_args(devices)
