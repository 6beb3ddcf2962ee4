import math

import pytest
import torch
from torch.utils.data import DataLoader

from labkit.evaluate import evaluate_classification
from labkit.metrics import dice_score
from labkit.train import fit


def _fit(model, loader, checkpoint_dir, epochs, **kwargs):
    return fit(model, loader, loss_fn=torch.nn.CrossEntropyLoss(), epochs=epochs,
               optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
               valid_loader=loader, evaluate=evaluate_classification, device="cpu",
               checkpoint_dir=checkpoint_dir, progress=False, log=None, **kwargs)


def test_resume_after_interruption_equals_an_uninterrupted_run(tiny_loader, tmp_path):
    torch.manual_seed(0)
    straight = torch.nn.Linear(4, 2)
    interrupted = torch.nn.Linear(4, 2)
    interrupted.load_state_dict(straight.state_dict())

    full = _fit(straight, tiny_loader, tmp_path / "a", epochs=4, seed=1, restore_best=False)
    _fit(interrupted, tiny_loader, tmp_path / "b", epochs=2, seed=1, restore_best=False)
    fresh = torch.nn.Linear(4, 2)  # a new process after a disconnect: weights come from last.pt
    resumed = _fit(fresh, tiny_loader, tmp_path / "b", epochs=4, resume=True, restore_best=False)

    assert [row["epoch"] for row in resumed["history"]] == [1, 2, 3, 4]
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value)
    assert resumed["history"][-1]["train_loss"] == pytest.approx(full["history"][-1]["train_loss"])


def test_best_checkpoint_holds_the_best_epochs_weights(tiny_loader, tmp_path):
    model = torch.nn.Linear(4, 2)
    result = _fit(model, tiny_loader, tmp_path, epochs=3, seed=0)
    accuracies = [row["accuracy"] for row in result["history"]]
    assert result["best_metric"] == max(accuracies)
    assert result["best_epoch"] == accuracies.index(max(accuracies)) + 1
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    for key, value in model.state_dict().items():  # restore_best=True put them back in the model
        torch.testing.assert_close(best[key], value)


def test_history_rows_carry_loss_time_and_metrics(tiny_loader):
    result = fit(torch.nn.Linear(4, 2), tiny_loader, loss_fn=torch.nn.CrossEntropyLoss(), epochs=1,
                 valid_loader=tiny_loader, evaluate=evaluate_classification, device="cpu",
                 progress=False, log=None)
    row = result["history"][0]
    assert {"epoch", "train_loss", "lr", "seconds", "peak_memory_mb", "accuracy"} <= set(row)
    assert math.isfinite(row["train_loss"]) and row["seconds"] > 0


def test_a_diverging_loss_stops_training_with_a_clear_error(tiny_loader):
    def nan_loss(outputs, targets):
        return outputs.sum() * float("nan")
    with pytest.raises(FloatingPointError, match="learning rate"):
        fit(torch.nn.Linear(4, 2), tiny_loader, loss_fn=nan_loss, epochs=1, device="cpu",
            progress=False, log=None)


def test_cpu_bfloat16_runs_the_forward_in_bfloat16_and_the_loss_in_float32(tiny_loader):
    seen = {"forward": set(), "loss": set()}
    model = torch.nn.Linear(4, 2)
    model.register_forward_hook(lambda module, inputs, output: seen["forward"].add(output.dtype))

    def loss_fn(outputs, targets):
        seen["loss"].add(outputs.dtype)
        return torch.nn.functional.cross_entropy(outputs, targets)
    result = fit(model, tiny_loader, loss_fn=loss_fn, epochs=1, device="cpu", cpu_bfloat16=True,
                 progress=False, log=None)
    assert seen == {"forward": {torch.bfloat16}, "loss": {torch.float32}}
    assert model.weight.dtype == torch.float32 and math.isfinite(result["history"][0]["train_loss"])


def test_training_stays_float32_unless_cpu_bfloat16_is_asked_for(tiny_loader):
    seen = set()
    model = torch.nn.Linear(4, 2)
    model.register_forward_hook(lambda module, inputs, output: seen.add(output.dtype))
    fit(model, tiny_loader, loss_fn=torch.nn.CrossEntropyLoss(), epochs=1, device="cpu",
        progress=False, log=None)
    assert seen == {torch.float32}


