"""What went wrong with a student's own network, in words a student can act on.

A student's ``network.py`` fails inside the sandbox with torch's own text: a ``load_state_dict``
error whose key lists the sandbox used to cut after "Error(s) in loading state_dict for X:", or
the dispatcher's "Could not run 'aten::add.out' with arguments from the 'QuantizedCPU' backend ...
If you are a Facebook employee ...". The trusted parent reads that text (never executes anything
from it) and says what to fix instead:

==================================================  ==============================================
torch says                                          the student reads
==================================================  ==============================================
Error(s) in loading state_dict for X: ...           missing / unexpected keys and wrong shapes,
                                                    the first ten of each and a count (+ a hint:
                                                    fuse before prepare, build the INT8 model)
Could not run 'quantized::conv2d' ... 'CPU'         a float tensor reached an INT8 layer: QuantStub
Could not run 'aten::add.out' ... 'QuantizedCPU'    ``+`` on INT8 tensors: FloatFunctional.add
Could not run 'aten::mul.out' ... 'QuantizedCPU'    ``*`` on INT8 tensors: FloatFunctional.mul
a quantized output (checked in the sandbox)         DeQuantStub at the end of forward
``import labkit`` (refused in the sandbox)          the rule: torch, torchvision and numpy only
==================================================  ==============================================

The same :class:`LoadReport` describes a file that does not fit labkit's reference network (built
from the two state_dicts by :func:`compare_state_dicts`), so every route prints the same lines and
``--json`` carries the same ``load_errors`` object.

Example:
    >>> text = ('Error(s) in loading state_dict for Net:\\n\\tMissing key(s) in state_dict: "bn.weight", '
    ...         '"bn.running_mean", "bn.scale". ')
    >>> report = LoadReport.parse(text)
    >>> report.missing, report.model
    (['bn.weight', 'bn.running_mean', 'bn.scale'], 'Net')
    >>> "fuse" in report.hint()
    True
    >>> explain("Could not run 'aten::add.out' with arguments from the 'QuantizedCPU' backend. If you ...")[0][:36]
    '`+` on INT8 tensors (aten::add.out):'
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

SHOWN = 10  # keys shown per list; the count says how many there are

LABKIT_IMPORT_RULE = ("network.py imports {name}: the course's test runs network.py on a machine with only torch, "
                      "torchvision and numpy (no labkit), so it must not import labkit. Copy the code you need "
                      "into network.py (labkit.grading.network_template.write_network writes such a self-contained "
                      "file for a labkit model) and check it again")
QUANTIZED_OUTPUT = ("your model returns a quantized (INT8) tensor, not float logits: end forward with a "
                    "DeQuantStub (self.dequant = DeQuantStub() in __init__, return self.dequant(x)), as the "
                    "course's test needs float logits")
QUANTSTUB = ("a float tensor reached the INT8 layer {op}: the QuantStub is missing, or not used first. An INT8 model "
             "quantizes its input first: self.quant = QuantStub() in __init__, x = self.quant(x) at the start of "
             "forward (and no DeQuantStub before a quantized layer)")
FLOAT_FUNCTIONAL = ("{symbol} on INT8 tensors ({op}): in an INT8 (eager) model, tensor arithmetic needs a module. "
                    "Use torch.ao.nn.quantized.FloatFunctional: self.skip = FloatFunctional() in __init__, then "
                    "self.skip.add(x, y) for x + y (add_relu for relu(x + y)), .mul(x, y) for x * y, "
                    ".cat([x, y], dim=1) for torch.cat; prepare and convert then give it INT8 kernels")
FLOAT_LAYER = ("an INT8 tensor reached the float operation {op}: that part of the model was not converted "
               "(no qconfig, or not fused/prepared like the rest). Give it a qconfig before prepare, or wrap it in "
               "DeQuantStub ... QuantStub so it runs in float")
NO_ENGINE = ("no INT8 engine is selected for {op}: set torch.backends.quantized.engine = 'x86' (or 'qnnpack' on ARM) "
             "in load_model before building the INT8 model")
_SYMBOLS = {"add": "`+`", "add_relu": "`+`", "mul": "`*`", "cat": "`torch.cat`", "sub": "`-`", "div": "`/`"}
_FLOAT_LAYERS = ("conv", "linear", "batch_norm", "native_batch_norm", "addmm", "mm", "bmm", "matmul")
# where torch's dispatcher text starts: nothing from here on reaches a student
_DISPATCHER_TAIL = re.compile(r"\s*(This could be because the operator doesn't exist|If you are a Facebook employee"
                              r"|'[\w:.]+' is only available for these backends).*", re.DOTALL)


def _shape(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", text)]


@dataclass
class LoadReport:
    """Why a state_dict does not load: the keys missing from the file, the file's extra keys, wrong shapes."""
    model: str = "the model"
    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    wrong_shapes: list = field(default_factory=list)   # [{"key", "file", "model"}]
    other: list = field(default_factory=list)           # torch's other lines (a quantized/float copy error)
    advice: str = ""                                    # the route's own hint, instead of the guessed one

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.wrong_shapes or self.other)

    @classmethod
    def parse(cls, text: str) -> "LoadReport":
        """The report in torch's ``Error(s) in loading state_dict for X:`` text (empty if it is not one)."""
        head = re.search(r"Error\(s\) in loading state_dict for ([\w.]+)", text)
        report = cls(model=head[1] if head else "the model")
        for line in text.splitlines():
            line = line.strip()[:2000]  # key names are short; a capped line keeps every pattern below fast
            if line.startswith("Missing key(s) in state_dict:"):
                report.missing += re.findall(r'"([^"]*)"', line)
            elif line.startswith("Unexpected key(s) in state_dict:"):
                report.unexpected += re.findall(r'"([^"]*)"', line)
            elif line.startswith("size mismatch for "):
                match = re.match(r"size mismatch for (.+?): copying a param with shape (.+?) from checkpoint, "
                                 r"the shape in current model is (.+?)\.?$", line)
                if match:
                    report.wrong_shapes.append({"key": match[1], "file": _shape(match[2]), "model": _shape(match[3])})
            elif line.startswith("While copying the parameter named"):
                key = re.search(r'named "([^"]*)"', line)
                cause = re.search(r"an exception occurred : \('(.+?)',?\)", line)
                report.other.append(f"{key[1] if key else '?'}: {cause[1] if cause else 'could not be copied'}")
        return report

    def count(self) -> dict:
        return {"missing": len(self.missing), "unexpected": len(self.unexpected),
                "wrong_shapes": len(self.wrong_shapes), "other": len(self.other)}

    def to_dict(self) -> dict:
        """The ``load_errors`` of a verdict's ``--json``: the first ten of each list and the counts."""
        return {"model": self.model, "missing": self.missing[:SHOWN], "unexpected": self.unexpected[:SHOWN],
                "wrong_shapes": self.wrong_shapes[:SHOWN], "other": self.other[:SHOWN], "counts": self.count(),
                "hint": self.hint()}

    def lines(self) -> list[str]:
        """One line per non-empty list, with its count: ``missing keys (12; first 10): a, b, ...``."""
        def listed(name, items):
            first = f"; first {SHOWN}" if len(items) > SHOWN else ""
            return f"  {name} ({len(items)}{first}): " + ", ".join(items[:SHOWN])
        out = []
        if self.missing:
            out.append(listed("missing keys (in the model, not in the file)", self.missing))
        if self.unexpected:
            out.append(listed("unexpected keys (in the file, not in the model)", self.unexpected))
        if self.wrong_shapes:
            out.append(listed("wrong shapes", [f"{s['key']}: file {tuple(s['file'])}, model {tuple(s['model'])}"
                                               for s in self.wrong_shapes]))
        if self.other:
            out.append(listed("not copied", self.other))
        return out

    def hint(self) -> str:
        """What usually causes this mismatch, or the general advice."""
        if self.advice:
            return self.advice
        keys = self.missing + self.unexpected
        int8 = any(key.endswith((".scale", ".zero_point", "_packed_params.dtype", "_packed_params._packed_params"))
                   for key in keys) or any("quantized Tensor" in line for line in self.other)
        batch_norm = any(key.endswith((".running_mean", ".running_var")) for key in self.missing)
        if any("from quantized Tensor to non-quantized" in line for line in self.other):
            return ("the file holds INT8 weights but load_model built a float model: build it the way it was "
                    "converted (fuse, prepare/prepare_qat, convert) before load_state_dict")
        if int8 and batch_norm:
            return ("BatchNorm keys are missing in an INT8 model: the saved model was fused (Conv+BN+ReLU) before "
                    "prepare, and load_model did not fuse. Fuse the same modules (e.g. model.fuse_model()) before "
                    "prepare/prepare_qat and convert in load_model")
        if self.wrong_shapes and not (self.missing or self.unexpected):
            return "the layers match but their sizes do not: build the model with the widths it was trained with"
        return ("load_model must build exactly the network the weights were saved from (same layers, names and "
                "widths; for INT8 the same fuse, prepare and convert steps)")

    def message(self, where: str) -> str:
        return "\n".join([f"the weights do not load into {where}:", *self.lines(), f"hint: {self.hint()}"])


