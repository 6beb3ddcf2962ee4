import math

import pytest
import torch
from torch.utils.data import DataLoader

from labkit.evaluate import evaluate_classification
from labkit.metrics import dice_score
from labkit.checkpoint import resume_checkpoint, write_checkpoint
from labkit.train import fit, make_scheduler


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


def _overflowing_loss(overflow_at):
    """Cross-entropy that is +inf at the calls numbered in ``overflow_at`` (from 1): a float16 overflow."""
    calls = []

    def loss_fn(outputs, targets):
        calls.append(1)
        loss = torch.nn.functional.cross_entropy(outputs, targets)
        return loss * float("inf") if len(calls) in overflow_at else loss
    loss_fn.calls = calls
    return loss_fn


def test_a_float16_overflow_is_skipped_by_the_grad_scaler_and_training_goes_on(tiny_loader):
    # fit builds the scaler on CUDA only; a CPU GradScaler takes the same path through train_one_epoch
    from labkit.train import train_one_epoch
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    steps = []
    optimizer.register_step_post_hook(lambda *args: steps.append(1))
    scaler = torch.amp.GradScaler("cpu")
    stats = {}
    loss = train_one_epoch(model, tiny_loader, optimizer, _overflowing_loss({2}), device=torch.device("cpu"),
                           scaler=scaler, progress=False, stats=stats)
    assert stats == {"skipped_steps": 1} and len(steps) == len(tiny_loader) - 1  # that step only was skipped
    assert scaler.get_scale() == 2.0 ** 15  # halved once from 2**16
    assert math.isfinite(loss)  # the skipped step is not in the mean


def test_a_gradient_overflow_under_a_finite_loss_is_counted_as_a_skipped_step(tiny_loader):
    from labkit.train import train_one_epoch
    model = torch.nn.Linear(4, 2)
    calls = []

    def huge_loss(outputs, targets):  # finite in float32, but times the scale 2**16 its gradients overflow
        calls.append(1)
        return torch.nn.functional.cross_entropy(outputs, targets) * (1e36 if len(calls) == 1 else 1.0)
    stats = {}
    train_one_epoch(model, tiny_loader, torch.optim.SGD(model.parameters(), lr=0.1), huge_loss,
                    device=torch.device("cpu"), scaler=torch.amp.GradScaler("cpu"), progress=False, stats=stats)
    assert stats == {"skipped_steps": 1}
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_loss_that_stays_non_finite_under_the_grad_scaler_stops_after_max_overflow_steps(tiny_loader):
    from labkit.train import train_one_epoch
    model = torch.nn.Linear(4, 2)
    loss_fn = _overflowing_loss(set(range(1, 100)))
    with pytest.raises(FloatingPointError, match="3 steps in a row under float16"):
        train_one_epoch(model, tiny_loader, torch.optim.SGD(model.parameters(), lr=0.1), loss_fn,
                        device=torch.device("cpu"), scaler=torch.amp.GradScaler("cpu"), progress=False,
                        max_overflow_steps=3)
    assert len(loss_fn.calls) == 3


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


# ----------------------------------------------------------------------------- issue 36: resume anywhere

@pytest.mark.filterwarnings("ignore:for (weight|bias). copying from a non-meta parameter")
def test_resume_reads_to_the_cpu_so_a_model_on_another_device_gets_its_rng_states_back(tiny_loader, tmp_path):
    """Loading with map_location=<the GPU> put the RNG states there too, and set_rng_state wants CPU
    bytes: every resume on CUDA crashed. A model on `meta` stands in for the GPU."""
    _fit(torch.nn.Linear(4, 2), tiny_loader, tmp_path, epochs=1, seed=1)
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    elsewhere = torch.nn.Linear(4, 2, device="meta")
    optimizer = torch.optim.SGD(elsewhere.parameters(), lr=0.1, momentum=0.9)
    torch.manual_seed(123)
    epoch, *_ = resume_checkpoint(tmp_path / "last.pt", elsewhere, optimizer, device="meta")
    assert epoch == 1
    assert optimizer.state[elsewhere.weight]["momentum_buffer"].device.type == "meta"  # went where the model is
    assert torch.equal(torch.get_rng_state(), saved["rng"]["torch"])


