"""Issue 41, item 1: one Lab 05 hand-in, one grade, whichever route the TA takes.

The hand-in's network.py differs from labkit's UNet (its ``Up`` concatenates ``[x, skip]``, labkit's
``[skip, x]``): the weights load into either, so only grading the student's own file gives the student's
numbers. The single-file check (network.py found beside the weights, as the course's test uses
"./network/network.py & model_task1.pth"), ``--network``, ``python -m labkit grade`` and the batch grader's
folder mode must all report the numbers of the student's network, computed here directly.
"""
import importlib.util
import shutil

import pytest
import torch
from torch.utils.data import DataLoader

from labkit.data.cityscapes import Cityscapes8
from labkit.data.cityscapes_fixture import make_fixture
from labkit.grading.batch import grade_folder
from labkit.grading.grade_class import grade_class
from labkit.grading.network_template import write_network
from labkit.grading.reference import evaluate_multiclass_segmentation
from labkit.io import save_state_dict
from labkit.models.unet import UNet
from labkit.paths import REPO_ROOT

# Slow (one hand-in walked through every route the TA may take, ~22 s): with the TA's journeys in make journey-test,
# which CI runs after make test.
pytestmark = pytest.mark.journey

KIT_UP = "return self.conv(torch.cat([skip, x], dim=1))"
OWN_UP = "return self.conv(torch.cat([x, skip], dim=1))"
SIZE = ["--image-size", "32", "64"]
SAME = ("miou", "overall_accuracy", "mean_accuracy", "class_iou", "macs", "size_kb", "images", "image_size")


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def handin(tmp_path_factory):
    root = tmp_path_factory.mktemp("routes")
    data = make_fixture(root / "cityscapes", n_train=1, n_val=3, size=(32, 64))
    student = root / "class" / "123"          # the class folder the batch grader reads: one student
    torch.manual_seed(3)
    model = UNet(classes=8, base_channels=4, depth=2).eval()
    weights = save_state_dict(model, student / "model_task1.pth")
    network = write_network(student / "network", model)
    text = network.read_text()
    assert KIT_UP in text, "labkit's Up changed: update this test's edit"
    network.write_text(text.replace(KIT_UP, OWN_UP))
    own = load(network, "student_network_123").load_model(str(weights)).eval()
    loader = DataLoader(Cityscapes8(data, "val", image_size=(32, 64)), batch_size=8)
    expected = evaluate_multiclass_segmentation(own, loader, num_classes=8, device="cpu")
    kit = evaluate_multiclass_segmentation(model, loader, num_classes=8, device="cpu")
    assert (kit["mIoU"], kit["OverallAcc"]) != (expected["mIoU"], expected["OverallAcc"]), "the edit changes nothing"
    return {"root": root, "data": data, "weights": weights, "network": network, "expected": expected, "kit": kit}


@pytest.fixture(scope="module")
def check():
    return load(REPO_ROOT / "checks" / "check_efficient.py", "check_efficient")


def metrics_of(check, *argv):
    args = check.build_parser().parse_args([*map(str, argv), *SIZE, "--device", "cpu"])
    result = check.evaluate_submission(args)
    assert result.exit_code in (0, 1), result.message
    return result


def test_every_route_grades_the_students_own_network_with_the_same_numbers(check, handin, tmp_path):
    beside = metrics_of(check, "--task", 1, "--path", handin["weights"], "--data", handin["data"])
    elsewhere = tmp_path / "elsewhere" / "network.py"   # --network names a file somewhere else: it wins
    elsewhere.parent.mkdir()
    shutil.copy(handin["network"], elsewhere)
    named = metrics_of(check, "--task", 1, "--path", handin["weights"], "--data", handin["data"], "--network", elsewhere)
    arguments = ["--data", str(handin["data"]), "--device", "cpu", *SIZE]
    folder_rows = grade_folder(handin["root"] / "class", "efficient", check_arguments=arguments, timeout=300,
                               progress=False)
    class_rows = grade_class(handin["root"] / "class", "efficient", out=tmp_path / "grades.csv",
                             check_arguments=arguments, timeout=300, progress=False)
    assert [(row["id"], row["status"], row["exit_code"]) for row in folder_rows] == [("123", "ok", 1)]
    assert [(row["id"], row["status"], row["exit_code"]) for row in class_rows] == [("123", "ok", 1)]

    expected = handin["expected"]
    routes = {"beside": beside.metrics, "--network": named.metrics, "grade_folder": folder_rows[0]["metrics"],
              "labkit grade": class_rows[0]["metrics"]}
    for route, metrics in routes.items():
        assert metrics["miou"] == pytest.approx(expected["mIoU"], abs=1e-9), route
        assert metrics["overall_accuracy"] == pytest.approx(expected["OverallAcc"], abs=1e-9), route
        assert {key: metrics[key] for key in SAME} == {key: routes["beside"][key] for key in SAME}, route
        assert metrics["architecture"] == "network.py", route
    assert "your network.py (network/network.py beside the weights)" in beside.message
    assert f"your network.py (--network {elsewhere})" in named.message
    assert routes["beside"]["miou"] != pytest.approx(handin["kit"]["mIoU"], abs=1e-9) or \
        routes["beside"]["overall_accuracy"] != pytest.approx(handin["kit"]["OverallAcc"], abs=1e-9)


def test_without_network_py_the_verdict_says_it_graded_labkits_reference(check, handin, tmp_path):
    alone = tmp_path / "model_task1.pth"
    shutil.copy(handin["weights"], alone)
    result = metrics_of(check, "--task", 1, "--path", alone, "--data", handin["data"])
    assert result.metrics["architecture"] == "labkit UNet"
    assert result.metrics["miou"] == pytest.approx(handin["kit"]["mIoU"], abs=1e-9)
    assert "Graded with labkit's reference UNet (no network/network.py beside model_task1.pth" in result.message
