"""Oxford-IIIT Pet loading, caching, downloading and the synthetic fixture."""

import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from labkit.data import pets
from labkit.data.cache import load_or_build_cache
from labkit.download import ChecksumError, DatasetNotFoundError, md5sum, mirrored_url

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "oxford-iiit-pet-sample"


@pytest.fixture
def fixture_root(tmp_path):
    return pets.make_fixture(tmp_path / "pets", n_trainval=20, n_test=5, size=(48, 64))


def test_splits_follow_the_course_index_rule(fixture_root):
    trainval = pets.read_names(fixture_root / "annotations" / "trainval.txt")
    train = pets.OxfordIIITPet(fixture_root, "train", image_size=32)
    valid = pets.OxfordIIITPet(fixture_root, "valid", image_size=32)
    test = pets.OxfordIIITPet(fixture_root, "test", image_size=32)
    assert (len(train), len(valid), len(test)) == (18, 2, 5)
    assert valid.names == [trainval[0], trainval[10]]
    assert set(train.names) | set(valid.names) == set(trainval)


def test_read_names_skips_blank_lines_and_comments(tmp_path):
    list_file = tmp_path / "list.txt"
    list_file.write_text("# header\n\ncat_1 1 1 1\n  \ndog_2 2 2 1\n")
    assert pets.read_names(list_file) == ["cat_1", "dog_2"]


def test_items_are_normalised_image_and_one_channel_binary_mask(fixture_root):
    dataset = pets.OxfordIIITPet(fixture_root, "train", image_size=(32, 40))
    image, mask = dataset[0]
    assert image.shape == (3, 32, 40) and image.dtype == torch.float32
    assert mask.shape == (1, 32, 40) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert image.min() < -1.0 < 1.5 < image.max()  # ImageNet-normalised, not [0, 1]


def test_trimap_pet_and_border_become_one_background_zero():
    trimap = np.array([[1, 2, 3]], np.uint8)
    assert pets.trimap_to_mask(trimap).tolist() == [[1, 0, 1]]


def test_fixture_mask_matches_its_trimap(fixture_root):
    dataset = pets.OxfordIIITPet(fixture_root, "test", image_size=None)
    _, mask = dataset[0]
    trimap = dataset.trimap(0)
    assert set(np.unique(trimap)) == {1, 2, 3}
    assert torch.equal(mask[0], torch.from_numpy((trimap != 2).astype(np.float32)))


def test_quirks_rgba_gif_stray_mat_and_unlisted_image_are_handled(fixture_root):
    images = fixture_root / "images"
    formats = {path.stem: Image.open(path).format for path in images.glob("*.jpg")}
    assert {"PNG", "GIF", "JPEG"} <= set(formats.values())
    assert list(images.glob("*.mat"))
    all_listed = pets.read_names(fixture_root / "annotations" / "trainval.txt") + \
        pets.read_names(fixture_root / "annotations" / "test.txt")
    assert set(formats) - set(all_listed), "the fixture should hold one unlisted image"

    dataset = pets.OxfordIIITPet(fixture_root, "train", image_size=None)
    for i, name in enumerate(dataset.names):
        if formats[name] != "JPEG":
            image, _ = dataset[i]
            assert image.shape[0] == 3


def test_fixture_is_deterministic_for_a_seed(tmp_path):
    first = pets.make_fixture(tmp_path / "a", n_trainval=5, n_test=2, seed=3)
    second = pets.make_fixture(tmp_path / "b", n_trainval=5, n_test=2, seed=3)
    for path in sorted((first / "images").iterdir()):
        assert path.read_bytes() == (second / "images" / path.name).read_bytes()


def test_invalid_trimap_value_raises_naming_the_file(fixture_root):
    dataset = pets.OxfordIIITPet(fixture_root, "train", image_size=32)
    bad = np.full((48, 64), 2, np.uint8)
    bad[0, 0] = 255  # e.g. a mask saved as 0/255
    Image.fromarray(bad).save(dataset.trimap_path(3))
    with pytest.raises(ValueError, match=rf"{dataset.names[3]}\.png.*\[255\]"):
        dataset[3]