def compare_state_dicts(expected: dict, given: dict, *, model: str) -> LoadReport:
    """The :class:`LoadReport` of loading ``given`` into a model whose state_dict is ``expected``.

    Shapes are compared where both hold a tensor (anything with ``.shape``); packed INT8 params are
    compared by name only.

    Example:
        >>> import torch
        >>> report = compare_state_dicts({"a": torch.zeros(2), "b": torch.zeros(1)}, {"a": torch.zeros(3), "c": 1},
        ...                              model="Net")
        >>> report.missing, report.unexpected, report.wrong_shapes
        (['b'], ['c'], [{'key': 'a', 'file': [3], 'model': [2]}])
    """
    report = LoadReport(model=model, missing=[k for k in expected if k not in given],
                        unexpected=[k for k in given if k not in expected])
    for key, value in expected.items():
        other = given.get(key)
        if hasattr(value, "shape") and hasattr(other, "shape") and tuple(value.shape) != tuple(other.shape):
            report.wrong_shapes.append({"key": key, "file": list(other.shape), "model": list(value.shape)})
    return report


def explain(text: str) -> tuple[str, dict] | None:
    """``(what to fix, details for --json)`` for torch's text of a known fault, else None.

    ``details`` is ``{"load_errors": ...}`` for a state_dict that does not load, else ``{}``.
    """
    report = LoadReport.parse(text)
    if report:
        return report.message(f"your model ({report.model})"), {"load_errors": report.to_dict()}
    if "requires quantized dtype" in text or "Quantized output" in text:
        return QUANTIZED_OUTPUT, {}
    match = re.search(r"Could not run '([\w:.]+)' with arguments from the '(\w+)' backend", text)
    if match:
        op, backend = match.groups()
        base = op.split("::")[-1].split(".")[0].rstrip("_")
        if backend == "CPU" and op.startswith("quantized::"):
            return QUANTSTUB.format(op=op), {}
        if backend.startswith("Quantized"):
            if base in _SYMBOLS:
                return FLOAT_FUNCTIONAL.format(symbol=_SYMBOLS[base], op=op), {}
            if any(layer in base for layer in _FLOAT_LAYERS):
                return FLOAT_LAYER.format(op=op), {}
            return (f"an INT8 (quantized) tensor reached {op}, which has no INT8 kernel: in an INT8 model, use "
                    "FloatFunctional for tensor arithmetic, or wrap the float part in DeQuantStub ... QuantStub"), {}
        return (f"{op} cannot run on the {backend} device here: load_model must return a model on the CPU "
                "(torch.load(path, map_location='cpu'); no .cuda())"), {}
    if "not supported on quantized tensors" in text:   # e.g. x + y on INT8 tensors of different scales
        return FLOAT_FUNCTIONAL.format(symbol="`+`, `*` or `torch.cat`", op="an operation with no INT8 kernel"), {}
    match = re.search(r"Didn't find engine for operation ([\w:.]+)", text)
    if match:
        return NO_ENGINE.format(op=match[1]), {}
    return None


def clean(text: str, limit: int = 300) -> str:
    """The first line of an unexplained error with torch's dispatcher tail removed, capped at ``limit``."""
    first = (text.strip().splitlines() or ["no message"])[0]
    return _DISPATCHER_TAIL.sub("", first)[:limit] or "no message"