def test_short_training_on_the_pet_fixture_beats_both_trivial_baselines(trained_unet):
    from labkit.data import pets
    test_set = pets.OxfordIIITPet(trained_unet["data"], "test", image_size=64, cache=True)
    masks = torch.cat([mask for _, mask in DataLoader(test_set, batch_size=20)])
    all_pet = dice_score(torch.ones_like(masks), masks).item()
    all_background = dice_score(torch.zeros_like(masks), masks).item()
    assert all_background == 0.0
    assert trained_unet["test_dice"] > max(0.6, all_pet + 0.1)


def test_same_seed_gives_the_same_smoke_metrics_twice_on_cpu(pets_fixture_root):
    from labkit.data import pets
    from labkit.evaluate import evaluate_segmentation
    from labkit.losses import BCEDiceLoss
    from labkit.models.unet import UNet

    def smoke_run():
        train_set = pets.OxfordIIITPet(pets_fixture_root, "train", image_size=32, cache=True,
                                       transform=pets.train_transform(32, seed=0))
        valid_set = pets.OxfordIIITPet(pets_fixture_root, "valid", image_size=32, cache=True)
        torch.manual_seed(0)
        model = UNet(base_channels=4, depth=2)
        result = fit(model, DataLoader(train_set, batch_size=8, shuffle=True), loss_fn=BCEDiceLoss(),
                     epochs=2, valid_loader=DataLoader(valid_set, batch_size=8),
                     evaluate=evaluate_segmentation, device="cpu", seed=0, progress=False, log=None)
        return [(row["train_loss"], row["dice"]) for row in result["history"]]

    assert smoke_run() == smoke_run()


class _RecordingSGD(torch.optim.SGD):
    """SGD that keeps a copy of the weights after every step."""

    def __init__(self, params, **kwargs):
        params = list(params)
        super().__init__(params, **kwargs)
        self.trajectory = []

    def step(self, closure=None):
        result = super().step(closure)
        self.trajectory.append([p.detach().clone() for p in self.param_groups[0]["params"]])
        return result


def test_fit_with_ema_decay_hands_back_the_moving_average_of_every_steps_weights(tiny_loader):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    expected = [p.detach().clone() for p in model.parameters()]
    optimizer = _RecordingSGD(model.parameters(), lr=0.1, momentum=0.9)
    fit(model, tiny_loader, loss_fn=torch.nn.CrossEntropyLoss(), epochs=2, optimizer=optimizer,
        ema_decay=0.8, device="cpu", seed=1, progress=False, log=None)
    for weights in optimizer.trajectory:  # 2 epochs x 4 batches
        expected = [0.8 * old + 0.2 * new for old, new in zip(expected, weights)]
    assert len(optimizer.trajectory) == 8
    for parameter, value in zip(model.parameters(), expected):
        torch.testing.assert_close(parameter.detach(), value)
    assert not torch.allclose(model.weight, optimizer.trajectory[-1][0])  # not simply the last step


def test_with_ema_decay_the_validation_metrics_are_the_averages(tiny_loader):
    model = torch.nn.Linear(4, 2)
    result = _fit(model, tiny_loader, None, epochs=2, seed=0, ema_decay=0.9, restore_best=False)
    final = evaluate_classification(model, tiny_loader, device="cpu")
    assert result["history"][-1]["accuracy"] == pytest.approx(final["accuracy"])


def test_resume_with_ema_decay_continues_the_average_from_the_checkpoint(tiny_loader, tmp_path):
    torch.manual_seed(0)
    straight = torch.nn.Linear(4, 2)
    start = {k: v.clone() for k, v in straight.state_dict().items()}
    _fit(straight, tiny_loader, tmp_path / "a", epochs=4, seed=1, ema_decay=0.9, restore_best=False)
    interrupted = torch.nn.Linear(4, 2)
    interrupted.load_state_dict(start)
    _fit(interrupted, tiny_loader, tmp_path / "b", epochs=2, seed=1, ema_decay=0.9, restore_best=False)
    fresh = torch.nn.Linear(4, 2)
    _fit(fresh, tiny_loader, tmp_path / "b", epochs=4, resume=True, ema_decay=0.9, restore_best=False)
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value)