def test_listed_but_missing_image_raises_naming_the_path(fixture_root):
    name = pets.split_names(fixture_root, "test")[0]
    (fixture_root / "images" / f"{name}.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=rf"images/{name}\.jpg"):
        pets.OxfordIIITPet(fixture_root, "test")


def test_missing_root_raises_with_download_hint(tmp_path):
    with pytest.raises(DatasetNotFoundError) as error:
        pets.OxfordIIITPet(tmp_path / "nowhere", "train")
    message = str(error.value)
    for expected in ("images.tar.gz", "annotations.tar.gz", "LABKIT_MIRROR", "nowhere",
                     "pets.download", "robots.ox.ac.uk"):
        assert expected in message


def test_cache_equals_direct_decoding_and_survives_transforms(fixture_root, tmp_path):
    direct = pets.OxfordIIITPet(fixture_root, "train", image_size=32)
    cached = pets.OxfordIIITPet(fixture_root, "train", image_size=32,
                                cache_dir=tmp_path / "cache", progress=False)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2
    for i in (0, 1, 2, len(direct) - 1):
        for a, b in zip(direct[i], cached[i]):
            assert torch.equal(a, b)
    augmented = pets.OxfordIIITPet(fixture_root, "train", image_size=32,
                                   transform=pets.train_transform(32), cache_dir=tmp_path / "cache")
    image, mask = augmented[1]
    assert image.shape == (3, 32, 32) and set(mask.unique().tolist()) <= {0.0, 1.0}


def test_cached_dataset_pickles_file_names_not_arrays(fixture_root, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE_DIR", str(tmp_path / "user-cache"))
    dataset = pets.OxfordIIITPet(fixture_root, "valid", image_size=32, cache=True, progress=False)
    assert not (fixture_root / ".labkit_cache").exists()  # never inside the dataset folder
    assert list((tmp_path / "user-cache").rglob("*.npy"))  # the per-user default cache folder
    pickled = pickle.dumps(dataset)
    assert len(pickled) < 2 * 32 * 32 * 4  # less than the pixels of the two valid samples
    copy = pickle.loads(pickled)
    assert torch.equal(copy[1][0], dataset[1][0])


def test_cache_stores_any_uint8_labels_and_checks_sizes(tmp_path):
    def decode(i):  # Cityscapes-like: 8 classes
        return np.full((4, 6, 3), i, np.uint8), np.full((4, 6), i % 8, np.uint8)

    images, masks = load_or_build_cache(range(10), decode, cache_dir=tmp_path, tag="demo",
                                        size=(4, 6), source_files=[], progress=False)
    assert masks[9, 0, 0] == 1 and images[7].max() == 7
    with pytest.raises(ValueError, match="Resize inside the decode function"):
        load_or_build_cache(range(2), decode, cache_dir=tmp_path, tag="demo", size=(8, 8),
                            source_files=[], progress=False)
    assert not list(tmp_path.glob("*.part"))


def test_cache_is_rebuilt_when_a_file_changes(fixture_root, tmp_path):
    cache_dir = tmp_path / "cache"
    pets.OxfordIIITPet(fixture_root, "valid", image_size=32, cache_dir=cache_dir, progress=False)
    before = {path.name for path in cache_dir.iterdir()}

    dataset = pets.OxfordIIITPet(fixture_root, "valid", image_size=32)
    trimap = np.full((48, 64), 2, np.uint8)  # the first valid sample becomes all background
    Image.fromarray(trimap).save(dataset.trimap_path(0))
    stat = os.stat(dataset.trimap_path(0))
    os.utime(dataset.trimap_path(0), ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))

    rebuilt = pets.OxfordIIITPet(fixture_root, "valid", image_size=32, cache_dir=cache_dir,
                                 progress=False)
    after = {path.name for path in cache_dir.iterdir()}
    assert len(after) == 2 and after.isdisjoint(before)  # new cache, stale one removed
    assert rebuilt[0][1].sum() == 0


def _fake_archives(tmp_path):
    """A mirror folder with images.tar.gz and annotations.tar.gz made from a fixture."""
    source = pets.make_fixture(tmp_path / "source", n_trainval=10, n_test=3, size=(24, 32))
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for folder in ("images", "annotations"):
        with tarfile.open(mirror / f"{folder}.tar.gz", "w:gz") as archive:
            archive.add(source / folder, arcname=folder)
    return mirror


def _resources_with_md5(md5_of):
    return tuple((url, md5_of(Path(url).name), folder) for url, _, folder in pets.RESOURCES)


def test_download_from_local_mirror_verifies_and_extracts(tmp_path, monkeypatch):
    mirror = _fake_archives(tmp_path)
    monkeypatch.setattr(pets, "RESOURCES", _resources_with_md5(lambda name: md5sum(mirror / name)))
    monkeypatch.setenv("LABKIT_MIRROR", str(mirror))
    root = pets.download(tmp_path / "pets", progress=False)
    assert len(pets.OxfordIIITPet(root, "test", image_size=16)) == 3
    assert (root / "images.tar.gz").is_file()

    # Present now: a second call needs neither the mirror nor the network.
    monkeypatch.setenv("LABKIT_MIRROR", "http://127.0.0.1:9")
    (root / "images.tar.gz").unlink()
    assert pets.download(root, progress=False) == root


def test_download_with_wrong_md5_raises_and_leaves_no_partial_file(tmp_path, monkeypatch):
    mirror = _fake_archives(tmp_path)
    monkeypatch.setattr(pets, "RESOURCES", _resources_with_md5(lambda name: "0" * 32))
    monkeypatch.setenv("LABKIT_MIRROR", mirror.as_uri())  # file:// URL form
    root = tmp_path / "pets"
    with pytest.raises(ChecksumError, match="expected 0{32}"):
        pets.download(root, progress=False)
    assert list(root.iterdir()) == []


def test_download_offline_raises_naming_files_and_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("LABKIT_MIRROR", raising=False)
    unreachable = tuple((f"http://127.0.0.1:9/{Path(url).name}", md5, folder)
                        for url, md5, folder in pets.RESOURCES)
    monkeypatch.setattr(pets, "RESOURCES", unreachable)
    root = tmp_path / "pets"
    with pytest.raises(DatasetNotFoundError) as error:
        pets.download(root, progress=False)
    message = str(error.value)
    for expected in ("images.tar.gz", "annotations.tar.gz", str(root), "LABKIT_MIRROR"):
        assert expected in message
    assert not list(root.glob("*.part"))


def test_mirror_replaces_the_host_and_keeps_the_file_name(monkeypatch):
    url = "https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz"
    monkeypatch.delenv("LABKIT_MIRROR", raising=False)
    assert mirrored_url(url) == url
    monkeypatch.setenv("LABKIT_MIRROR", "https://my.mirror/path/")
    assert mirrored_url(url) == "https://my.mirror/path/images.tar.gz"


@pytest.fixture
def sample_root():
    if not SAMPLE.is_dir():
        pytest.skip(f"real sample not found at {SAMPLE}")
    return SAMPLE


def test_real_sample_split_sizes(sample_root):
    sizes = [len(pets.split_names(sample_root, split)) for split in pets.SPLITS]
    assert sizes == [8, 1, 4]


def test_real_sample_rgba_png_named_jpg_decodes_to_rgb(sample_root):
    path = sample_root / "images" / "Abyssinian_5.jpg"
    assert Image.open(path).mode == "RGBA"
    assert pets.read_rgb(path).shape[2] == 3


def test_real_sample_masks_are_binary_with_both_values(sample_root):
    for split in pets.SPLITS:  # Abyssinian_5 (the RGBA one) is in test.txt
        dataset = pets.OxfordIIITPet(sample_root, split, image_size=64)
        for i in range(len(dataset)):
            image, mask = dataset[i]
            assert image.shape == (3, 64, 64)
            assert set(mask.unique().tolist()) == {0.0, 1.0}, dataset.names[i]


def test_each_loader_worker_gets_its_own_augmentations(tmp_path):
    import torch
    from torch.utils.data import DataLoader

    root = pets.make_fixture(tmp_path / "pets", n_trainval=20, n_test=4)
    dataset = pets.OxfordIIITPet(root, "train", image_size=32, transform=pets.train_transform(32, seed=0))
    one_item = torch.utils.data.Subset(dataset, [0, 0, 0, 0])
    torch.manual_seed(0)
    loader = DataLoader(one_item, batch_size=1, num_workers=2, worker_init_fn=pets.seed_augmentation_worker)
    images = [image for image, _ in loader]
    # Workers 0 and 1 take items in turn, all the same picture; with a copied generator the two
    # workers' augmentations would agree item for item.
    assert not (torch.equal(images[0], images[1]) and torch.equal(images[2], images[3]))


def test_augment_true_is_the_default_train_transform_and_excludes_a_transform(fixture_root):
    augmented = pets.OxfordIIITPet(fixture_root, "train", image_size=32, augment=True)
    assert augmented.transform is not None and augmented[0][0].shape == (3, 32, 32)
    assert pets.OxfordIIITPet(fixture_root, "train", image_size=32).transform is None
    with pytest.raises(ValueError, match="not both"):
        pets.OxfordIIITPet(fixture_root, "train", image_size=32, augment=True,
                           transform=pets.train_transform(32))
