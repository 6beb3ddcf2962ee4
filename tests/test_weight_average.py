import pytest
import torch

from labkit.weight_average import WeightAverage


def test_an_update_moves_the_average_by_one_minus_decay_towards_the_weights():
    model = torch.nn.Linear(3, 2)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    average = WeightAverage(model, decay=0.75)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(4.0)
    average.update(model)
    for key, value in average.state_dict().items():
        torch.testing.assert_close(value, start[key] + 1.0)  # 0.75 * w + 0.25 * (w + 4)


def test_batchnorm_statistics_are_averaged_and_the_batch_counter_copied():
    model = torch.nn.BatchNorm2d(2)
    average = WeightAverage(model, decay=0.5)
    model.train()
    model(torch.randn(8, 2, 4, 4) * 3 + 5)
    average.update(model)
    torch.testing.assert_close(average.module.running_mean, model.running_mean / 2)
    assert average.module.num_batches_tracked.item() == 1


def test_the_average_is_a_frozen_copy_and_never_changes_the_model():
    model = torch.nn.Linear(3, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    average = WeightAverage(model, decay=0.9)
    with torch.no_grad():
        average.module.weight.add_(1.0)
    average.update(model)
    assert not any(p.requires_grad for p in average.module.parameters())
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])


@pytest.mark.parametrize("decay", [1.0, -0.1])
def test_a_decay_outside_zero_to_one_is_refused_with_the_range(decay):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        WeightAverage(torch.nn.Linear(1, 1), decay=decay)
