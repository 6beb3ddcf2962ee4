"""Cityscapes-8: class table, both layouts, resizing, augmentation, fixture, download."""
import shutil
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import Cityscapes as TorchvisionCityscapes

from labkit.data import cityscapes, cityscapes_fixture
from labkit.data.cityscapes import Cityscapes8, colors_to_categories, label_ids_to_categories
from labkit.download import ChecksumError, DatasetNotFoundError, md5sum

SIZE = (32, 64)


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory):
    return cityscapes_fixture.make_fixture(tmp_path_factory.mktemp("cityscapes"), n_train=6, n_val=3, size=SIZE)


def test_both_layouts_read_the_fixture_to_identical_images_and_label_maps(fixture_root):
    for official_split, course_split in (("training", "training"), ("val", "validation")):
        official = Cityscapes8(fixture_root, official_split, layout="official", image_size=SIZE)
        course = Cityscapes8(fixture_root, course_split, layout="course", image_size=SIZE)
        assert len(official) == len(course) > 0
        for i in range(len(official)):
            (image_a, label_a), (image_b, label_b) = official[i], course[i]
            assert torch.equal(label_a, label_b)
            assert torch.equal(image_a, image_b)


def test_fixture_scenes_hold_all_eight_categories(fixture_root):
    labels = torch.stack([label for _, label in Cityscapes8(fixture_root, "train", image_size=SIZE)])
    assert labels.unique().tolist() == list(range(8))


def test_valid_is_a_fixed_part_of_the_training_frames_disjoint_from_train(tmp_path):
    root = cityscapes_fixture.make_fixture(tmp_path, n_train=20, n_val=3, size=SIZE)
    folder = Cityscapes8(root, "training", image_size=SIZE).samples
    train = Cityscapes8(root, "train", image_size=SIZE).samples
    valid = Cityscapes8(root, "valid", image_size=SIZE).samples
    assert len(valid) == 3 and len(train) == 17  # 15 % of 20 frames
    assert not set(train) & set(valid)
    assert sorted(train + valid) == sorted(folder)
    # repeatable: the same seed picks the same frames; another seed other frames
    assert Cityscapes8(root, "valid", image_size=SIZE).samples == valid
    assert Cityscapes8(root, "valid", image_size=SIZE, seed=1).samples != valid
    assert cityscapes.valid_indices(20, seed=0) == cityscapes.valid_indices(20, seed=0)


def test_test_split_is_the_validation_folder_and_valid_fraction_0_keeps_every_training_frame(fixture_root):
    assert Cityscapes8(fixture_root, "test", image_size=SIZE).samples == Cityscapes8(fixture_root, "val", image_size=SIZE).samples
    assert len(Cityscapes8(fixture_root, "train", image_size=SIZE, valid_fraction=0)) == 6
    with pytest.raises(ValueError, match="valid_fraction > 0"):
        Cityscapes8(fixture_root, "valid", image_size=SIZE, valid_fraction=0)
    with pytest.raises(ValueError, match="leaves none"):
        cityscapes.valid_indices(1, valid_fraction=0.5)


