"""Shared fixtures: the real-sample location and a small UNet trained on the Pet fixture."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# Decoded-image caches of the test run go to a temporary folder, not the user's ~/.cache/labkit;
# removed when the session ends (pytest_sessionfinish), so no run leaves one behind.
_TEST_CACHE = None if "LABKIT_CACHE_DIR" in os.environ else tempfile.mkdtemp(prefix="labkit-test-cache-")
os.environ.setdefault("LABKIT_CACHE_DIR", _TEST_CACHE or "")

from labkit.paths import REPO_ROOT  # noqa: E402  (after the environment variables above)
from labkit.tools.record import check_learning  # noqa: E402
from tests.helpers import LEARNING_SEED  # noqa: E402

# Student network.py files (hostile ones included) are data for the sandbox tests: never import them here.
collect_ignore = ["hostile", "students"]

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def shared_sample(name: str) -> Path:
    """A real-data sample from ``../shared/data``; skips the test when it is absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} not present (real samples live in ../shared beside the repo)")
    return path


@pytest.fixture(scope="session")
def pets_fixture_root(tmp_path_factory) -> Path:
    from labkit.data import pets
    return pets.make_fixture(tmp_path_factory.mktemp("pets") / "oxford-iiit-pet", n_trainval=60, n_test=20)


@pytest.fixture(scope="session")
def trained_unet(pets_fixture_root, tmp_path_factory) -> dict:
    """A tiny UNet trained for a few epochs on the fixture at 64 px, saved as a state_dict."""
    from labkit.data import pets
    from labkit.evaluate import evaluate_segmentation
    from labkit.io import save_state_dict
    from labkit.losses import BCEDiceLoss
    from labkit.models.unet import UNet
    from labkit.train import fit

    train_set = pets.OxfordIIITPet(pets_fixture_root, "train", image_size=64, cache=True)
    test_set = pets.OxfordIIITPet(pets_fixture_root, "test", image_size=64, cache=True)
    torch.manual_seed(LEARNING_SEED)  # the initial weights: else they depend on the tests that ran before
    model = UNet(base_channels=8, depth=3)
    # 12 epochs as notebook 01's SMOKE recipe: 8 ended at 0.75 Dice on one seed (benchmarks/smoke_margins.py)
    fit(model, DataLoader(train_set, batch_size=8, shuffle=True), loss_fn=BCEDiceLoss(), epochs=12,
        lr=3e-3, device="cpu", seed=LEARNING_SEED, progress=False, log=None)
    test_dice = evaluate_segmentation(model, DataLoader(test_set, batch_size=8), device="cpu")["dice"]
    path = save_state_dict(model, tmp_path_factory.mktemp("model") / "unet.pth")
    return {"path": path, "model": model, "test_dice": test_dice, "data": pets_fixture_root}


def pytest_sessionfinish(session, exitstatus):
    if _TEST_CACHE:
        shutil.rmtree(_TEST_CACHE, ignore_errors=True)


def pytest_runtest_setup(item):
    """A test marked by ``tests.helpers.requires`` in CI whose tool is missing fails with the reason."""
    for mark in item.iter_markers("missing_tool"):
        pytest.fail(f"CI needs this test to run: {mark.args[0]}", pytrace=False)


@pytest.fixture
def learned(request):
    """``learned(name, value, at_least=...)`` (or ``at_most=``): a training test's threshold.

    It asserts, and with ``$LABKIT_LEARNING_LOG`` set it first appends the value and its threshold
    there (one JSON line), so ``benchmarks/smoke_margins.py`` can measure the margin over seeds
    (``$LABKIT_TEST_SEED``) and thread counts.
    """
    def check(name: str, value: float, *, at_least: float | None = None, at_most: float | None = None):
        bound = {"at_least": at_least} if at_least is not None else {"at_most": at_most}
        if log := os.environ.get("LABKIT_LEARNING_LOG"):
            with open(log, "a") as file:
                file.write(json.dumps({"source": request.node.nodeid, "check": name, "value": float(value),
                                       **bound}) + "\n")
        check_learning(name, float(value), at_least=at_least, at_most=at_most, display=False)
    return check


@pytest.fixture(scope="module")
def cat_only_data(tmp_path_factory) -> Path:
    """Image-folder CIFAR layout whose 20 test images are all cats: a model that always says 'cat'
    scores 100%, so check tests need no training."""
    import numpy as np
    from PIL import Image

    folder = tmp_path_factory.mktemp("cats") / "test" / "cat"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(20):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{index:04d}.png")
    return folder.parent.parent


@pytest.fixture
def tiny_loader():
    """A learnable toy classification set: the label is the sign of the first feature."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(64, 4, generator=generator)
    labels = (inputs[:, 0] > 0).long()
    return DataLoader(torch.utils.data.TensorDataset(inputs, labels), batch_size=16, shuffle=True)
