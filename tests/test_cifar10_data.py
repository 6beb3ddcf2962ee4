"""CIFAR-10 loading (both layouts), normalisation, augmentation, download and the fixture."""

import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from labkit.data import cifar10
from labkit.download import DatasetNotFoundError, md5sum

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-sample"


@pytest.fixture
def fixture_root(tmp_path):
    return cifar10.make_fixture(tmp_path / "cifar10", n_train=60, n_test=30)


def test_fixture_is_official_format_with_balanced_labels(fixture_root):
    folder = fixture_root / "cifar-10-batches-py"
    assert sorted(p.name for p in folder.iterdir()) == sorted(cifar10.FILE_MD5)
    with open(folder / "data_batch_1", "rb") as file:
        batch = pickle.load(file, encoding="latin1")
    assert batch["data"].dtype == np.uint8 and batch["data"].shape == (12, 3072)
    train = cifar10.CIFAR10(fixture_root, "train", valid_size=0)  # every training image
    assert len(train) == 60 and train.images.dtype == torch.uint8
    assert train.images.shape == (60, 3, 32, 32)
    assert torch.bincount(train.labels).tolist() == [6] * 10


def test_items_match_torchvision_totensor_and_normalize(fixture_root, monkeypatch):
    import torchvision
    import torchvision.transforms as T
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)
    course_transform = T.Compose([T.ToTensor(), T.Normalize(cifar10.MEAN, cifar10.STD)])
    reference = torchvision.datasets.CIFAR10(fixture_root, train=False, transform=course_transform)
    ours = cifar10.CIFAR10(fixture_root, "test")
    for index in range(len(ours)):
        image, label = ours[index]
        expected_image, expected_label = reference[index]
        assert label == expected_label
        torch.testing.assert_close(image, expected_image, rtol=0, atol=1e-6)


def test_root_may_be_the_batches_folder_itself(fixture_root):
    direct = cifar10.CIFAR10(fixture_root / "cifar-10-batches-py", "test")
    assert torch.equal(direct.images, cifar10.CIFAR10(fixture_root, "test").images)


def test_image_folder_layout_gives_the_same_pixels_and_labels(fixture_root, tmp_path):
    test = cifar10.CIFAR10(fixture_root, "test")
    folder_root = tmp_path / "kaggle"
    for index in range(len(test)):
        class_folder = folder_root / "test" / cifar10.CLASSES[int(test.labels[index])]
        class_folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.images[index].permute(1, 2, 0).numpy()).save(class_folder / f"{index:04d}.png")
    from_folders = cifar10.CIFAR10(folder_root, "test")
    assert sorted(zip(from_folders.labels.tolist(), from_folders.images.sum((1, 2, 3)).tolist())) == \
        sorted(zip(test.labels.tolist(), test.images.sum((1, 2, 3)).tolist()))


def test_unknown_class_folder_is_named_in_the_error(tmp_path):
    (tmp_path / "test" / "aeroplane").mkdir(parents=True)
    with pytest.raises(ValueError, match="aeroplane"):
        cifar10.CIFAR10(tmp_path, "test")


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="shared CIFAR-10 sample not present")
def test_real_sample_in_image_folders_loads_all_ten_classes():
    sample = cifar10.CIFAR10(SAMPLE, "test")
    assert len(sample) == 100 and torch.bincount(sample.labels).tolist() == [10] * 10
    with pytest.raises(DatasetNotFoundError, match="train"):
        cifar10.CIFAR10(SAMPLE, "train")


def test_is_available_needs_both_splits(fixture_root, tmp_path):
    assert cifar10.is_available(fixture_root)
    (tmp_path / "only-test" / "test" / "cat").mkdir(parents=True)
    assert not cifar10.is_available(tmp_path / "only-test")
    assert not cifar10.is_available(tmp_path / "nothing")


def test_check_root_returns_the_folder_or_says_how_to_get_the_missing_split(fixture_root, tmp_path):
    assert cifar10.check_root(fixture_root) == Path(fixture_root)
    (tmp_path / "train" / "cat").mkdir(parents=True)  # a training folder but no test split
    with pytest.raises(DatasetNotFoundError, match="'test' split"):
        cifar10.check_root(tmp_path)


def test_missing_dataset_error_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError) as error:
        cifar10.CIFAR10(tmp_path / "nothing", "test")
    assert "cifar-10-python.tar.gz" in str(error.value) and cifar10.URL in str(error.value)


