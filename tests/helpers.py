"""Helpers shared by several test files (import: ``from tests.helpers import ...``); tests import
no other test module. Fixtures (pytest's) live in ``tests/conftest.py``."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import torch

from labkit.data.cifar10 import CLASSES
from labkit.paths import REPO_ROOT

SHARED = REPO_ROOT.parent / "shared"  # real-data samples and the course's docs, beside the repository
COURSE_INT8_SCHEMA = SHARED / "docs" / "course-int8-resnet20-keys.json"
CAT = CLASSES.index("cat")
IN_CI = os.environ.get("CI", "").lower() == "true"  # set by CI (and by GitHub Actions, GitLab CI, ...)


def requires(available: bool, reason: str) -> pytest.MarkDecorator:
    """Mark a test that needs a tool (bubblewrap, chromium): without it, skip with ``reason`` here, but
    fail in CI (``CI=true``), where the sandbox's isolation and the pages must never go untested unseen.

        >>> requires(True, "no bwrap").args, requires(False, "no bwrap").name in ("skipif", "missing_tool")
        ((False,), True)
    """
    if available:
        return pytest.mark.skipif(False, reason=reason)  # a mark that does nothing (and fits pytest.param)
    return pytest.mark.missing_tool(reason) if IN_CI else pytest.mark.skipif(True, reason=reason)


# The seed of the tests marked `learning`; benchmarks/smoke_margins.py runs them at other seeds.
LEARNING_SEED = int(os.environ.get("LABKIT_TEST_SEED", "0"))


def old_labkit_names(state: dict) -> dict:
    """The same tensors under labkit 0.1's first names (input_scale, conv1.weight, downsample.*)."""
    old = {}
    for key, value in state.items():
        key = key.replace("quant.output_", "input_").replace("downsample.0.", "downsample.")
        old[key.replace(".weight_int8", ".weight")] = value
    return old


class CreatesMarkerWhenUnpickled:
    """Unpickling this calls open(marker, "w"): what a hostile submission would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def constant_model(predicted_class: int, *, target_sparsity: float | None) -> torch.nn.Module:
    """A ResNet-20 whose logits ignore the input (fc weights zero, bias picks the class)."""
    from labkit.prune import magnitude
    from labkit.models.resnet20 import resnet20

    model = resnet20()
    if target_sparsity is not None:
        magnitude.prune_to(model, target_sparsity)
        magnitude.make_permanent(model)
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.zero_()
        model.fc.bias[predicted_class] = 10.0
    return model


def hanging_checks_dir(tmp_path, script="check_segmentation.py"):
    """The real check, except that student "hang"'s file blocks forever (a stand-in for a hang)."""
    folder = tmp_path / "checks"
    folder.mkdir()
    real = REPO_ROOT / "checks" / script
    (folder / script).write_text(textwrap.dedent(f"""
        import pathlib, runpy, sys, time
        submission = pathlib.Path(sys.argv[sys.argv.index("--path") + 1])
        if submission.name.startswith("hang") or submission.parent.name == "hang":
            time.sleep(3600)
        sys.argv[0] = {str(real)!r}
        runpy.run_path({str(real)!r}, run_name="__main__")
    """))
    return folder


def load_check_module(script: str = "check_efficient.py"):
    """A ``checks/`` script imported as a module (its functions, without running ``main``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(Path(script).stem, REPO_ROOT / "checks" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
