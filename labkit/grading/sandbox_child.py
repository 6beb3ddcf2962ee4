"""The untrusted side of :mod:`labkit.grading.sandbox`: runs a student's ``network.py`` in the sandbox.

Started by the parent as ``python -m labkit.grading.sandbox_child CONFIG_JSON``; never run it by
hand. Before any student code runs it fixes its limits (process count), captures labkit's counters
and fingerprints them. Then it imports ``network.py``, calls ``load_model(model_path)``, measures
MACs and size with the captured counters, checks the fingerprints again, and answers the parent's
requests on two pipes of its own (fd numbers in CONFIG_JSON), framed by
:mod:`labkit.grading.sandbox_wire` (a JSON header, then raw float32 bytes; no pickle). The
student's prints go to a capped log, never to the protocol.

What it imports before the student's code runs (labkit is bound read-only in the sandbox and on
``PYTHONPATH``): the standard library, ``sandbox_wire``, torch, ``labkit.profile`` and
``network_faults``; then it forgets labkit's modules and refuses new imports of labkit, while the
functions it holds keep working.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import resource
import sys
import traceback
from importlib.abc import MetaPathFinder

from labkit.grading.sandbox_wire import DETAIL_CHARS, MAX_HEADER_BYTES, receive, send


class _NoLabkit(MetaPathFinder):
    """Refuses ``import labkit`` from the student's code: the course's machine has no labkit."""

    def __init__(self, rule: str):
        self.rule = rule

    def find_spec(self, name, path=None, target=None):
        if name == "labkit" or name.startswith("labkit."):
            raise ImportError(self.rule.format(name=name))
        return None


def _hide_labkit(rule: str) -> None:
    """Forget labkit's modules (the trusted functions keep their references) and refuse new imports of it."""
    for name in [name for name in sys.modules if name == "labkit" or name.startswith("labkit.")]:
        del sys.modules[name]
    sys.meta_path.insert(0, _NoLabkit(rule))


def _fingerprint(functions) -> str:
    """A hash of the code of every function the measurement relies on (changed code = tampering)."""
    digest = hashlib.sha256()
    for function in functions:
        code = getattr(function, "__code__", None)
        digest.update(repr(function).encode() if code is None else code.co_code + repr(code.co_consts).encode())
    return digest.hexdigest()


def _short(error: BaseException) -> str:
    if isinstance(error, MemoryError) or "can't allocate memory" in str(error) or "not enough memory" in str(error):
        return "out of memory"
    if getattr(error, "errno", None) == 27:   # EFBIG: Python ignores SIGXFSZ, so the write fails instead
        return "file too large"
    text = str(error).strip().splitlines()
    return (text[0] if text else "no message")[:300]


