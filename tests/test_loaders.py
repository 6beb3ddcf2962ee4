"""labkit.data.loaders: pinned batches on CUDA, persistent evaluation workers, and training workers
whose augmentations follow the main process's seed (the fair comparison of notebook 02, resume)."""
import torch
from torch.utils.data import Dataset

from labkit.data.loaders import split_loaders


class RandomAugmentation(Dataset):
    """Each item is a fresh random draw in the process that reads it, like an augmentation."""

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return torch.rand(1), torch.zeros(1)


def test_cuda_loaders_pin_their_batches_and_cpu_loaders_do_not():
    data = RandomAugmentation()
    assert all(loader.pin_memory for loader in split_loaders(data, data, data, batch_size=2, device="cuda"))
    assert not any(loader.pin_memory for loader in split_loaders(data, data, data, batch_size=2, device="cpu"))


def test_evaluation_workers_persist_and_training_workers_restart_each_epoch():
    data = RandomAugmentation()
    train, valid, test = split_loaders(data, data, data, batch_size=2, workers=2, device=torch.device("cuda"))
    assert valid.persistent_workers and test.persistent_workers and not train.persistent_workers
    assert train.drop_last and not valid.drop_last


def test_training_augmentations_follow_the_main_seed_with_workers():
    # Two models of a comparison (or a run and its resume) seed the main RNG alike before an epoch:
    # with workers they must then see the same augmentations, which persistent workers would not give.
    data = RandomAugmentation()
    train = split_loaders(data, data, data, batch_size=2, workers=1).train
    epochs = []
    for _ in range(2):
        torch.manual_seed(0)
        epochs.append(torch.cat([images for images, _ in train]))
    torch.testing.assert_close(epochs[0], epochs[1])


def test_the_test_loader_may_take_its_own_batch_size_as_the_course_grades_with_batch_1():
    data = RandomAugmentation()
    train, valid, test = split_loaders(data, data, data, batch_size=4, test_batch_size=1)
    assert (train.batch_size, valid.batch_size, test.batch_size) == (4, 4, 1)
    assert split_loaders(data, data, data, batch_size=4).test.batch_size == 4
