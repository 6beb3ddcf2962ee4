"""What every check script shares: arguments, exit codes, the verdict line and ``--json`` output.

Exit codes (design.md, checks contract): ``EXIT_PASSED`` 0, ``EXIT_BELOW_GOAL`` 1, ``EXIT_INVALID`` 2,
``EXIT_ENVIRONMENT`` 3. They are defined in :mod:`labkit.grading.exits` (beneath this module and
``limits``, which says what each means) and importable from here.

Every check caps its own address space first (``--memory``, default ``DEFAULT_MEMORY_BYTES``), reads
the submitted file through :func:`read_submission` (declarations inspected before torch.load) and
reads the dataset through :func:`dataset_batches`, so a broken dataset is the TA's problem (exit 3)
and never blamed on the student. Likewise the device: :func:`run_check` probes it before grading
(``labkit.device.probe_device``), and a driver too old, a GPU architecture the torch build lacks, a
busy or failing GPU is exit 3 with the cause and the fix, and a ``device_fault`` object in ``--json``
(kind, cause, fix, device) that a batch grader reads to stop scheduling.

Example (a check script's main)::

    def evaluate_submission(args) -> CheckResult: ...
    if __name__ == "__main__":
        sys.exit(run_check("pruning", build_parser(), evaluate_submission))
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from dataclasses import asdict, dataclass, field
from typing import Callable

from labkit.download import DatasetNotFoundError
from labkit.grading.exits import EXIT_BELOW_GOAL, EXIT_ENVIRONMENT, EXIT_INVALID, EXIT_PASSED, EnvironmentProblem
from labkit.grading.limits import DEFAULT_MEMORY_BYTES, GiB, apply_memory_cap, parse_memory
from labkit.io import SubmissionError, load_into, state_dict_of
from labkit.torch_file import FLOAT_DTYPES, Limits, inspect_torch_file


@dataclass
class CheckResult:
    """The outcome of one check: ``message`` holds the course-style lines a student reads."""
    task: str
    passed: bool
    message: str
    metrics: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    exit_code: int | None = None
    device_fault: dict | None = None  # {"kind", "cause", "fix", "device"} when the device failed (exit 3)

    def __post_init__(self):
        if self.exit_code is None:
            self.exit_code = EXIT_PASSED if self.passed else EXIT_BELOW_GOAL


# How torch (its CPU allocator, oneDNN) says an allocation failed: the cap's doing, not the student's.
OUT_OF_MEMORY_SIGNS = ("can't allocate memory", "not enough memory", "could not create a primitive",
                       "bad_alloc", "out of memory", "cannot allocate memory")

# The course's own words (its check scripts), shown before labkit's specific reason.
LOAD_FAILED = ("Failed to load your model! This may due to your file doesn't exist or your file isn't "
               "a state_dict.")


def read_submission(path, *, allowed_dtypes: tuple | None = None, notes: list | None = None) -> dict:
    """The submitted state_dict ``{name: tensor}`` on the CPU, or a ``SubmissionError`` (exit 2).

    The file is inspected once, by its declarations only (``labkit.torch_file.inspect_torch_file``:
    zip layout, CRCs, the globals data.pkl names, each tensor's dtype and size against its storage),
    so a memory bomb or a pickled object is refused before torch reads a byte; then
    ``torch.load(weights_only=True, map_location="cpu")`` without a second inspection
    (``labkit.io.state_dict_of``: NaN/Inf refused, fp16/bf16 as float32).
    ``allowed_dtypes``: ``FLOAT_DTYPES`` (default), ``QUANTIZED_DTYPES`` (torch.ao INT8) or
    ``COURSE_INT8_DTYPES`` (the course's hand-quantized ResNet-20), all in ``labkit.torch_file``.

    Example:
        >>> import tempfile, torch
        >>> path = tempfile.mkdtemp() + "/m.pth"
        >>> torch.save(torch.nn.Linear(2, 1).state_dict(), path)
        >>> sorted(read_submission(path))
        ['bias', 'weight']
    """
    notes = notes if notes is not None else []
    report = inspect_torch_file(path, Limits(allowed_dtypes=tuple(allowed_dtypes or FLOAT_DTYPES)))
    notes.extend(report.notes)
    return state_dict_of(report, notes=None)  # the checks never showed the fp16 -> float32 note


class _GuardedBatches:
    """Iterate ``loader``; an error while *reading* a batch becomes an ``EnvironmentProblem``."""

    def __init__(self, loader, where: str):
        self.loader, self.where = loader, where

    def __len__(self):
        return len(self.loader)

    @property
    def dataset(self):
        return self.loader.dataset

    def __iter__(self):
        batches = iter(self.loader)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except MemoryError:
                raise EnvironmentProblem(f"out of memory reading the dataset at {self.where}; raise "
                                         "--memory or lower --batch-size") from None
            except Exception as error:  # noqa: BLE001 - the dataset is the grading machine's, not the student's
                cause = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
                raise EnvironmentProblem(f"the dataset at {self.where} could not be read: {cause}. "
                                         "Repair or re-extract it (labkit doctor checks the folders)") from None
            yield batch


def dataset_batches(build_loader: Callable[[], object], *, where) -> _GuardedBatches:
    """``build_loader()`` (dataset + DataLoader) with every dataset failure mapped to exit 3.

    A missing dataset stays a ``DatasetNotFoundError``; anything else raised while building the
    dataset (an unknown class folder) or reading a batch (a corrupt image) becomes an
    ``EnvironmentProblem`` whose message names the folder and the cause, for the TA.

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> batches = dataset_batches(lambda: DataLoader(TensorDataset(torch.zeros(4, 1)), batch_size=2),
        ...                           where="memory")
        >>> len(batches), [b[0].shape[0] for b in batches]
        (2, [2, 2])
    """
    try:
        loader = build_loader()
    except DatasetNotFoundError:
        raise
    except Exception as error:  # noqa: BLE001 - see the docstring
        cause = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise EnvironmentProblem(f"the dataset at {where} could not be read: {cause}. Repair or "
                                 "re-extract it (labkit doctor checks the folders)") from None
    return _GuardedBatches(loader, str(where))


def load_submission(path, model, *, wrong_architecture: str, notes: list | None = None,
                    explain: Callable[[dict], str | None] | None = None, allowed_dtypes: tuple | None = None):
    """Safe-load ``path`` into ``model``; failures carry the course's line, then ``hint: <reason>``.

    ``explain(state_dict)`` may return a better hint for an architecture mismatch (e.g. "this is a
    float model"). ``allowed_dtypes``: see :func:`read_submission`. Returns the loaded model.
    """
    try:
        state_dict = read_submission(path, allowed_dtypes=allowed_dtypes, notes=notes)
    except SubmissionError as error:
        raise SubmissionError(f"{LOAD_FAILED}\nhint: {error}") from error
    try:
        return load_into(model, state_dict)
    except SubmissionError as error:
        hint = (explain(state_dict) if explain else None) or str(error)
        raise SubmissionError(f"{wrong_architecture}\nhint: {hint}") from error


def versions() -> dict:
    import torch
    import torchvision
    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__}


def common_parser(description: str, *, batch_size: int | None = None) -> argparse.ArgumentParser:
    """``--path``, ``--data``, ``--device``, ``--memory``, ``--json``, ``--sandbox-gpu``: every check's arguments.

    ``batch_size``: also take ``--batch-size`` with this default. A notebook passes the batch size
    (and device) it measured with, so that the check evaluates the same way and the two agree
    (``labkit.grading.call_check``).

    Example:
        >>> common_parser("demo", batch_size=128).parse_args(["--path", "m.pt"]).batch_size
        128
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--path", required=True, help="the submitted state_dict file (.pt/.pth)")
    parser.add_argument("--data", default=None, help="dataset root (default: the course's location)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    if batch_size is not None:
        parser.add_argument("--batch-size", type=int, default=batch_size,
                            help=f"images per evaluation batch (default {batch_size}); a notebook passes its own "
                                 "so that the check evaluates as it did")
    parser.add_argument("--memory", default=f"{DEFAULT_MEMORY_BYTES // GiB}G",
                        help="address-space cap for this check, e.g. 6G (torch alone reserves ~3.1 GiB)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--sandbox-gpu", action="store_true",
                        help="a student's network.py (--network) may use CUDA: the sandbox binds the NVIDIA device "
                             "nodes read-write, nothing else (default: CPU only); checks without --network ignore it")
    return parser


def report(result: CheckResult, *, as_json: bool = False, stream=None) -> int:
    """Print the verdict (text or one JSON object) and return the exit code."""
    stream = stream or sys.stdout  # looked up now, so redirected/captured stdout is honoured
    if as_json:
        payload = asdict(result) | {"versions": versions()}
        print(json.dumps(payload, default=float), file=stream)
    else:
        print(result.message, file=stream)
        for note in result.notes:
            print(f"note: {note}", file=stream)
    return result.exit_code


def run_check(task: str, parser: argparse.ArgumentParser,
              evaluate_submission: Callable[[argparse.Namespace], CheckResult],
              argv: list[str] | None = None, *, cap_memory: bool | None = None, stream=None) -> int:
    """Cap memory, parse arguments, probe the device, run ``evaluate_submission`` and map every failure
    to its exit code.

    The ``--memory`` cap (RLIMIT_AS) is for the check's own process: it is applied when the check
    runs as a command (``argv`` is None), not when Python code calls ``main(argv)`` in its own
    process (a test, a notebook), unless ``cap_memory=True``.

    A student's bad file: exit 2 in plain words (never an exception class name). The grading
    machine's problem (dataset missing or unreadable, out of memory, a sandbox that cannot start, a
    device that fails the probe or fails with a CUDA error while evaluating): exit 3 with the cause,
    for the TA; a device's carries ``device_fault``.

    ``stream``: where the verdict is printed (default: stdout).

    Example (``--device cuda`` on a machine without a usable GPU would exit 3 here, before grading)::

        >>> import io
        >>> out = io.StringIO()
        >>> run_check("demo", common_parser("demo"), lambda args: CheckResult("demo", True, "fine"),
        ...           ["--path", "x.pth", "--device", "cpu"], stream=out), out.getvalue()
        (0, 'fine\\n')
    """
    from labkit.device import DeviceUnusable, device_fault, probe_device
    args = parser.parse_args(argv)
    cap_notes = []
    if (argv is None if cap_memory is None else cap_memory) and getattr(args, "memory", None) is not None:
        try:
            cap = parse_memory(args.memory)
        except ValueError as error:
            parser.error(str(error))
        if _uses_cuda(args):
            # CUDA reserves far more address space than it uses: RLIMIT_AS would stop CUDA itself
            cap_notes.append(f"--memory {args.memory} is not applied on CUDA (an address-space cap stops "
                             "CUDA's own start); use --device cpu for a capped run")
        else:
            apply_memory_cap(cap)
    device = getattr(args, "device", None)
    try:
        if device is not None:
            probe_device(device)
        result = evaluate_submission(args)
    except DeviceUnusable as error:
        result = _device_result(task, error.fault, error.device)
    except SubmissionError as error:
        result = CheckResult(task, False, f"Oops! Something is wrong!\n{error}", exit_code=EXIT_INVALID)
    except DatasetNotFoundError as error:
        result = CheckResult(task, False, f"Cannot evaluate: {error}", exit_code=EXIT_ENVIRONMENT)
    except EnvironmentProblem as error:
        result = CheckResult(task, False, f"Cannot evaluate (a problem of the grading machine, not of the "
                                          f"submission): {error}", exit_code=EXIT_ENVIRONMENT)
    except MemoryError:
        result = CheckResult(task, False, f"Cannot evaluate: out of memory under the --memory cap of "
                                          f"{args.memory}; raise --memory", exit_code=EXIT_ENVIRONMENT)
    except Exception as error:  # noqa: BLE001 - a grader must answer for every file, never crash
        text = str(error).strip()
        # Only a CUDA run can meet a CUDA fault: on the CPU such words are no device's (a file's key names?)
        fault = device_fault(error) if device is not None and _uses_cuda(args) else None
        if fault is not None:
            result = _device_result(task, fault, "cuda")
            result.notes = list(result.notes) + cap_notes
            return report(result, as_json=args.json, stream=stream)
        if any(sign in text.lower() for sign in OUT_OF_MEMORY_SIGNS):
            result = CheckResult(task, False, f"Cannot evaluate: out of memory under the --memory cap of "
                                              f"{getattr(args, 'memory', '?')} ({text.splitlines()[0][:120]}); "
                                              "raise --memory", exit_code=EXIT_ENVIRONMENT)
            return report(result, as_json=args.json, stream=stream)
        detail = text.splitlines()[0][:300] if text else "no further detail"
        result = CheckResult(task, False, "Oops! Something is wrong!\nYour model could not be evaluated: "
                                          f"{detail}", exit_code=EXIT_INVALID)
    result.notes = list(result.notes) + cap_notes
    return report(result, as_json=args.json, stream=stream)


def device_fault_of(verdict: dict | None, stderr: str = "") -> dict | None:
    """The device fault behind a check's exit, for a batch grader that stops scheduling on it:
    the verdict's ``device_fault`` (``--json``), else one recognised in the stderr of a check that
    ended without a verdict (a crash inside CUDA). ``None``: the device is not to blame.

    Example:
        >>> device_fault_of({"exit_code": 3, "device_fault": {"kind": "driver", "cause": "...", "fix": "...",
        ...                                                    "device": "cuda"}})["kind"]
        'driver'
        >>> device_fault_of({"exit_code": 2, "device_fault": None}) is None
        True
        >>> device_fault_of(None, "RuntimeError: CUDA error: no kernel image is available for execution")["kind"]
        'architecture'
    """
    from labkit.device import device_fault
    if verdict is not None:
        return verdict.get("device_fault")
    lines = stderr.strip().splitlines()
    fault = device_fault(lines[-1]) if lines else None
    return fault.to_dict() | {"device": "cuda"} if fault is not None else None


def _device_result(task: str, fault, device: str) -> CheckResult:
    """Exit 3 for a device fault: the cause and the fix, said once, and the fault for ``--json``."""
    return CheckResult(task, False, f"Cannot evaluate (a problem of the grading machine, not of the submission): "
                                    f"the {device} device cannot be used: {fault.cause}.\nfix: {fault.fix}",
                       exit_code=EXIT_ENVIRONMENT, device_fault=fault.to_dict() | {"device": device})


def _uses_cuda(args) -> bool:
    """Whether this check will run on CUDA (``--device cuda``, or ``auto`` on a machine with a GPU)."""
    device = getattr(args, "device", "cpu")
    if device == "cuda":
        return True
    if device != "auto":
        return False
    import torch
    return torch.cuda.is_available()
