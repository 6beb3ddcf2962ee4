"""labkit.prune.gradual: the cubic schedule, and what the loop leaves behind (the loss: test_prune_distill)."""
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from labkit.models.resnet20 import resnet20
from labkit.prune.gradual import cubic_sparsity, gradual_prune
from labkit.prune.magnitude import course_sparsity, make_permanent, prunable_layers


def test_cubic_sparsity_starts_at_start_ends_at_final_and_never_decreases():
    values = [cubic_sparsity(step, steps=10, final=0.9, start=0.2) for step in range(15)]
    assert values[0] == pytest.approx(0.2) and values[10] == pytest.approx(0.9) and values[14] == pytest.approx(0.9)
    assert all(later >= earlier for earlier, later in zip(values, values[1:]))
    assert values[1] - values[0] > values[9] - values[8]  # fast first, slow at the end


def _tiny_loader(count=64):
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(count, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 10, (count,), generator=generator)
    return DataLoader(TensorDataset(images, labels), batch_size=16, shuffle=True)


@pytest.mark.parametrize("distill_alpha", [0.0, 0.7])
def test_gradual_prune_reaches_the_final_sparsity_with_masks_attached_and_zeros_kept(distill_alpha):
    torch.manual_seed(0)
    model = resnet20()
    history = gradual_prune(model, _tiny_loader(), _tiny_loader(32), final_sparsity=0.8, epochs=2,
                            prune_fraction=0.5, prune_every=1, lr=0.01, distill_alpha=distill_alpha,
                            evaluations=2, log=None)
    assert [row["step"] for row in history] == [4, 8]
    assert history[-1]["sparsity"] == pytest.approx(80.0, abs=0.01)
    assert all(hasattr(layer, "weight_mask") for layer in prunable_layers(model).values())
    make_permanent(model)
    assert course_sparsity(model) == pytest.approx(80.0, abs=0.01)
    assert all(layer.weight.is_contiguous() for layer in prunable_layers(model).values())


def test_gradual_prune_raises_sparsity_along_the_schedule_during_training():
    torch.manual_seed(0)
    model = resnet20()
    history = gradual_prune(model, _tiny_loader(), _tiny_loader(32), final_sparsity=0.9, epochs=4,
                            prune_fraction=0.75, prune_every=1, distill_alpha=0.0, evaluations=4, log=None)
    sparsities = [row["sparsity"] for row in history]
    assert sparsities[0] < sparsities[1] < sparsities[2] == pytest.approx(90.0, abs=0.01)


def test_gradual_prune_refuses_a_percentage_for_a_fraction():
    with pytest.raises(ValueError, match="fraction"):
        gradual_prune(resnet20(), _tiny_loader(), final_sparsity=90, log=None)
