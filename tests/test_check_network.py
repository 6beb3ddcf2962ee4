"""--network: the student's own network.py graded through the sandbox, metric computed by the check."""
import importlib.util
import json
import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader

from labkit.data import pets
from labkit.data.cityscapes import Cityscapes8
from labkit.data.cityscapes_fixture import make_fixture
from labkit.evaluate import evaluate_multiclass_segmentation, evaluate_segmentation
from labkit.grading.tasks import COURSE_INPUT
from labkit.paths import REPO_ROOT
from labkit.profile import count_macs, model_size_bytes

STUDENTS = REPO_ROOT / "tests" / "students"


def run(check, *args):
    completed = subprocess.run([sys.executable, str(REPO_ROOT / "checks" / check), *map(str, args)],
                               capture_output=True, text=True, timeout=600)
    return completed.returncode, completed.stdout + completed.stderr


def load_student(name):
    spec = importlib.util.spec_from_file_location(f"student_{name}", STUDENTS / name / "network.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BINARY_NETWORK = '''
import torch
from torch import nn

class PetNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1))

    def forward(self, x):
        return self.features(x)

def load_model(path):
    model = PetNet()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model
'''


def test_segmentation_network_dice_is_the_dice_of_the_students_model(tmp_path, pets_fixture_root):
    folder = tmp_path / "student" / "network"
    folder.mkdir(parents=True)
    (folder / "network.py").write_text(BINARY_NETWORK)
    namespace = {}
    exec(BINARY_NETWORK, namespace)
    torch.manual_seed(0)
    model = namespace["PetNet"]().eval()
    torch.save(model.state_dict(), tmp_path / "student" / "model.pth")
    code, output = run("check_segmentation.py", "--network", folder / "network.py",
                       "--path", tmp_path / "student" / "model.pth", "--data", pets_fixture_root,
                       "--image-size", 32, "--json")
    verdict = json.loads(output.splitlines()[-1])
    loader = DataLoader(pets.OxfordIIITPet(pets_fixture_root, "test", image_size=32), batch_size=8)
    expected = evaluate_segmentation(model, loader, device="cpu")["dice"]
    assert code in (0, 1), output
    assert verdict["metrics"]["dice"] == pytest.approx(expected, abs=1e-5)
    sandbox = verdict["metrics"]["sandbox"]
    assert sandbox["exit_code"] == 0 and len(sandbox["network_sha256"]) == 64
    assert "Untrusted" in verdict["message"] and sandbox["model_sha256"] in verdict["message"]


def test_efficient_network_miou_and_macs_are_the_students_models(tmp_path):
    data = make_fixture(tmp_path / "cityscapes", n_train=1, n_val=2, size=(32, 64))
    student = load_student("tiny_unet")
    torch.manual_seed(0)
    model = student.TinySegNet().eval()
    weights = tmp_path / "model_task1.pth"
    torch.save(model.state_dict(), weights)
    code, output = run("check_efficient.py", "--task", 1, "--network", STUDENTS / "tiny_unet" / "network.py",
                       "--path", weights, "--data", data, "--image-size", 32, 64, "--json")
    verdict = json.loads(output.splitlines()[-1])
    loader = DataLoader(Cityscapes8(data, "val", image_size=(32, 64)), batch_size=8)
    expected = evaluate_multiclass_segmentation(model, loader, num_classes=8, device="cpu")["mIoU"]
    assert code == 1, output   # a random model is below the goal
    assert verdict["metrics"]["miou"] == pytest.approx(expected, abs=1e-6)
    assert verdict["metrics"]["macs"] == count_macs(model, input_size=COURSE_INPUT)
    assert verdict["metrics"]["size_kb"] == pytest.approx(model_size_bytes(model) / 1024)
    assert f"flops ={verdict['metrics']['macs']}" in verdict["message"]


def test_a_network_that_fails_to_import_is_the_students_fault_exit_2(tmp_path, pets_fixture_root):
    folder = tmp_path / "network"
    folder.mkdir()
    (folder / "network.py").write_text("import a_module_nobody_has\n")
    (tmp_path / "model.pth").write_bytes(b"weights")
    code, output = run("check_segmentation.py", "--network", folder / "network.py", "--path",
                       tmp_path / "model.pth", "--data", pets_fixture_root, "--image-size", 32)
    assert code == 2, output
    assert "Oops! Something is wrong!" in output and "network.py" in output


def test_efficient_accepts_the_courses_positional_model_and_data_paths(tmp_path):
    from labkit.models.unet import UNet
    from labkit.io import save_state_dict
    data = make_fixture(tmp_path / "cityscapes", n_train=1, n_val=2, size=(32, 64))
    weights = save_state_dict(UNet(classes=8, base_channels=4, depth=2), tmp_path / "model_task1.pth")
    code, output = run("check_efficient.py", "--task", 1, weights, data, "--image-size", 32, 64, "--json")
    verdict = json.loads(output.splitlines()[-1])
    assert code == 1, output
    assert verdict["metrics"]["images"] == 2 and "Final IoU = " in verdict["message"]
