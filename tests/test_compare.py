"""labkit.compare: one recipe for every model, measured quality and cost, comparison plot."""
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from labkit.compare import MACS_COLUMN, TABLE_COLUMNS, plot_comparison, train_and_measure
from labkit.device import describe_device
from labkit.evaluate import evaluate_segmentation
from labkit.metrics import dice_score
from labkit.profile import macs_on_meta, peak_memory_mb, reset_peak_memory
from tests.helpers import LEARNING_SEED


def red_things(count: int, seed: int) -> TensorDataset:
    """Random images whose mask is "the red channel is bright": learnable by a 1x1 conv."""
    images = torch.rand(count, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    return TensorDataset(images, (images[:, :1] > 0.7).float())


@pytest.fixture
def loaders():
    return {"train": DataLoader(red_things(32, seed=0), batch_size=8, shuffle=True),
            "valid": DataLoader(red_things(8, seed=1), batch_size=8),
            "test": DataLoader(red_things(16, seed=2), batch_size=8)}


def one_by_one_conv(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Conv2d(3, 1, kernel_size=1)


def measure(model, loaders, **kwargs):
    settings = dict(epochs=3, lr=0.1, device="cpu", progress=False, log=None)
    return train_and_measure("conv", model, loaders, **{**settings, **kwargs})


@pytest.mark.learning
def test_a_learnable_task_is_learned_beyond_the_all_foreground_baseline(loaders, learned):
    result = measure(one_by_one_conv(LEARNING_SEED), loaders, epochs=6, lr=0.3, seed=LEARNING_SEED)
    masks = torch.cat([mask for _, mask in loaders["test"]])
    all_foreground = dice_score(torch.ones_like(masks), masks).item()
    learned("test_dice_above_all_foreground", result["row"]["test Dice"] - all_foreground, at_least=0.2)


def test_row_has_every_table_column_and_numbers_from_the_run(loaders):
    result = measure(one_by_one_conv(), loaders)
    row, history = result["row"], result["history"]
    assert list(row) == list(TABLE_COLUMNS)
    assert row["params (M)"] == 4 / 1e6                                   # 3 weights + 1 bias
    assert row[MACS_COLUMN] == 3 * 256 * 256 / 1e9                         # always at 256x256
    assert row["epochs"] == len(history) == 3
    assert row["image size"] == "16x16"
    assert row["valid Dice"] == max(r["dice"] for r in history)
    assert row["s/epoch"] == pytest.approx(sum(r["seconds"] for r in history) / 3)
    assert row["device"].startswith("cpu (")


def test_test_dice_is_the_shared_evaluation_of_the_returned_best_weights(loaders):
    result = measure(one_by_one_conv(), loaders)
    again = evaluate_segmentation(result["model"], loaders["test"], device="cpu")["dice"]
    assert result["row"]["test Dice"] == again


def test_same_seed_and_recipe_give_the_same_result_twice(loaders):
    first = measure(one_by_one_conv(seed=3), loaders, seed=7)
    second = measure(one_by_one_conv(seed=3), loaders, seed=7)
    for key in ("valid Dice", "test Dice"):
        assert first["row"][key] == second["row"][key]
    assert [r["train_loss"] for r in first["history"]] == [r["train_loss"] for r in second["history"]]
    # the recipe's cosine schedule ends at 0 after `epochs` epochs, whatever the model
    assert first["history"][-1]["lr"] == pytest.approx(0.0, abs=1e-12)


class AugmentedSquares(torch.utils.data.Dataset):
    """Random images through an albumentations transform, which has its own random generator."""

    def __init__(self):
        import albumentations as A
        generator = torch.Generator().manual_seed(0)
        self.images = (torch.rand(16, 16, 16, 3, generator=generator) * 255).to(torch.uint8).numpy()
        self.transform = A.Compose([A.HorizontalFlip(p=0.5), A.RandomBrightnessContrast(p=0.5)])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        image = torch.from_numpy(self.transform(image=self.images[i])["image"]).permute(2, 0, 1)
        image = image.float() / 255
        return image, (image[:1] > 0.5).float()


class InputRecorder(nn.Conv2d):
    """A 1x1 conv that remembers every training batch it is given."""

    def __init__(self):
        super().__init__(3, 1, kernel_size=1)
        self.seen = []

    def forward(self, x):
        if self.training:
            self.seen.append(x.clone())
        return super().forward(x)


def test_both_models_see_the_same_batches_with_the_same_augmentations():
    train = DataLoader(AugmentedSquares(), batch_size=4, shuffle=True)
    loaders = {"train": train, "valid": train, "test": train}
    first, second = InputRecorder(), InputRecorder()
    measure(first, loaders, epochs=2)
    measure(second, loaders, epochs=2)
    assert len(first.seen) == len(second.seen) == 8
    assert all(torch.equal(a, b) for a, b in zip(first.seen, second.seen))
    assert not torch.equal(first.seen[0], first.seen[4])  # yet the epochs differ from each other


def test_resume_after_the_last_epoch_keeps_history_and_best_weights(loaders, tmp_path):
    trained = measure(one_by_one_conv(), loaders, checkpoint_dir=tmp_path)
    fresh_start = one_by_one_conv(seed=99)  # a new kernel after a disconnect
    resumed = measure(fresh_start, loaders, checkpoint_dir=tmp_path, resume=True)
    assert resumed["history"] == trained["history"]
    assert resumed["row"]["test Dice"] == trained["row"]["test Dice"]


def test_macs_are_counted_on_a_copy_and_leave_the_model_untouched():
    model = nn.Sequential(nn.Conv2d(3, 4, kernel_size=3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    macs = macs_on_meta(model, input_size=(1, 3, 8, 8))
    assert macs == 8 * 8 * (4 * 3 * 3 * 3) + 8 * 8 * (1 * 4)
    for key, value in model.state_dict().items():
        assert value.device.type == "cpu" and torch.equal(value, before[key])


def test_reset_starts_a_new_cpu_peak_below_an_earlier_allocation():
    big = torch.ones(64 * 2**20, dtype=torch.float32)  # 256 MiB, written so it is resident
    peak_with_big = peak_memory_mb(torch.device("cpu"))
    del big
    if not reset_peak_memory("cpu"):
        pytest.skip("this OS cannot reset the process's peak resident memory")
    assert peak_memory_mb(torch.device("cpu")) < peak_with_big - 128


def test_device_description_names_cpu_threads():
    assert describe_device("cpu") == f"cpu ({torch.get_num_threads()} threads)"


def test_comparison_plot_has_one_panel_per_column_and_one_bar_per_model():
    rows = [{"model": "UNet", "test Dice": 0.8, MACS_COLUMN: 48.2},
            {"model": "ResNet34-UNet", "test Dice": 0.9, MACS_COLUMN: 7.8}]
    figure = plot_comparison(rows, columns=("test Dice", MACS_COLUMN, "not measured"))
    assert [axis.get_title() for axis in figure.axes] == ["test Dice", MACS_COLUMN]
    heights = [bar.get_height() for bar in figure.axes[1].patches]
    assert heights == [48.2, 7.8]


def test_comparison_plot_without_plottable_columns_says_what_is_missing():
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_comparison([{"model": "UNet"}])


def test_onecycle_schedule_peaks_at_lr_and_is_stepped_every_batch(loaders):
    result = measure(one_by_one_conv(), loaders, epochs=5, lr=0.1, schedule="onecycle")
    lrs = [row["lr"] for row in result["history"]]  # after each epoch of 4 batches
    assert lrs[0] == pytest.approx(0.1, rel=0.05)    # warm-up (20 % of 20 steps) ends at the peak
    assert lrs == sorted(lrs, reverse=True)          # then it only anneals...
    assert lrs[-1] < 0.02 * 0.1                      # ...to ~0 by the last batch


def test_unknown_schedule_is_refused_naming_the_choices(loaders):
    with pytest.raises(ValueError, match="cosine, onecycle"):
        measure(one_by_one_conv(), loaders, schedule="linear")
