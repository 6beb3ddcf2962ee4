"""CIFAR-10 for the compression labs (pruning, quantization): 32x32 images, 10 classes.

Two layouts are read, and found automatically under ``root``:

    ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}   official (pickles)
    ROOT/{data_batch_1..5, test_batch, batches.meta}                       ROOT is that folder
    ROOT/{train,test}/<class name>/*.png|jpg                               image folders (Kaggle)

Splits: ``"train"`` and ``"test"`` are the files' own; ``"valid"`` is carved from the training data
(:func:`valid_indices`: a fixed random subset, ``min(5000, N // 5)`` images by default) and
``"train"`` is then the rest, so a recipe can pick its best epoch, accuracy floor or calibration on
``"valid"`` and report ``"test"`` once, at the end.

A split is decoded once and held in memory as ONE uint8 tensor ``(N, 3, 32, 32)`` (the training
set is 150 MB), so a CPU epoch spends its time in the model, not in decoding files.
Samples are normalised as the course does: ``ToTensor`` then
``Normalize(MEAN, STD)``; training augmentation is ``RandomCrop(32, padding=4)`` plus a horizontal
flip, done on the uint8 tensor.

Example (a synthetic set in the official format; the loader cannot tell the difference)::

    >>> import tempfile
    >>> root = make_fixture(tempfile.mkdtemp(), n_train=50, n_test=20)
    >>> train = CIFAR10(root, "train", augment=True)
    >>> image, label = train[0]
    >>> len(train), tuple(image.shape), image.dtype, type(label)
    (40, (3, 32, 32), torch.float32, <class 'int'>)
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from labkit.download import (DatasetNotFoundError, archive_path, download_url, extract_archive,
                                  how_to_get_message)

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN = (0.4914, 0.4822, 0.4465)  # the course's normalisation (test script and training)
STD = (0.2023, 0.1994, 0.2010)

# Official archive and per-file MD5s, from torchvision.datasets.CIFAR10
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
BATCHES_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")
TEST_BATCHES = ("test_batch",)
FILE_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "valid", "test")
FILE_SPLITS = ("train", "test")  # the splits stored in the files; "valid" is carved from "train"
VALID_SIZE = 5000                # validation images carved from the training split (at most N // 5)


# ----------------------------------------------------------------------------- finding the files
def _how_to_get(root: Path) -> str:
    root = root.resolve()
    return how_to_get_message("CIFAR-10", [("cifar-10-python.tar.gz", URL)], root,
                              command=f"labkit.data.cifar10.download({str(root)!r})") + (
        f"\nAn image-folder copy also works: {root}/{{train,test}}/<class>/*.png. (A small synthetic "
        "stand-in for tests, in its own folder: labkit.data.cifar10.make_fixture('data/cifar10-fixture').)")


def find_layout(root: str | Path, split: str = "test") -> tuple[str, Path]:
    """Return ``("batches", folder)`` or ``("folders", split_folder)`` for the data under ``root``.

    Raises ``DatasetNotFoundError`` (saying how to get the data) when neither layout is there.
    """
    if split not in FILE_SPLITS:
        raise ValueError(f"split must be one of {FILE_SPLITS}, got {split!r}")
    root = Path(root)
    batch_files = TRAIN_BATCHES if split == "train" else TEST_BATCHES
    for folder in (root / BATCHES_FOLDER, root):
        if (folder / "batches.meta").is_file() or (folder / "test_batch").is_file():
            missing = [name for name in batch_files if not (folder / name).is_file()]
            if missing:
                raise DatasetNotFoundError(f"CIFAR-10 folder {folder} lacks {', '.join(missing)} "
                                           f"(needed for the {split!r} split).\n{_how_to_get(root)}")
            return "batches", folder
    if (root / split).is_dir():
        return "folders", root / split
    raise DatasetNotFoundError(f"No CIFAR-10 {split!r} split under {root.resolve()} (looked for "
                               f"{BATCHES_FOLDER}/ and {split}/<class>/).\n{_how_to_get(root)}")


def check_root(root: str | Path) -> Path:
    """Return ``root`` as a Path if both splits are there (either layout), else raise
    `DatasetNotFoundError` saying how to get CIFAR-10. The same question for every dataset module."""
    for split in ("train", "test"):
        find_layout(root, split)
    return Path(root)


def is_available(root: str | Path) -> bool:
    """True when both splits can be found under ``root`` (in either layout)."""
    try:
        check_root(root)
    except DatasetNotFoundError:
        return False
    return True


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR batches contain (dicts, lists, numpy arrays): a dataset file from
    the internet must not be able to run code."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR-10 batch file")


def _read_batch(path: Path) -> dict:
    with open(path, "rb") as file:
        batch = _ArrayUnpickler(file, encoding="latin1").load()
    # Keys are str when written by Python 3, bytes when read from some Python 2 pickles.
    return {(key.decode() if isinstance(key, bytes) else key): value for key, value in batch.items()}


def _load_batches(folder: Path, names) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for name in names:
        batch = _read_batch(folder / name)
        data = np.asarray(batch["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ValueError(f"{folder / name}: 'data' has shape {data.shape}, expected (N, 3072); "
                             "the file is not a CIFAR-10 batch — download it again")
        images.append(data.reshape(-1, 3, 32, 32))  # rows hold the R, G, B planes one after another
        labels.append(np.asarray(batch["labels"], dtype=np.int64))
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def _load_folders(split_folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image

    class_folders = sorted(path for path in split_folder.iterdir() if path.is_dir())
    unknown = [path.name for path in class_folders if path.name not in CLASSES]
    if unknown:
        raise ValueError(f"{split_folder}: unknown class folders {unknown}; CIFAR-10 class folders "
                         f"are named {', '.join(CLASSES)}")
    images, labels = [], []
    for folder in class_folders:
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB"))
            if array.shape != (32, 32, 3):
                raise ValueError(f"{path}: image is {array.shape[1]}x{array.shape[0]}, expected 32x32")
            images.append(array.transpose(2, 0, 1))
            labels.append(CLASSES.index(folder.name))
    if not images:
        raise DatasetNotFoundError(f"{split_folder}: no .png/.jpg images in its class folders")
    return torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64)


def load_split(root: str | Path, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """The whole split as ``(images uint8 (N, 3, 32, 32), labels int64 (N,))``, from either layout."""
    layout, folder = find_layout(root, split)
    if layout == "batches":
        return _load_batches(folder, TRAIN_BATCHES if split == "train" else TEST_BATCHES)
    return _load_folders(folder)


def valid_indices(num_train: int, *, valid_size: int | None = None, seed: int = 0) -> torch.Tensor:
    """Indices of the training images held out for validation (sorted; the same for the same seed).

    ``valid_size`` defaults to ``min(VALID_SIZE, num_train // 5)``; 0 holds out nothing.

    Example:
        >>> valid_indices(100, seed=0).shape
        torch.Size([20])
    """
    if valid_size is None:
        valid_size = min(VALID_SIZE, num_train // 5)
    if not 0 <= valid_size < num_train:
        raise ValueError(f"valid_size must be in [0, {num_train}) for {num_train} training images, "
                         f"got {valid_size}")
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(num_train, generator=generator)[:valid_size].sort().values


def _select(images: torch.Tensor, labels: torch.Tensor, split: str, *, valid_size: int | None,
            seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``"train"`` or ``"valid"`` part of the training images (``"test"`` passes through)."""
    if split == "test":
        return images, labels
    held_out = torch.zeros(len(labels), dtype=torch.bool)
    held_out[valid_indices(len(labels), valid_size=valid_size, seed=seed)] = True
    keep = held_out if split == "valid" else ~held_out
    return images[keep], labels[keep]


# ----------------------------------------------------------------------------- samples
def random_crop_flip(image: torch.Tensor, *, padding: int = 4) -> torch.Tensor:
    """``RandomCrop(32, padding)`` with zero padding, then a horizontal flip half of the time.

    Works on one uint8 image ``(3, H, W)`` and returns the same shape.
    """
    height, width = image.shape[-2:]
    padded = F.pad(image, (padding, padding, padding, padding))  # zeros: black, as torchvision pads
    top, left = torch.randint(0, 2 * padding + 1, (2,)).tolist()
    crop = padded[:, top:top + height, left:left + width]
    return crop.flip(-1) if torch.rand(()) < 0.5 else crop


def random_crop_flip_batch(images: torch.Tensor, *, padding: int = 4,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """:func:`random_crop_flip` for a whole uint8 batch ``(N, 3, H, W)`` at once (each image its own crop/flip).

    Example:
        >>> random_crop_flip_batch(torch.zeros(5, 3, 32, 32, dtype=torch.uint8)).shape
        torch.Size([5, 3, 32, 32])
    """
    count, _, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    top, left = torch.randint(0, 2 * padding + 1, (2, count, 1), generator=generator)
    rows = top + torch.arange(height)                      # (N, H): the rows each crop keeps
    cols = left + torch.arange(width)                      # (N, W)
    flip = torch.rand(count, 1, generator=generator) < 0.5
    cols = torch.where(flip, cols.flip(-1), cols)          # a flipped crop reads its columns backwards
    batch = torch.arange(count)[:, None, None]
    crops = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (N, H, W, 3)
    return crops.permute(0, 3, 1, 2).contiguous()


_MEAN_TENSOR = torch.tensor(MEAN).view(3, 1, 1)
_STD_TENSOR = torch.tensor(STD).view(3, 1, 1)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(..., 3, H, W)`` -> float, scaled to [0, 1] then normalised with ``MEAN``/``STD``
    (the same numbers as ``ToTensor()`` + ``Normalize(MEAN, STD)``)."""
    return (images.float() / 255.0 - _MEAN_TENSOR) / _STD_TENSOR


class CIFAR10(Dataset):
    """CIFAR-10 split held in memory; items are ``(image float (3, 32, 32), label int)``.

    Args:
        root: folder holding either layout (see the module docstring).
        split: ``"train"`` (the training images not held out), ``"valid"`` (the held-out ones,
            see :func:`valid_indices`) or ``"test"``. Official CIFAR-10: 45,000 / 5,000 / 10,000.
        augment: random crop (padding 4) and horizontal flip, for training.
        valid_size, seed: how many training images ``"valid"`` holds (default
            ``min(5000, N // 5)``; 0: ``"train"`` is every training image) and which.

    Attributes ``images`` (uint8 ``(N, 3, 32, 32)``), ``labels`` (int64 ``(N,)``) and ``classes``.
    """

    def __init__(self, root: str | Path, split: str = "train", *, augment: bool = False,
                 valid_size: int | None = None, seed: int = 0):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.root, self.split, self.augment = Path(root), split, augment
        images, labels = load_split(root, "test" if split == "test" else "train")
        self.images, self.labels = _select(images, labels, split, valid_size=valid_size, seed=seed)
        self.classes = CLASSES

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.augment:
            image = random_crop_flip(image)
        return normalize(image), int(self.labels[index])


class BatchedLoader:
    """Batches straight from a :class:`CIFAR10`'s uint8 tensor, augmented and normalised as a whole batch.

    The same samples as ``DataLoader(dataset, batch_size, shuffle)`` (the same crop/flip
    distribution when ``augment``), without a Python call per image: on a CPU that is where a small
    network's data time goes. Yields ``(images float (N, 3, 32, 32), labels int64 (N,))``.

    Example:
        >>> import tempfile
        >>> data = CIFAR10(make_fixture(tempfile.mkdtemp(), n_train=50, n_test=10), "test")
        >>> [tuple(images.shape) for images, _ in BatchedLoader(data, batch_size=4)]
        [(4, 3, 32, 32), (4, 3, 32, 32), (2, 3, 32, 32)]
    """

    def __init__(self, dataset: CIFAR10, *, batch_size: int = 128, shuffle: bool = False,
                 augment: bool | None = None, seed: int | None = None):
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.augment = dataset.augment if augment is None else augment
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def __len__(self) -> int:
        return math.ceil(len(self.dataset) / self.batch_size)

    def __iter__(self):
        count = len(self.dataset)
        order = torch.randperm(count, generator=self.generator) if self.shuffle else torch.arange(count)
        for start in range(0, count, self.batch_size):
            chosen = order[start:start + self.batch_size]
            images = self.dataset.images[chosen]
            if self.augment:
                images = random_crop_flip_batch(images, generator=self.generator)
            yield normalize(images), self.dataset.labels[chosen]


class CifarLoaders(NamedTuple):
    """The three loaders of a recipe: fit on ``train``, decide on ``valid``, report ``test`` once."""
    train: DataLoader
    valid: DataLoader
    test: DataLoader


def cifar10_loaders(root: str | Path, *, batch_size: int = 128, augment_train: bool = True,
                    num_workers: int = 0, train_subset: int | None = None, valid_size: int | None = None,
                    seed: int = 0) -> CifarLoaders:
    """``(train, valid, test)`` loaders: shuffled (optionally augmented) training images, then the
    held-out validation images and the test split in order (batch size as given, as the course's test).

    ``valid_size`` and ``seed`` choose the validation images (:func:`valid_indices`);
    ``train_subset`` keeps a random subset of that many training images (also by ``seed``), for
    quick runs.
    """
    train_set = CIFAR10(root, "train", augment=augment_train, valid_size=valid_size, seed=seed)
    valid_set = CIFAR10(root, "valid", valid_size=valid_size, seed=seed)
    test_set = CIFAR10(root, "test")
    if train_subset is not None and train_subset < len(train_set):
        generator = torch.Generator().manual_seed(seed)
        chosen = torch.randperm(len(train_set), generator=generator)[:train_subset]
        train_set = Subset(train_set, chosen.tolist())
    pin_memory = torch.cuda.is_available()
    extra = {"persistent_workers": True} if num_workers > 0 else {}
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                              pin_memory=pin_memory, **extra)
    valid_loader, test_loader = (DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                            pin_memory=pin_memory, **extra) for data in (valid_set, test_set))
    return CifarLoaders(train_loader, valid_loader, test_loader)


# ----------------------------------------------------------------------------- getting the data
def download(root: str | Path, *, progress: bool = True) -> Path:
    """Download and extract the official archive into ``root``; returns ``root/cifar-10-batches-py``.

    Skips everything when the batch files are already there; an archive put into ``root`` by hand is
    verified (MD5) and extracted without network. Honours ``LABKIT_MIRROR``.
    """
    root = Path(root)
    folder = root / BATCHES_FOLDER
    if all((folder / name).is_file() for name in FILE_MD5):
        return folder
    archive = download_url(URL, archive_path(root, "cifar-10-python.tar.gz"), md5=ARCHIVE_MD5, progress=progress,
                           hint=_how_to_get(root))
    extract_archive(archive, root)
    return folder


def _fixture_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One image per label: a class colour, stripes whose orientation and period depend on the class,
    and noise — easy for a CNN, but not solvable from a single pixel."""
    hues = np.array([[230, 60, 60], [60, 200, 60], [60, 90, 230], [220, 200, 40], [200, 60, 200],
                     [40, 200, 210], [240, 140, 30], [130, 130, 130], [150, 90, 40], [250, 250, 250]],
                    dtype=np.float32)
    rows, cols = np.mgrid[0:32, 0:32].astype(np.float32)
    images = np.empty((len(labels), 32, 32, 3), dtype=np.float32)
    for i, label in enumerate(labels):
        period = 4 + 2 * (label % 3)
        phase = rng.uniform(0, 2 * np.pi)
        wave = rows if label % 2 == 0 else cols  # horizontal stripes for even classes, vertical for odd
        stripes = np.sin(2 * np.pi * wave / period + phase)[..., None]
        colour = hues[label] * rng.uniform(0.7, 1.0)
        images[i] = colour * (0.65 + 0.35 * stripes) + rng.normal(0, 20, size=(32, 32, 3))
    return np.clip(images, 0, 255).astype(np.uint8)


def make_fixture(root: str | Path, *, n_train: int = 500, n_test: int = 200, seed: int = 0) -> Path:
    """Write a small synthetic CIFAR-10 in the official pickle format; returns ``root``.

    Creates ``root/cifar-10-batches-py/`` with ``data_batch_1..5`` (``n_train`` images split over
    them), ``test_batch`` and ``batches.meta``; labels are balanced over the 10 classes.
    """
    root = Path(root)
    folder = root / BATCHES_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def write(name: str, labels: np.ndarray) -> None:
        images = _fixture_images(labels, rng)  # (N, 32, 32, 3)
        batch = {"batch_label": f"labkit fixture {name}",
                 "labels": labels.tolist(),
                 "data": images.transpose(0, 3, 1, 2).reshape(len(labels), -1),  # R, G, B planes per row
                 "filenames": [f"{name}_{i:05d}.png" for i in range(len(labels))]}
        with open(folder / name, "wb") as file:
            pickle.dump(batch, file, protocol=2)

    # Balanced over the whole split (not per batch file), shuffled, then cut into the five files.
    train_labels = rng.permutation(np.arange(n_train) % len(CLASSES))
    per_batch = np.array_split(train_labels, len(TRAIN_BATCHES))
    for name, labels in zip(TRAIN_BATCHES, per_batch):
        write(name, labels)
    write("test_batch", rng.permutation(np.arange(n_test) % len(CLASSES)))
    with open(folder / "batches.meta", "wb") as file:
        pickle.dump({"label_names": list(CLASSES), "num_cases_per_batch": int(len(per_batch[0])),
                     "num_vis": 3072}, file, protocol=2)
    return root