def test_train_and_valid_caches_do_not_replace_each_other(fixture_root, tmp_path):
    train = Cityscapes8(fixture_root, "train", image_size=SIZE, cache_dir=tmp_path, progress=False)
    valid = Cityscapes8(fixture_root, "valid", image_size=SIZE, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.images.npy"))) == 2
    assert torch.equal(train[0][1], Cityscapes8(fixture_root, "train", image_size=SIZE)[0][1])
    assert torch.equal(valid[0][1], Cityscapes8(fixture_root, "valid", image_size=SIZE)[0][1])


def test_a_size_given_as_text_is_refused_with_what_to_do(fixture_root):
    with pytest.raises(ValueError, match="as_image_size"):
        Cityscapes8(fixture_root, "val", image_size="[128, 256]")


def test_items_are_unnormalised_images_and_int64_category_maps(fixture_root):
    image, label = Cityscapes8(fixture_root, "val", image_size=(16, 40))[0]
    assert image.shape == (3, 16, 40) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0  # scaled by 1/255, no mean/std
    assert label.shape == (16, 40) and label.dtype == torch.int64
    assert set(label.unique().tolist()) <= set(range(8))


def test_size_none_keeps_the_files_size(fixture_root):
    image, label = Cityscapes8(fixture_root, "train", image_size=None)[0]
    assert image.shape[1:] == label.shape == SIZE


def test_label_ids_map_to_categories_through_the_class_table():
    for cls in TorchvisionCityscapes.classes:
        if 0 <= cls.id <= 33:
            assert label_ids_to_categories(np.array([[cls.id]], np.uint8))[0, 0] == cls.category_id
    hand = np.array([[0, 1, 7, 8, 11, 17, 21, 23, 24, 26, 33, 255]], np.uint8)
    assert label_ids_to_categories(hand).tolist() == [[0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 7, 0]]


def test_values_that_are_not_label_ids_name_the_file():
    with pytest.raises(ValueError, match=r"frankfurt_x\.png.*\[40\]"):
        label_ids_to_categories(np.array([[7, 40]], np.uint8), source="frankfurt_x.png")


def test_colours_match_exactly_and_unknown_colours_become_void():
    colours = np.array([[(128, 64, 128), (70, 130, 180), (0, 0, 142), (220, 20, 60),
                         (129, 64, 128), (1, 2, 3), (107, 142, 35), (153, 153, 153)]], np.uint8)
    # road, sky, car, person, road off by one, unknown, vegetation, pole
    assert colors_to_categories(colours).tolist() == [[1, 5, 7, 6, 0, 0, 4, 3]]


def test_split_names_of_either_layout_work_on_both(fixture_root):
    assert Cityscapes8(fixture_root, "train", layout="course").split == "training"
    assert Cityscapes8(fixture_root, "validation", layout="official").split == "val"
    with pytest.raises(ValueError, match="split must be one of"):
        Cityscapes8(fixture_root, "test-set")


def test_layout_is_detected_from_the_folders(tmp_path):
    course_only = cityscapes_fixture.make_fixture(tmp_path / "course", n_train=1, n_val=1, size=SIZE,
                                                  layouts=("course",))
    assert Cityscapes8(course_only, "training", image_size=SIZE).layout == "course"
    assert not (course_only / "leftImg8bit").exists()


def test_missing_dataset_says_which_archives_to_get(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="leftImg8bit_trainvaltest.zip") as error:
        Cityscapes8(tmp_path / "nothing", "train")
    assert "gtFine_trainvaltest.zip" in str(error.value)


def test_a_missing_label_file_is_named(tmp_path):
    root = cityscapes_fixture.make_fixture(tmp_path, n_train=2, n_val=1, size=SIZE, layouts=("course",))
    (root / "training" / "semantic_rgb" / "0001.png").unlink()
    with pytest.raises(FileNotFoundError, match="0001.png"):
        Cityscapes8(root, "training")


def test_augmentation_keeps_shapes_and_only_existing_categories(fixture_root):
    plain = Cityscapes8(fixture_root, "train", image_size=SIZE)
    augmented = Cityscapes8(fixture_root, "train", image_size=SIZE, augment=True, scale_range=(1.2, 1.6))
    torch.manual_seed(0)
    for i in range(len(plain)):
        image, label = augmented[i]
        assert image.shape == (3, *SIZE) and label.shape == SIZE
        assert set(label.unique().tolist()) <= set(plain[i][1].unique().tolist())


def test_flip_without_zoom_mirrors_image_and_label_together():
    image, label = torch.rand(3, 4, 6), torch.randint(0, 8, (4, 6))
    flipped_image, flipped_label = cityscapes.random_flip_scale_crop(
        image, label, scale_range=(1.0, 1.0), flip_probability=1.0)
    assert torch.equal(flipped_image, image.flip(-1)) and torch.equal(flipped_label, label.flip(-1))


def test_zooming_out_is_refused(fixture_root):
    with pytest.raises(ValueError, match="scale_range"):
        Cityscapes8(fixture_root, "train", augment=True, scale_range=(0.5, 1.0))


def test_cached_items_equal_decoded_items(fixture_root, tmp_path):
    plain = Cityscapes8(fixture_root, "val", image_size=SIZE)
    cached = Cityscapes8(fixture_root, "val", image_size=SIZE, cache_dir=tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache").glob("cityscapes-official-val-*.npy"))
    for i in range(len(plain)):
        assert all(torch.equal(a, b) for a, b in zip(plain[i], cached[i]))


def test_fixture_is_deterministic_for_a_seed(tmp_path):
    first = cityscapes_fixture.make_fixture(tmp_path / "a", n_train=2, n_val=1, size=SIZE, seed=5)
    second = cityscapes_fixture.make_fixture(tmp_path / "b", n_train=2, n_val=1, size=SIZE, seed=5)
    names = sorted(p.relative_to(first) for p in first.rglob("*.png"))
    assert names == sorted(p.relative_to(second) for p in second.rglob("*.png"))
    assert all(np.array_equal(np.asarray(Image.open(first / n)), np.asarray(Image.open(second / n)))
               for n in names)


def _zip_official_folders(fixture_root, destination):
    """Pack the fixture's leftImg8bit/ and gtFine/ like the official archives."""
    destination.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, folder in (("leftImg8bit_trainvaltest.zip", "leftImg8bit"), ("gtFine_trainvaltest.zip", "gtFine")):
        with zipfile.ZipFile(destination / name, "w") as archive:
            for path in sorted((fixture_root / folder).rglob("*.png")):
                archive.write(path, path.relative_to(fixture_root))
        paths[name] = destination / name
    return paths


def _use_md5s_of(monkeypatch, archives):
    table = tuple((name, page, md5sum(archives[name])) for name, page, _ in cityscapes.ARCHIVES)
    monkeypatch.setattr(cityscapes, "ARCHIVES", table)


def test_download_extracts_archives_put_in_the_root(fixture_root, tmp_path, monkeypatch):
    monkeypatch.delenv("LABKIT_MIRROR", raising=False)
    archives = _zip_official_folders(fixture_root, tmp_path / "data")
    _use_md5s_of(monkeypatch, archives)
    root = cityscapes.download(tmp_path / "data", progress=False)
    assert len(Cityscapes8(root, "val", image_size=SIZE)) == 3


def test_download_fetches_from_a_mirror_folder(fixture_root, tmp_path, monkeypatch):
    archives = _zip_official_folders(fixture_root, tmp_path / "mirror")
    _use_md5s_of(monkeypatch, archives)
    monkeypatch.setenv("LABKIT_MIRROR", str(tmp_path / "mirror"))
    root = cityscapes.download(tmp_path / "data", progress=False, keep_archives=False)
    assert len(Cityscapes8(root, "training", image_size=SIZE)) == 6
    assert not list(root.glob("*.zip"))


def test_download_refuses_an_archive_with_the_wrong_md5(fixture_root, tmp_path, monkeypatch):
    monkeypatch.delenv("LABKIT_MIRROR", raising=False)
    _zip_official_folders(fixture_root, tmp_path / "data")  # official MD5s stay: a mismatch
    with pytest.raises(ChecksumError, match="expected 0a6e97e94b616a514066c9e2adb0c97f"):
        cityscapes.download(tmp_path / "data", progress=False)


def test_download_without_files_or_mirror_explains_the_login(tmp_path, monkeypatch):
    monkeypatch.delenv("LABKIT_MIRROR", raising=False)
    with pytest.raises(DatasetNotFoundError, match="account"):
        cityscapes.download(tmp_path / "empty")
    shutil.rmtree(tmp_path / "empty", ignore_errors=True)


def test_check_root_returns_the_folder_or_says_how_to_get_cityscapes(fixture_root, tmp_path):
    assert cityscapes.check_root(str(fixture_root)) == fixture_root
    with pytest.raises(DatasetNotFoundError, match="cityscapes-dataset.com/login"):
        cityscapes.check_root(tmp_path / "nothing")
