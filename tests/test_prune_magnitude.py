"""labkit.prune.magnitude: sparsity counted as the course does, exact global targets, schedule, floor, saving."""

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from labkit.prune import magnitude
from labkit.data import cifar10
from labkit.io import load_into, load_state_dict_file
from labkit.models.resnet20 import resnet20


def hand_made_model() -> nn.Sequential:
    """Conv 2x1x2x2 (8 weights, 3 zero), BatchNorm, Linear 2x4 (8 weights, 1 zero); zeros in
    the biases and BatchNorm must not count: sparsity = 4 / 16 = 25%."""
    model = nn.Sequential(nn.Conv2d(1, 2, 2), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([0., 1., 0., 2., 3., 0., 4., 5.]).view(2, 1, 2, 2))
        model[0].bias.zero_()
        model[1].weight.zero_()
        model[3].weight.copy_(torch.tensor([[1., 2., 3., 4.], [5., 6., 7., 0.]]))
        model[3].bias.zero_()
    return model


def test_course_sparsity_counts_only_conv_and_linear_weights():
    model = hand_made_model()
    assert magnitude.course_sparsity(model) == 25.0
    assert magnitude.course_sparsity(model.state_dict()) == 25.0


def test_course_sparsity_of_a_still_pruned_model_and_its_state_dict():
    model = hand_made_model()
    torch_prune.custom_from_mask(model[3], "weight", torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]]))
    assert "3.weight_orig" in model.state_dict()
    assert magnitude.course_sparsity(model) == 5 / 16 * 100
    assert magnitude.course_sparsity(model.state_dict()) == 5 / 16 * 100


def test_layer_sparsity_rows_add_up_to_the_course_number():
    rows = magnitude.layer_sparsity(hand_made_model())
    assert [(row["layer"], row["weights"], row["zeros"]) for row in rows] == [("0", 8, 3), ("3", 8, 1)]