def test_cuda_rng_states_go_back_as_cpu_bytes_and_only_to_the_gpus_present(tiny_loader, tmp_path, monkeypatch):
    _fit(torch.nn.Linear(4, 2), tiny_loader, tmp_path, epochs=1, seed=1)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    state["rng"]["cuda"] = [torch.get_rng_state(), torch.get_rng_state()]  # written on a 2-GPU machine
    torch.save(state, tmp_path / "last.pt")
    restored = []

    def set_rng_state(new_state, device="cuda"):
        restored.append((new_state.device.type, new_state.dtype, device))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_rng_state)
    monkeypatch.setattr(torch.cuda.random, "set_rng_state", set_rng_state)
    model = torch.nn.Linear(4, 2)
    resume_checkpoint(tmp_path / "last.pt", model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    assert restored == [("cpu", torch.uint8, 0)]


def test_a_gpu_recipes_unet_checkpoint_is_refused_by_the_cpu_recipe_with_what_to_do(tmp_path):
    """Colab reconnects without a GPU: the CPU recipe's narrow UNet meets the GPU recipe's last.pt."""
    from labkit.models.unet import UNet
    wide = UNet(base_channels=8, depth=2)
    write_checkpoint(tmp_path / "last.pt", wide, torch.optim.AdamW(wide.parameters()), epoch=3,
                     best_metric=0.5, best_epoch=3, history=[], recipe="FULL-GPU", device="cuda")
    narrow = UNet(base_channels=4, depth=2)
    before = {k: v.clone() for k, v in narrow.state_dict().items()}
    with pytest.raises(ValueError, match="another training recipe") as refused:
        fit(narrow, [], loss_fn=torch.nn.BCEWithLogitsLoss(), epochs=5, device="cpu", checkpoint_dir=tmp_path,
            resume=True, recipe="FULL-CPU", progress=False, log=None)
    message = str(refused.value)
    assert "'inc.double_conv.0.weight' is (8, 3, 3, 3) there and (4, 3, 3, 3) here" in message
    assert "recipe 'FULL-GPU'" in message and "trained on cuda" in message
    assert "own checkpoint folder" in message and "RESUME = False" in message
    assert all(torch.equal(narrow.state_dict()[k], v) for k, v in before.items())  # nothing was loaded


def test_another_recipe_name_or_optimizer_is_refused_even_when_the_shapes_fit(tiny_loader, tmp_path):
    _fit(torch.nn.Linear(4, 2), tiny_loader, tmp_path, epochs=1, recipe="FULL-GPU")
    with pytest.raises(ValueError, match="recorded as recipe 'FULL-GPU', this run is 'FULL-CPU'"):
        _fit(torch.nn.Linear(4, 2), tiny_loader, tmp_path, epochs=2, resume=True, recipe="FULL-CPU")
    model = torch.nn.Linear(4, 2)
    with pytest.raises(ValueError, match="trained with SGD, this run uses AdamW"):
        fit(model, tiny_loader, loss_fn=torch.nn.CrossEntropyLoss(), epochs=2, device="cpu",
            checkpoint_dir=tmp_path, resume=True, progress=False, log=None)


def test_a_checkpoint_without_the_recipe_record_resumes_when_it_fits_and_is_refused_when_not(tiny_loader, tmp_path):
    _fit(torch.nn.Linear(4, 2), tiny_loader, tmp_path, epochs=1, seed=1)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    del state["recipe"]  # as written before issue 36
    torch.save(state, tmp_path / "last.pt")
    resumed = _fit(torch.nn.Linear(4, 2), tiny_loader, tmp_path, epochs=2, resume=True)
    assert [row["epoch"] for row in resumed["history"]] == [1, 2]
    torch.save(state, tmp_path / "last.pt")
    with pytest.raises(ValueError, match=r"'weight' is \(2, 4\) there and \(3, 4\) here.*before checkpoints"):
        _fit(torch.nn.Linear(4, 3), tiny_loader, tmp_path, epochs=2, resume=True)


def test_a_checkpoint_written_on_cuda_resumes_on_the_cpu_and_says_so(tiny_loader, tmp_path):
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    write_checkpoint(tmp_path / "last.pt", model, optimizer, epoch=1, best_metric=None, best_epoch=None,
                     history=[{"epoch": 1}], device="cuda")
    lines = []
    model = torch.nn.Linear(4, 2)
    result = fit(model, tiny_loader, loss_fn=torch.nn.CrossEntropyLoss(), epochs=2, device="cpu",
                 optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), checkpoint_dir=tmp_path,
                 resume=True, progress=False, log=lines.append)
    assert [row["epoch"] for row in result["history"]] == [1, 2]
    assert any("written on cuda and resumes on cpu" in line for line in lines), lines


def _learning_rates(schedule, *, epochs=2, steps_per_epoch=10, lr=0.1, **options):
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=lr)
    scheduler, per_step = make_scheduler(optimizer, schedule, epochs=epochs, lr=lr, steps_per_epoch=steps_per_epoch,
                                         **options)
    rates = []
    for _ in range(epochs * steps_per_epoch if per_step else epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates, per_step


def test_the_step_schedule_keeps_the_rate_then_a_tenth_for_the_last_30_percent_of_the_steps():
    rates, per_step = _learning_rates("step", epochs=2, steps_per_epoch=10)
    assert per_step and rates == pytest.approx([0.1] * 14 + [0.01] * 6)


@pytest.mark.parametrize("pct_start, peak_step", [(0.2, 3), (0.1, 1)])
def test_onecycle_warms_up_over_pct_start_of_the_steps_then_anneals(pct_start, peak_step):
    rates, per_step = _learning_rates("onecycle", pct_start=pct_start)
    assert per_step and max(rates) == pytest.approx(0.1) and rates.index(max(rates)) == peak_step
    assert rates[-1] < 1e-3 and rates == sorted(rates[:peak_step + 1]) + sorted(rates[peak_step + 1:], reverse=True)


def test_cosine_steps_per_epoch_and_an_unknown_schedule_names_the_choices():
    rates, per_step = _learning_rates("cosine", epochs=2)
    assert not per_step and rates == pytest.approx([0.1, 0.05])
    with pytest.raises(ValueError, match="cosine, onecycle, step"):
        _learning_rates("linear")