def test_batch_files_with_code_in_them_are_refused(fixture_root):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo hacked",))
    with open(fixture_root / "cifar-10-batches-py" / "test_batch", "wb") as file:
        pickle.dump({"data": Evil(), "labels": []}, file)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        cifar10.CIFAR10(fixture_root, "test")


def test_augmentation_crops_with_zero_padding_and_flips():
    torch.manual_seed(0)
    image = torch.arange(3 * 32 * 32, dtype=torch.int64).remainder(251).add(1).to(torch.uint8).view(3, 32, 32)
    outputs = [cifar10.random_crop_flip(image) for _ in range(200)]
    assert all(out.shape == (3, 32, 32) and out.dtype == torch.uint8 for out in outputs)
    assert any(torch.equal(out, image) for out in outputs)
    assert any(torch.equal(out, image.flip(-1)) for out in outputs)
    assert any((out == 0).any() for out in outputs)  # a shifted crop shows the black padding


def test_loaders_shuffle_train_subset_and_keep_test_order(fixture_root):
    train_loader, _, test_loader = cifar10.cifar10_loaders(fixture_root, batch_size=16, train_subset=20)
    assert len(train_loader.dataset) == 20
    images, labels = next(iter(train_loader))
    assert images.shape == (16, 3, 32, 32) and labels.dtype == torch.int64
    test_labels = torch.cat([labels for _, labels in test_loader])
    assert torch.equal(test_labels, cifar10.CIFAR10(fixture_root, "test").labels)


def test_download_extracts_archive_from_mirror_and_then_skips(fixture_root, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    archive = mirror / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(fixture_root / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", md5sum(archive))
    monkeypatch.setenv("LABKIT_MIRROR", str(mirror))
    folder = cifar10.download(tmp_path / "data", progress=False)
    assert len(cifar10.CIFAR10(tmp_path / "data", "test")) == 30
    archive.unlink()  # a second call must not need the mirror
    assert cifar10.download(tmp_path / "data", progress=False) == folder


def test_an_archive_kept_in_labkit_archives_is_extracted_on_a_new_machine_without_a_download(
        fixture_root, tmp_path, monkeypatch):
    """Colab: the archive lives on Drive ($LABKIT_ARCHIVES), the data on the VM's disk (issue 33)."""
    kept = tmp_path / "drive" / "data-archives"
    kept.mkdir(parents=True)
    archive = kept / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(fixture_root / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", md5sum(archive))
    monkeypatch.setenv("LABKIT_ARCHIVES", str(kept))
    monkeypatch.setenv("LABKIT_MIRROR", str(tmp_path / "empty-mirror"))  # any download attempt fails
    for vm in ("vm-1", "vm-2"):  # a recycled VM starts with an empty local disk
        cifar10.download(tmp_path / vm / "data", progress=False)
        assert len(cifar10.CIFAR10(tmp_path / vm / "data", "test")) == 30
        assert not (tmp_path / vm / "data" / "cifar-10-python.tar.gz").exists()
    assert archive.is_file()


def test_download_without_network_or_mirror_explains_where_to_put_files(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_MIRROR", str(tmp_path / "empty-mirror"))
    with pytest.raises(DatasetNotFoundError, match="cifar-10-python.tar.gz"):
        cifar10.download(tmp_path / "data", progress=False)


def test_valid_split_is_carved_from_train_disjoint_and_repeatable(fixture_root):
    everything = cifar10.CIFAR10(fixture_root, "train", valid_size=0)
    train, valid = cifar10.CIFAR10(fixture_root, "train"), cifar10.CIFAR10(fixture_root, "valid")
    assert len(valid) == len(everything) // 5 and len(train) + len(valid) == len(everything)
    seen = {bytes(image.numpy()) for image in train.images}
    assert not any(bytes(image.numpy()) in seen for image in valid.images)  # no image in both
    assert torch.equal(valid.images, cifar10.CIFAR10(fixture_root, "valid").images)
    assert not torch.equal(valid.labels, cifar10.CIFAR10(fixture_root, "valid", seed=1).labels)


def test_loaders_return_train_valid_and_test(fixture_root):
    loaders = cifar10.cifar10_loaders(fixture_root, batch_size=16, valid_size=10)
    assert [len(loader.dataset) for loader in loaders] == [
        len(cifar10.CIFAR10(fixture_root, "train", valid_size=0)) - 10, 10,
        len(cifar10.CIFAR10(fixture_root, "test"))]