@pytest.mark.parametrize("target", [0.5, 0.9, 0.97])
def test_prune_to_reaches_the_target_exactly_and_spares_light_layers(target):
    model = resnet20()
    sparsity = magnitude.prune_to(model, target, light_layers={"conv1": 0.3, "fc": 0.0})
    zeros_needed = -(-target * 270_896 // 1)  # ceil
    assert sparsity == pytest.approx(100 * zeros_needed / 270_896)
    rows = {row["layer"]: row for row in magnitude.layer_sparsity(model)}
    assert rows["conv1"]["zeros"] == 130  # ceil(0.3 * 432), pruned on its own
    assert rows["fc"]["zeros"] == 0


def test_global_ranking_removes_the_smallest_magnitudes():
    model = resnet20()
    magnitude.prune_to(model, 0.6, light_layers={"conv1": 0.0, "fc": 0.0})
    kept, removed = [], []
    for name, layer in magnitude.prunable_layers(model).items():
        if name in ("conv1", "fc"):
            continue
        absolute = layer.weight_orig.detach().abs()
        kept.append(absolute[layer.weight_mask == 1])
        removed.append(absolute[layer.weight_mask == 0])
    assert torch.cat(removed).max() <= torch.cat(kept).min()


def two_conv_model_with_one_small_scale_layer() -> nn.Sequential:
    """Two 8x8x3x3 convolutions (576 weights each, |w| in [1, 2)); the second's weights are 100x
    smaller, as a layer before a BatchNorm may be without being less important."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 3))
    with torch.no_grad():
        for conv, scale in ((model[0], 1.0), (model[2], 0.01)):
            conv.weight.copy_(scale * (1 + torch.rand_like(conv.weight)) * torch.randn_like(conv.weight).sign())
    return model


def test_magnitude_ranking_empties_a_small_scale_layer_and_lamp_does_not():
    by_magnitude, by_lamp = two_conv_model_with_one_small_scale_layer(), two_conv_model_with_one_small_scale_layer()
    assert magnitude.prune_to(by_magnitude, 0.5, light_layers={}) == 50.0
    assert magnitude.prune_to(by_lamp, 0.5, light_layers={}, ranking="lamp") == 50.0
    magnitude_rows = {row["layer"]: row["sparsity"] for row in magnitude.layer_sparsity(by_magnitude)}
    lamp_rows = {row["layer"]: row["sparsity"] for row in magnitude.layer_sparsity(by_lamp)}
    assert magnitude_rows["2"] == 100.0  # |w| compares scales, not importance
    assert 25.0 < lamp_rows["2"] < 75.0  # LAMP scores are scale-free: both layers lose about half


def test_lamp_scores_are_scale_free_and_order_each_layer_by_magnitude():
    weight = torch.randn(16, 8, 3, 3)
    scores = magnitude.lamp_scores(weight)
    assert torch.allclose(scores, magnitude.lamp_scores(100 * weight))
    by_magnitude = scores.flatten()[weight.abs().flatten().argsort()]
    assert (by_magnitude.diff() >= 0).all()
    assert scores.max() == 1.0


def test_prune_to_refuses_an_unknown_ranking():
    with pytest.raises(ValueError, match="ranking must be one of"):
        magnitude.prune_to(resnet20(), 0.5, ranking="random")


def test_pruning_again_keeps_earlier_zeros_and_counts_unmasked_zeros():
    model = resnet20()
    magnitude.prune_to(model, 0.5)
    first_zeros = {name: effective == 0 for name, effective in
                   ((n, magnitude.effective_weight(l)) for n, l in magnitude.prunable_layers(model).items())}
    magnitude.make_permanent(model)  # zeros are now plain 0.0 values, no masks
    assert magnitude.prune_to(model, 0.8) == pytest.approx(100 * (-(-0.8 * 270_896 // 1)) / 270_896)
    for name, layer in magnitude.prunable_layers(model).items():
        assert (magnitude.effective_weight(layer)[first_zeros[name]] == 0).all()


def test_fine_tuning_keeps_pruned_weights_at_zero(tmp_path):
    root = cifar10.make_fixture(tmp_path, n_train=40, n_test=20)
    train_loader, _, _ = cifar10.cifar10_loaders(root, batch_size=20)
    model = resnet20()
    before = magnitude.prune_to(model, 0.8)
    magnitude.fine_tune(model, train_loader, epochs=1, lr=0.05, device="cpu", progress=False)
    assert magnitude.course_sparsity(model) == before
    magnitude.make_permanent(model)
    assert magnitude.course_sparsity(model) == before


def test_schedule_reaches_its_final_target_on_the_fixture(tmp_path):
    root = cifar10.make_fixture(tmp_path, n_train=40, n_test=20)
    train_loader, test_loader, _ = cifar10.cifar10_loaders(root, batch_size=20)
    model = resnet20()
    rows = magnitude.iterative_prune(model, train_loader, test_loader, targets=(0.5, 0.9),
                                     epochs_per_round=(0.5, 1), accuracy_floor=0.0, device="cpu",
                                     progress=False, log=None)
    assert [row["round"] for row in rows] == [0, 1, 2] and all(row["kept"] for row in rows)
    assert rows[-1]["sparsity"] >= 90.0
    assert magnitude.course_sparsity(model) == rows[-1]["sparsity"]


def test_accuracy_floor_stops_and_keeps_the_last_passing_round(monkeypatch):
    scripted = iter([95.0, 93.0, 91.0, 80.0])  # start, round 1, round 2, round 3 (below the floor)
    monkeypatch.setattr(magnitude, "evaluate_classification", lambda *a, **k: {"accuracy": next(scripted)})
    model = resnet20()
    rows = magnitude.iterative_prune(model, None, None, targets=(0.5, 0.7, 0.9, 0.95), epochs_per_round=0,
                                     accuracy_floor=90.0, device="cpu", log=None)
    assert [row["kept"] for row in rows] == [True, True, True, False]
    assert rows[-1]["sparsity"] >= 90.0
    assert magnitude.course_sparsity(model) == pytest.approx(rows[2]["sparsity"])  # back to 70%
    # the model still works and its masks are those of round 2
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    assert magnitude.course_sparsity(magnitude.make_permanent(model)) == pytest.approx(rows[2]["sparsity"])


def test_targets_must_increase():
    with pytest.raises(ValueError, match="increasing"):
        magnitude.iterative_prune(resnet20(), None, None, targets=(0.9, 0.5), log=None)


def test_saved_file_strict_loads_into_a_fresh_resnet20(tmp_path):
    model = resnet20()
    sparsity = magnitude.prune_to(model, 0.9)
    path = magnitude.save_pruned(model, tmp_path / "123_pruning.pt")
    state = load_state_dict_file(path)
    assert not any(key.endswith(("_orig", "_mask")) for key in state)
    fresh = load_into(resnet20(), state)
    assert magnitude.course_sparsity(fresh) == sparsity
    # and the course's own way of loading it
    resnet20().load_state_dict(torch.load(path, weights_only=True), strict=True)
