"""Issue 41, item 3 and 6: check_efficient's verdicts explain a student's own network.py.

Each hand-in is labkit's own network.py for a tiny model (network_template), edited the way a student
gets it wrong. The check runs in this process; the student's code runs in the sandbox, as always.
"""
import json
import shutil

import pytest
import torch

from labkit.data.cityscapes_fixture import make_fixture
from labkit.grading.network_template import write_network
from labkit.io import save_state_dict
from labkit.models.efficient_unet import EfficientUNet
from labkit.models.unet import UNet
from labkit.quant import qat
from tests.helpers import load_check_module

# Slow (each own-network fault graded in the sandbox, on every route, ~55 s): with the TA's journeys in make journey-test,
# which CI runs after make test.
pytestmark = pytest.mark.journey

RAW = ("Facebook", "QuantizedCPU", "is only available for these backends", "Error(s) in loading state_dict")

def load_check():
    return load_check_module("check_efficient.py")


@pytest.fixture(scope="module")
def check():
    return load_check()


# (text in labkit's network.py for Task 2, what a student writes instead)
FAULTS = {
    "no_quantstub": ("x = self.inc(self.quant(x))", "x = self.inc(x)"),
    "no_dequantstub": ("return self.dequant(self.outc(x))", "return self.outc(x)"),
    "no_fuse": ("        model.fuse_model(qat=True)\n", "        pass\n"),
    "float_add": ("return self.conv(self.merge.add_relu(x, self.project_skip(skip)))",
                  "return self.conv(torch.relu(x + self.project_skip(skip)))"),
    "imports_labkit": ("from __future__ import annotations\n",
                       "from __future__ import annotations\nfrom labkit.models.efficient_unet import ECA\n"),
}


@pytest.fixture(scope="module")
def handins(tmp_path_factory):
    root = tmp_path_factory.mktemp("own_network")
    data = make_fixture(root / "cityscapes", n_train=1, n_val=2, size=(32, 64))
    torch.manual_seed(0)
    prepared = qat.prepare_qat(EfficientUNet(base_channels=4, depth=2))
    prepared(torch.rand(2, 3, 32, 64))
    int8 = qat.convert_to_int8(prepared)
    good = root / "good"
    save_state_dict(int8, good / "model_task2.pth")
    text = write_network(good / "network2", int8).read_text()
    folders = {"good": good}
    for name, (old, new) in FAULTS.items():
        assert old in text, f"labkit's network.py changed: {name} no longer applies"
        folders[name] = root / name
        shutil.copytree(good, folders[name])
        (folders[name] / "network2" / "network.py").write_text(text.replace(old, new, 1))
    return {"data": data, "root": root, **folders}


def grade(check, *argv):
    args = check.build_parser().parse_args([*map(str, argv), "--device", "cpu"])
    return check.evaluate_submission(args)


def task2(check, handins, name):
    result = grade(check, "--task", 2, "--path", handins[name] / "model_task2.pth", "--data", handins["data"],
                   "--image-size", 32, 64)
    assert not any(raw in result.message for raw in RAW), result.message
    return result


def test_the_unchanged_handin_is_graded(check, handins):
    result = task2(check, handins, "good")
    assert result.exit_code == 1 and "your network.py (network2/network.py beside the weights)" in result.message


def test_a_missing_quantstub_says_so(check, handins):
    with pytest.raises(Exception, match="QuantStub is missing") as caught:
        task2(check, handins, "no_quantstub")
    assert "x = self.quant(x)" in str(caught.value) and "network.py line" in str(caught.value)
    assert not any(raw in str(caught.value) for raw in RAW)


def test_a_missing_dequantstub_says_so(check, handins):
    with pytest.raises(Exception, match="DeQuantStub") as caught:
        task2(check, handins, "no_dequantstub")
    assert "returns a quantized (INT8) tensor" in str(caught.value)


def test_a_float_add_names_floatfunctional_and_the_line(check, handins):
    with pytest.raises(Exception, match="FloatFunctional") as caught:
        task2(check, handins, "float_add")
    assert "x + self.project_skip(skip)" in str(caught.value) and not any(raw in str(caught.value) for raw in RAW)


def test_network_py_may_not_import_labkit(check, handins):
    with pytest.raises(Exception, match="only torch, torchvision and numpy") as caught:
        task2(check, handins, "imports_labkit")
    assert "network.py imports labkit" in str(caught.value)


