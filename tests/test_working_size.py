"""A network graded at the course's 256x512 while it works at the size it was trained at (labkit.models.working_size).

Notebook 05's CPU recipe trains at 128x256; the course grades at 256x512, batch 1. The hand-in's network owns
its resolution: frames are resized to its working size inside, logits back to the frame's size, the MACs on the
course's input are those at the working size, and the weights file keeps the bare model's keys.
"""
import importlib.util

import torch
from torch import nn
from torch.utils.data import DataLoader

from labkit.data.cityscapes import Cityscapes8
from labkit.data.cityscapes_fixture import make_fixture
from labkit.grading.network_template import write_network
from labkit.grading.reference import evaluate_multiclass_segmentation
from labkit.io import save_state_dict
from labkit.models.unet import UNet
from labkit.models.working_size import WorkingSize, at_working_size
from labkit.paths import REPO_ROOT
from labkit.profile import count_macs


class SeenSizes(nn.Module):
    """A 1x1 identity convolution that remembers the (H, W) of every input."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, kernel_size=1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        self.seen = []

    def forward(self, x):
        self.seen.append(tuple(x.shape[-2:]))
        return self.conv(x)


def test_the_model_runs_at_its_working_size_and_answers_at_the_frames_size():
    inner = SeenSizes()
    frame = torch.full((2, 3, 64, 128), 0.25)  # a constant frame stays constant through both resizes
    out = WorkingSize(inner, (16, 32))(frame)
    assert inner.seen == [(16, 32)]
    assert out.shape == (2, 3, 64, 128) and torch.allclose(out, frame)


def test_a_frame_already_at_the_working_size_is_not_resized():
    inner = SeenSizes()
    frame = torch.rand(1, 3, 16, 32)
    assert torch.equal(WorkingSize(inner, (16, 32))(frame), frame) and inner.seen == [(16, 32)]


def test_the_weights_file_of_a_wrapped_model_is_the_bare_models():
    bare = UNet(classes=8, base_channels=4, depth=2)
    wrapped = WorkingSize(bare, (32, 64))
    assert list(wrapped.state_dict()) == list(bare.state_dict())
    other = UNet(classes=8, base_channels=4, depth=2)
    WorkingSize(other, (32, 64)).load_state_dict(bare.state_dict())  # strict: the same keys load
    assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), bare.state_dict().values()))


def test_the_wrapper_is_added_only_when_the_sizes_differ():
    model = nn.Identity()
    assert at_working_size(model, (256, 512), graded_at=(256, 512)) is model
    wrapped = at_working_size(model, [128, 256], graded_at=(256, 512))
    assert isinstance(wrapped, WorkingSize) and wrapped.size == (128, 256)


def test_macs_on_the_course_input_are_the_models_at_its_working_size():
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)
    # by hand: C_in x C_out x 3 x 3 MACs per output pixel, 32 x 64 pixels at the working size
    assert count_macs(WorkingSize(conv, (32, 64)), input_size=(1, 3, 64, 128)) == 3 * 8 * 9 * 32 * 64
    assert count_macs(conv, input_size=(1, 3, 64, 128)) == 3 * 8 * 9 * 64 * 128


def test_the_check_grades_the_handed_in_network_at_the_frames_size_through_its_working_size(tmp_path):
    data = make_fixture(tmp_path / "cityscapes", n_train=1, n_val=3, size=(32, 64))
    torch.manual_seed(5)
    bare = UNet(classes=8, base_channels=4, depth=2).eval()
    with torch.no_grad():  # varied weights, so that each pixel's class depends on the resolution it is seen at
        for parameter in bare.parameters():
            parameter.normal_(0, 0.5)
    handed_in = WorkingSize(bare, (16, 32))
    weights = save_state_dict(handed_in, tmp_path / "student" / "model_task1.pth")
    network = write_network(tmp_path / "student" / "network", handed_in)
    assert "WORKING_SIZE = (16, 32)" in network.read_text()

    loader = DataLoader(Cityscapes8(data, "val", image_size=(32, 64)), batch_size=1)
    expected = evaluate_multiclass_segmentation(handed_in, loader, num_classes=8, device="cpu")
    at_frame_size = evaluate_multiclass_segmentation(bare, loader, num_classes=8, device="cpu")
    assert expected["ClassIoU"] != at_frame_size["ClassIoU"], "the resize changes nothing"

    spec = importlib.util.spec_from_file_location("check_efficient", REPO_ROOT / "checks" / "check_efficient.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    args = check.build_parser().parse_args(["--task", "1", "--path", str(weights), "--data", str(data),
                                            "--image-size", "32", "64", "--batch-size", "1", "--device", "cpu"])
    result = check.evaluate_submission(args)
    assert result.exit_code in (0, 1), result.message
    assert result.metrics["miou"] == expected["mIoU"]
    assert result.metrics["macs"] == count_macs(bare, input_size=(1, 3, 16, 32))
