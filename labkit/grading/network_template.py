"""Write the course's hand-in for Lab 05: a self-contained ``network.py`` whose ``load_model(path)`` rebuilds a model.

The course's TA grades Cityscapes with ``test_task1.py <MODEL_PATH> <DATA_PATH>``: it imports the
student's ``network/network.py`` (Task 2: ``network2/network.py``) and calls ``load_model(MODEL_PATH)``.
The TA's machine may not have labkit installed, so the file written here does not import labkit: it
carries the source of the labkit modules the model needs (copied with ``inspect.getsource`` when the
file is written, so a student's own edits to ``labkit/models/`` are what is handed in), with the
``from labkit... import`` lines removed (the names are defined above them in the same file). It needs
only torch. ``load_model`` reads the weights with ``torch.load(path, weights_only=True,
map_location="cpu")`` and loads them strictly; an INT8 model is rebuilt first (prepare for QAT,
convert), the way ``labkit.quant.qat.build_int8_model`` does, on the CPU (the grader may have no GPU).

What is copied, per model (in this order; later files use names of earlier ones):

    UNet          labkit/models/unet_parts.py, labkit/models/unet.py
    EfficientUNet labkit/models/unet_parts.py, labkit/models/efficient_unet.py (+ labkit/quant/qat.py for INT8)
    either, when it works at another size than it is graded at: + labkit/models/working_size.py

A model trained at another size than the course's 256x512 (the CPU recipe: 128x256) is handed in
wrapped, ``write_network(folder, WorkingSize(model, (128, 256)))``: ``load_model`` then returns it
wrapped the same way (``WORKING_SIZE`` in the file), so it resizes each frame to the size it was
trained at, and its logits back to the frame's size (labkit.models.working_size).

Example:
    >>> import tempfile
    >>> from labkit.models.unet import UNet
    >>> folder = tempfile.mkdtemp()
    >>> path = write_network(folder, UNet(classes=8, base_channels=4, depth=2))
    >>> import ast
    >>> tree = ast.parse(path.read_text())
    >>> [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and "labkit" in node.module]
    []
"""
from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

from torch import nn

from labkit.models.efficient_unet import efficient_unet_kwargs
from labkit.models.registry import infer_kwargs
from labkit.models.working_size import WorkingSize, height_width
from labkit.quant.qat import is_int8_state_dict
from labkit.version import __version__

FLOAT_MODULES = {
    "UNet": ("labkit.models.unet_parts", "labkit.models.unet"),
    "EfficientUNet": ("labkit.models.unet_parts", "labkit.models.efficient_unet"),
}
INT8_MODULES = ("labkit.quant.qat",)  # build_int8_model: prepare_qat + convert_to_int8
WORKING_SIZE_MODULES = ("labkit.models.working_size",)  # WorkingSize: the model at its own resolution

LOAD_MODEL = '''

# ---- the course's entry point ----------------------------------------------------------------

def load_model(path):
    """The {model} of this hand-in with the weights in ``path`` loaded (strict), in eval mode, on the CPU{at_size}."""
    if not INT8:
        model = {model}(**MODEL_KWARGS)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return {finish}
    torch.backends.quantized.engine = _engine()
    with quiet_quantization_warnings():  # torch's deprecation notes about quantized tensors
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = build_int8_model({model}, backend=torch.backends.quantized.engine, **MODEL_KWARGS)
        model.load_state_dict(state)
    return {finish}

def _engine():
    """BACKEND when this torch has it (x86 on a PC), else another CPU INT8 engine (qnnpack on ARM)."""
    engines = torch.backends.quantized.supported_engines
    for engine in (BACKEND, "x86", "fbgemm", "qnnpack"):
        if engine in engines:
            return engine
    raise RuntimeError(f"this torch has no CPU INT8 engine (it has {{engines}}); the INT8 model cannot run")
'''