def test_an_unfused_load_model_lists_the_keys_in_text_and_json(check, handins, capsys):
    result = task2(check, handins, "no_fuse")
    assert result.exit_code == 2
    errors = result.metrics["load_errors"]
    assert errors["counts"]["missing"] > 10 and len(errors["missing"]) == 10 and "fuse" in errors["hint"]
    assert f"missing keys (in the model, not in the file) ({errors['counts']['missing']}; first 10): " \
           f"{', '.join(errors['missing'])}" in result.message
    code = check.main(["--task", "2", "--path", str(handins["no_fuse"] / "model_task2.pth"), "--data",
                       str(handins["data"]), "--image-size", "32", "64", "--device", "cpu", "--json"])
    verdict = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 2 and verdict["metrics"]["load_errors"] == errors and errors["missing"][9] in verdict["message"]


def test_the_reference_route_lists_the_keys_the_same_way(check, handins, tmp_path):
    state = EfficientUNet(base_channels=4, depth=2).state_dict()
    broken = {key: value for key, value in state.items() if not key.startswith("ups.1.")}
    broken["outc.weight"] = torch.zeros(8, 5, 1, 1)
    path = save_state_dict(broken, tmp_path / "model_task2.pth")
    result = grade(check, "--task", 2, "--path", path, "--data", handins["data"], "--image-size", 32, 64)
    errors = result.metrics["load_errors"]
    assert result.exit_code == 2 and errors["counts"]["missing"] > 10 and len(errors["missing"]) == 10
    assert errors["wrong_shapes"] == [{"key": "outc.weight", "file": [8, 5, 1, 1], "model": [8, 4, 1, 1]}]
    assert "wrong shapes (1): outc.weight: file (8, 5, 1, 1), model (8, 4, 1, 1)" in result.message


@pytest.mark.parametrize("classes", [7, 19])
def test_other_channel_counts_get_the_same_note_on_every_route(check, handins, tmp_path, classes):
    torch.manual_seed(classes)
    model = UNet(classes=classes, base_channels=4, depth=2).eval()
    reference, own = tmp_path / "reference", tmp_path / "own"
    save_state_dict(model, reference / "model_task1.pth")
    save_state_dict(model, own / "model_task1.pth")
    write_network(own / "network", model)
    results = [grade(check, "--task", 1, "--path", folder / "model_task1.pth", "--data", handins["data"],
                     "--image-size", 32, 64) for folder in (reference, own)]
    notes = [[line for line in r.message.splitlines() if line.startswith("note: your model returns")] for r in results]
    assert notes[0] == notes[1] and len(notes[0]) == 1, notes
    assert f"returns {classes} output channels, not 8" in notes[0][0]
    assert ("can never be predicted" if classes < 8 else "predicts no category") in notes[0][0]
    assert results[0].metrics["miou"] == results[1].metrics["miou"]
    assert results[0].metrics["output_channels"] == results[1].metrics["output_channels"] == classes
    assert "Graded with labkit's reference UNet" in results[0].message
    assert "Graded with labkit's reference" not in results[1].message


def test_a_smoke_handin_is_graded_at_its_size_and_says_the_goal_is_for_real_data(check, handins, tmp_path):
    torch.manual_seed(0)
    model = UNet(classes=8, base_channels=4, depth=2).eval()
    save_state_dict(model, tmp_path / "model_task1.pth")
    write_network(tmp_path / "network", model, smoke_image_size=(32, 64))
    assert "SMOKE_IMAGE_SIZE = (32, 64)" in (tmp_path / "network" / "network.py").read_text()
    on_fixture = grade(check, "--task", 1, "--path", tmp_path / "model_task1.pth", "--data", handins["data"])
    assert on_fixture.metrics["image_size"] == [32, 64]
    assert "missing the goal is expected" in on_fixture.message and "the size it was trained at" in on_fixture.message
    other = make_fixture(tmp_path / "other", n_train=1, n_val=1, size=(16, 32))  # not its fixture: the course's size
    elsewhere = grade(check, "--task", 1, "--path", tmp_path / "model_task1.pth", "--data", other)
    assert elsewhere.metrics["image_size"] == [256, 512] and "these frames are not the fixture's" in elsewhere.message
