"""labkit.grading.network_template: the network.py notebook 05 hands in runs without labkit and grades as the TA's."""
import json
import os
import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader

from labkit.data.cityscapes import NUM_CLASSES, Cityscapes8
from labkit.data.cityscapes_fixture import make_fixture
from labkit.evaluate import evaluate_multiclass_segmentation
from labkit.grading.call_check import call_check
from labkit.grading.network_template import inline_source, network_source, write_network
from labkit.models.efficient_unet import EfficientUNet
from labkit.models.unet import UNet
from labkit.quant.qat import convert_to_int8, prepare_qat

# Runs network.py the way a TA's machine without labkit would: cwd elsewhere, no PYTHONPATH, and any
# `import labkit` refused (labkit is installed editable in this venv, so clearing paths is not enough).
CHILD = r'''
import importlib.abc, importlib.util, sys

class NoLabkit(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "labkit":
            raise ModuleNotFoundError(f"labkit is not installed on this grader (import {name!r})")

sys.meta_path.insert(0, NoLabkit())
import torch

spec = importlib.util.spec_from_file_location("network", sys.argv[1])
network = importlib.util.module_from_spec(spec)
spec.loader.exec_module(network)
model = network.load_model(sys.argv[2])
batch = torch.load(sys.argv[3])
with torch.no_grad():
    torch.save(model(batch), sys.argv[4])
assert "labkit" not in sys.modules, "network.py imported labkit"
print("imported:", sorted(m for m in sys.modules if m.startswith("labkit")))
'''


def int8_efficient_unet():
    model = prepare_qat(EfficientUNet(classes=NUM_CLASSES, base_channels=4, depth=2))
    model(torch.rand(2, 3, 32, 64))  # the observers see data, so the INT8 qparams are real
    return convert_to_int8(model)


MODELS = {
    "unet_fp32": lambda: UNet(classes=NUM_CLASSES, base_channels=4, depth=2),
    "efficient_fp32": lambda: EfficientUNet(classes=NUM_CLASSES, base_channels=4, depth=2),
    "efficient_int8": int8_efficient_unet,
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_written_network_loads_the_weights_without_labkit_and_gives_the_same_logits(name, tmp_path):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    hand_in = tmp_path / "hand_in"
    network = write_network(hand_in / "network", model)
    torch.save(model.state_dict(), hand_in / "model.pth")
    batch = torch.rand(2, 3, 32, 64)
    torch.save(batch, tmp_path / "batch.pt")
    with torch.no_grad():
        expected = model(batch)

    elsewhere = tmp_path / "grader"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    completed = subprocess.run([sys.executable, "-c", CHILD, str(network), str(hand_in / "model.pth"),
                                str(tmp_path / "batch.pt"), str(tmp_path / "logits.pt")],
                               cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "imported: []" in completed.stdout
    assert torch.equal(torch.load(tmp_path / "logits.pt"), expected)


def test_the_child_refuses_labkit_so_a_network_that_imports_it_fails(tmp_path):
    """The no-labkit child is a real test: a network.py that imports labkit does not load in it."""
    network = tmp_path / "network.py"
    network.write_text("from labkit.models.unet import UNet\ndef load_model(path):\n    return UNet()\n")
    completed = subprocess.run([sys.executable, "-c", CHILD, str(network), "unused", "unused", "unused"],
                               cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert completed.returncode != 0 and "labkit is not installed on this grader" in completed.stderr


def test_written_int8_network_is_graded_by_the_check_through_the_sandbox(tmp_path):
    data = make_fixture(tmp_path / "cityscapes", n_train=1, n_val=2, size=(32, 64))
    torch.manual_seed(0)
    model = int8_efficient_unet()
    network = write_network(tmp_path / "student" / "network2", model)
    weights = tmp_path / "student" / "model_task2.pth"
    torch.save(model.state_dict(), weights)
    loader = DataLoader(Cityscapes8(data, "val", image_size=(32, 64)), batch_size=8)
    expected = evaluate_multiclass_segmentation(model, loader, num_classes=NUM_CLASSES, device="cpu")["mIoU"]

    check = call_check("efficient", weights, task=2, data=data, image_size=(32, 64), network=network,
                       agree={"miou": expected}, tolerance=1e-5, echo=False)
    sandbox = check.metrics["sandbox"]
    assert sandbox["exit_code"] == 0, json.dumps(sandbox)  # loaded and ran in the sandbox; exit 1 = below goal
    assert check.returncode in (0, 1) and check.metrics["int8"] is True
    assert sandbox["quantized"] and check.metrics["macs"] > 0


def test_a_labkit_import_the_copy_cannot_satisfy_is_refused():
    with pytest.raises(ValueError, match="do not define"):
        inline_source("labkit.models.unet", defined={"DoubleConv"})


def test_int8_network_for_a_unet_is_refused():
    with pytest.raises(ValueError, match="EfficientUNet only"):
        network_source("UNet", model_kwargs={"classes": 8}, int8=True)