def _defined_names(tree: ast.Module) -> set[str]:
    """Names a module defines at its top level (functions, classes, assignments; not imports)."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(target.id for target in targets if isinstance(target, ast.Name))
    return names


def _is_labkit(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] == "labkit"
    if isinstance(node, ast.Import):
        return any(alias.name.split(".")[0] == "labkit" for alias in node.names)
    return False


def inline_source(module_name: str, defined: set[str]) -> str:
    """The source of ``module_name`` without its ``from __future__`` and labkit imports.

    Every removed ``from labkit.x import a, b`` (top level or inside a function) becomes ``pass``
    with a comment; ``a`` and ``b`` must be in ``defined`` (names of the files copied before this one),
    else ``ValueError``: the copy would not run without labkit.

    Example:
        >>> "from labkit" in inline_source("labkit.models.unet", {"DoubleConv", "Down", "OutConv", "Up",
        ...                                                        "check_input"})
        False
    """
    source = inspect.getsource(importlib.import_module(module_name))
    tree = ast.parse(source)
    lines = source.splitlines()
    for node in sorted(ast.walk(tree), key=lambda n: -getattr(n, "lineno", 0)):
        future = isinstance(node, ast.ImportFrom) and node.module == "__future__"
        if not (future or _is_labkit(node)):
            continue
        if _is_labkit(node):
            if isinstance(node, ast.Import) or node.level > 0:
                raise ValueError(f"{module_name} line {node.lineno}: write `from labkit.x import name`, "
                                 "not `import labkit.x` or a relative import, so network.py can inline it")
            missing = [a.name for a in node.names if a.name not in defined or a.asname not in (None, a.name)]
            if missing:
                raise ValueError(f"{module_name} line {node.lineno} imports {missing} from {node.module}, which "
                                 "the files copied before it do not define (or renames them); add that "
                                 "module to labkit.grading.network_template's list, before this one")
        indent = lines[node.lineno - 1][:node.col_offset]
        note = "from __future__ moved to the top" if future else f"{', '.join(a.name for a in node.names)}: above"
        lines[node.lineno - 1:node.end_lineno] = [f"{indent}pass  # {note}"]
    return "\n".join(lines) + "\n"


def network_source(model_name: str, *, model_kwargs: dict, int8: bool = False, backend: str = "x86",
                   working_size=None, smoke_image_size=None) -> str:
    """The text of a self-contained ``network.py`` for a labkit ``UNet`` or ``EfficientUNet``.

    Args:
        model_name: ``"UNet"`` or ``"EfficientUNet"`` (the class ``load_model`` builds).
        model_kwargs: its constructor arguments, e.g. ``{"classes": 8, "base_channels": 8, "depth": 3}``.
        int8: the weights are an INT8 state_dict (converted after QAT); only for ``EfficientUNet``.
        backend: the INT8 engine the model was converted with (``load_model`` falls back to another
            CPU engine when the grader's torch lacks it).
        working_size: ``(H, W)`` the model runs at whatever size it is given (``WORKING_SIZE`` in the
            file; ``load_model`` returns ``WorkingSize(model, WORKING_SIZE)``). None: it runs at the
            size of its input.
        smoke_image_size: ``(H, W)`` for a SMOKE run (labkit's synthetic fixture at that size): the file
            says so (``SMOKE_IMAGE_SIZE = (H, W)``), and the checks grade it at that size on that
            fixture and say that missing the goal there is expected. None (default): a real run.

    Example:
        >>> text = network_source("EfficientUNet", model_kwargs={"base_channels": 4, "depth": 2}, int8=True)
        >>> "def load_model(path):" in text and "def build_int8_model(" in text
        True
    """
    if model_name not in FLOAT_MODULES:
        raise ValueError(f"no network.py template for {model_name!r}; labkit writes one for "
                         f"{', '.join(FLOAT_MODULES)}. For a network of your own, write network.py by hand")
    if int8 and model_name != "EfficientUNet":
        raise ValueError(f"INT8 network.py is written for EfficientUNet only, not {model_name}")
    working_size = _size_or_none(working_size, "working_size")
    modules = FLOAT_MODULES[model_name] + (INT8_MODULES if int8 else ()) + (WORKING_SIZE_MODULES if working_size else ())
    header = (f'"""network.py for the Cityscapes lab: load_model(path) returns {model_name}'
              f'({", ".join(f"{k}={v!r}" for k, v in model_kwargs.items())}), {"INT8" if int8 else "FP32"}.\n\n'
              f"Written by labkit {__version__} (labkit.grading.network_template). Self-contained: it needs torch, "
              f"not labkit;\nthe model's source below is copied from {', '.join(modules)}.\n"
              'The weights are read with torch.load(path, weights_only=True, map_location="cpu").\n"""\n'
              "from __future__ import annotations\n\n"
              f"MODEL_KWARGS = {model_kwargs!r}\nINT8 = {int8!r}\nBACKEND = {backend!r}  # INT8 engine it was converted with\n"
              + (f"WORKING_SIZE = {working_size!r}  # (H, W) the model runs at; frames and logits are resized\n"
                 if working_size else "")
              + _smoke_line(smoke_image_size))
    parts, defined = [header], set()
    for module_name in modules:
        names = _defined_names(ast.parse(inspect.getsource(importlib.import_module(module_name))))
        clash = names & defined
        if clash:
            raise ValueError(f"{module_name} defines {sorted(clash)} again; network.py would keep only the last")
        parts.append(f"\n\n# ---- copied from {module_name.replace('.', '/')}.py " + "-" * 40 + "\n\n")
        parts.append(inline_source(module_name, defined))
        defined |= names
    parts.append(LOAD_MODEL.format(
        model=model_name, at_size=", run at WORKING_SIZE" if working_size else "",
        finish="WorkingSize(model, WORKING_SIZE).eval()" if working_size else "model.eval()"))
    text = "".join(parts)
    compile(text, "network.py", "exec")  # a SyntaxError here is a bug of this template, not of the model
    return text


def _size_or_none(size, name: str) -> tuple[int, int] | None:
    """``(H, W)`` from an int or a pair (labkit.models.working_size.height_width), or None."""
    return None if size is None else height_width(size, name=name)


def _smoke_line(size) -> str:
    """``SMOKE_IMAGE_SIZE = (H, W)`` (read by the checks as text: labkit.grading.student_network), or nothing."""
    size = _size_or_none(size, "smoke_image_size")
    if size is None:
        return ""
    height, width = size
    return (f"SMOKE_IMAGE_SIZE = ({height}, {width})  # a SMOKE run: trained on labkit's synthetic fixture at this "
            "size; the checks grade it there and say the goal is for real data\n")


def model_config(model: nn.Module) -> dict:
    """``{"model_name", "model_kwargs", "int8"}`` of a labkit UNet / EfficientUNet, read from its state_dict
    the same way the checks read a submitted file.

    Example:
        >>> from labkit.models.efficient_unet import EfficientUNet
        >>> model_config(EfficientUNet(base_channels=4, depth=2))
        {'model_name': 'EfficientUNet', 'model_kwargs': {'in_channels': 3, 'classes': 8, 'base_channels': 4, 'depth': 2}, 'int8': False}
    """
    name, state = type(model).__name__, model.state_dict()
    if name == "UNet":
        kwargs = infer_kwargs("unet", state)
        if kwargs:  # infer_kwargs leaves in_channels to its default; the first conv's weight tells it
            kwargs["in_channels"] = state["inc.double_conv.0.weight"].shape[1]
    elif name == "EfficientUNet":
        kwargs = efficient_unet_kwargs(state)
    else:
        raise ValueError(f"no network.py template for a {name}; labkit writes one for "
                         f"{', '.join(FLOAT_MODULES)}. For a network of your own, write network.py by hand")
    kwargs = {key: value.item() if hasattr(value, "item") else value for key, value in kwargs.items()}
    return {"model_name": name, "model_kwargs": kwargs, "int8": is_int8_state_dict(state)}


def write_network(folder, model: nn.Module, *, backend: str = "x86", smoke_image_size=None) -> Path:
    """Write ``folder/network.py`` that rebuilds ``model`` (a labkit UNet or EfficientUNet, FP32 or INT8).

    ``model`` may be wrapped, ``WorkingSize(unet, (128, 256))`` (labkit.models.working_size): the file
    then rebuilds it wrapped, so the grader's frames are resized to the size it works at.
    ``smoke_image_size``: ``(H, W)`` when the model was trained by a SMOKE run on labkit's synthetic
    fixture (notebook 05: ``smoke_image_size=size if SMOKE else None``); see :func:`network_source`.

    Save the weights beside it (``labkit.io.save_state_dict(model, ...)``); the pair is what the
    course's ``test_task1.py`` / ``test_task2.py`` and ``check_efficient.py --network`` grade.
    Returns the path of the file written (the folder is created).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "network.py"
    working_size = model.size if isinstance(model, WorkingSize) else None
    inner = model.model if isinstance(model, WorkingSize) else model
    path.write_text(network_source(**model_config(inner), backend=backend, working_size=working_size,
                                   smoke_image_size=smoke_image_size), encoding="utf-8")
    return path