def main(config: dict) -> int:
    limit = config.get("max_processes")
    if limit:
        try:
            resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))
        except (ValueError, OSError):
            pass
    requests, answers = int(config["request_fd"]), int(config["answer_fd"])
    os.dup2(2, 1)   # the student's prints go to the log (fd 2), never to the protocol
    import torch
    from torch.utils import flop_counter
    import labkit.profile as profile
    from labkit.profile import count_macs, count_params, is_quantized, model_size_bytes
    from labkit.grading.network_faults import LABKIT_IMPORT_RULE, QUANTIZED_OUTPUT
    torch.set_num_threads(int(config.get("threads", 1)))
    device = config.get("device", "cpu")
    if device == "cuda":   # --sandbox-gpu: proven before any student code runs; a failure is the grader's
        try:
            torch.ones(1, device="cuda").add_(1).cpu()
        except BaseException as error:  # noqa: BLE001
            send(answers, {"op": "error", "stage": "device", "message": _short(error), "detail": str(error)[:2000]})
            return 1
    trusted = (count_macs, count_params, is_quantized, model_size_bytes, profile._layer_macs,
               torch.nn.Module.__call__, torch.nn.Module._call_impl, torch.nn.Module.register_forward_hook,
               flop_counter.FlopCounterMode.__enter__, flop_counter.FlopCounterMode.__exit__,
               flop_counter.FlopCounterMode.get_total_flops)
    before = _fingerprint(trusted)
    names = ("count_macs", "count_params", "is_quantized", "model_size_bytes", "_layer_macs")

    _hide_labkit(LABKIT_IMPORT_RULE)   # network.py runs with torch, torchvision and numpy, as on the course's machine
    stage = "import"
    try:
        folder = os.path.dirname(config["network"])
        sys.path.insert(0, folder)
        spec = importlib.util.spec_from_file_location("network", config["network"])
        module = importlib.util.module_from_spec(spec)
        sys.modules["network"] = module
        spec.loader.exec_module(module)
        stage = "load_model"
        if not callable(getattr(module, "load_model", None)):
            raise ValueError("network.py defines no load_model(path) function")
        model = module.load_model(config["model"])
        if not isinstance(model, torch.nn.Module):
            raise ValueError(f"load_model returned a {type(model).__name__}, not a torch.nn.Module")
        model.eval()
        stage = "measure"
        with torch.no_grad():
            macs = count_macs(model, input_size=tuple(config["input_size"]))
            size = model_size_bytes(model)
            params = count_params(model)
            quantized = is_quantized(model)
        tampered = (_fingerprint(trusted) != before
                    or any(getattr(profile, n) is not f for n, f in zip(names, trusted)))
        if device == "cuda" and not quantized:   # torch.ao INT8 kernels run on the CPU only
            model.to(device)
        send(answers, {"op": "ready", "macs": int(macs), "size_bytes": int(size), "params": int(params),
                         "quantized": bool(quantized), "tampered": bool(tampered)})
    except BaseException as error:  # noqa: BLE001 - report any failure of student code to the parent
        traceback.print_exc()
        send(answers, _error(stage, error, os.path.dirname(config["network"])))
        return 1

    while True:
        try:
            header, payload = receive(requests)
        except EOFError:
            return 0
        if header.get("op") != "predict":
            return 0
        stage = "forward"
        try:
            shape = tuple(int(n) for n in header["shape"])
            batch = torch.frombuffer(bytearray(payload), dtype=torch.float32).reshape(shape)
            if device == "cuda" and not quantized:
                batch = batch.to(device)
            with torch.no_grad():
                output = model(batch)
            if isinstance(output, (tuple, list)):
                output = output[0]
            if isinstance(output, dict):
                output = output.get("out")
            if not isinstance(output, torch.Tensor):
                raise ValueError(f"the model returned a {type(output).__name__}, not a tensor of logits")
            if output.is_quantized:
                raise ValueError(QUANTIZED_OUTPUT)
            output = output.detach().to("cpu", torch.float32).contiguous()
            send(answers, {"op": "logits", "shape": list(output.shape)}, output.numpy().tobytes())
        except BaseException as error:  # noqa: BLE001
            traceback.print_exc()
            send(answers, _error(stage, error, os.path.dirname(config["network"])))
            return 1


def _error(stage: str, error: BaseException, folder: str = "") -> dict:
    """The error frame: a short message, the full text (``detail``, which the parent explains) and the line
    of the student's code it came from (``where``)."""
    detail = str(error)[:DETAIL_CHARS]
    while len(json.dumps(detail)) > MAX_HEADER_BYTES - 16000:   # the header stays under the limit, whatever the text
        detail = detail[: len(detail) // 2]
    frame = {"op": "error", "stage": stage, "message": _short(error), "detail": detail}
    if folder:
        mine = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.startswith(folder + os.sep)]
        if mine:
            last = mine[-1]
            frame["where"] = f"{os.path.relpath(last.filename, folder)} line {last.lineno}: {(last.line or '').strip()}"[:300]
    return frame


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
