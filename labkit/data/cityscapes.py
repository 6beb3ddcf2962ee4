"""Cityscapes with the 8 *categories* the course grades (void, flat, construction, object, nature,
sky, human, vehicle), read from either of two layouts.

Official layout (what ``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip`` unpack to)::

    ROOT/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    ROOT/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png     splits: train, val

Course layout (the TA's re-packaged copy)::

    ROOT/<split>/image/0000.png
    ROOT/<split>/semantic_rgb/0000.png      colour label images          splits: training, validation

Splits. A folder name (``"train"``/``"val"`` official, ``"training"``/``"validation"`` course; either
name works on either layout) reads that whole folder. A recipe uses three splits instead, as the
CIFAR-10 loader does (:mod:`labkit.data.cifar10`):

* ``"train"`` — the training folder *minus* a held-out part;
* ``"valid"`` — that held-out part: :func:`valid_indices`, a fixed random ``valid_fraction`` (15 %)
  of the training frames, the same frames for the same ``seed``. Every decision (best epoch, early
  stop, QAT checkpoint) is made here;
* ``"test"`` — the validation folder (the course grades on it; the TA keeps its own test frames), so a
  recipe reports it once, at the end.

Note ``"val"`` is the *official folder* (= ``"test"``), not ``"valid"``. ``valid_fraction=0`` makes
``"train"`` the whole training folder, as before.

Label ids (0..33) and label colours both map to categories through the Cityscapes class table
(torchvision's ``Cityscapes.classes``: each class has an ``id``, a ``category_id`` and a ``color``).
Colours must match exactly; an unknown colour becomes void (0), as in the course's loader.
Images are scaled to [0, 1] (``/ 255``, no mean/std normalisation, as the course does) and resized
bilinearly; labels are resized with nearest neighbour so they stay categories.

Example (a synthetic set written in both layouts from the same scenes)::

    >>> import tempfile
    >>> from labkit.data.cityscapes_fixture import make_fixture
    >>> root = make_fixture(tempfile.mkdtemp(), n_train=4, n_val=2, size=(32, 64))
    >>> official = Cityscapes8(root, "training", layout="official", image_size=(32, 64))
    >>> course = Cityscapes8(root, "training", layout="course", image_size=(32, 64))
    >>> image, label = official[0]
    >>> tuple(image.shape), tuple(label.shape), label.dtype
    ((3, 32, 64), (32, 64), torch.int64)
    >>> bool((course[0][1] == label).all())
    True
    >>> len(Cityscapes8(root, "train", image_size=(32, 64))), len(Cityscapes8(root, "valid", image_size=(32, 64)))
    (3, 1)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets import Cityscapes as _TorchvisionCityscapes

from labkit.data.cache import cached_split
from labkit.download import (ChecksumError, DatasetNotFoundError, archive_path, download_url,
                                  extract_archive, how_to_get_message, md5sum)

CATEGORY_NAMES = ("void", "flat", "construction", "object", "nature", "sky", "human", "vehicle")
NUM_CLASSES = len(CATEGORY_NAMES)
# One colour per category for overlays: the colour of its most common class (road, building, ...).
CATEGORY_COLORS = np.array([
    (0, 0, 0),        # void
    (128, 64, 128),   # flat: road
    (70, 70, 70),     # construction: building
    (220, 220, 0),    # object: traffic sign
    (107, 142, 35),   # nature: vegetation
    (70, 130, 180),   # sky
    (220, 20, 60),    # human: person
    (0, 0, 142),      # vehicle: car
], dtype=np.uint8)

OFFICIAL_SPLITS = ("train", "val")
COURSE_SPLITS = ("training", "validation")
_OTHER_NAME = {"train": "training", "val": "validation", "training": "train", "validation": "val"}
RECIPE_SPLITS = ("train", "valid", "test")  # train = training folder minus valid; test = validation folder
VALID_FRACTION = 0.15  # share of the training frames held out as "valid"
LAYOUTS = ("official", "course")

# (file, official download page, MD5 the Cityscapes site publishes for it)
ARCHIVES = (
    ("leftImg8bit_trainvaltest.zip", "https://www.cityscapes-dataset.com/file-handling/?packageID=3",
     "0a6e97e94b616a514066c9e2adb0c97f"),
    ("gtFine_trainvaltest.zip", "https://www.cityscapes-dataset.com/file-handling/?packageID=1",
     "4237c19de34c8a376e9ba46b495d6f66"),
)

# The 34 labelled classes (ids 0..33); "license plate" (id -1) never appears in a labelIds file.
_CLASSES = [c for c in _TorchvisionCityscapes.classes if 0 <= c.id <= 33]
MAX_LABEL_ID = 33
VOID_LABEL_ID = 255  # id -1 (license plate) written to a uint8 file; also counted as void

# labelIds -> category: a 256-entry lookup table, so a whole label image maps in one indexing step.
LABEL_ID_TO_CATEGORY = np.zeros(256, dtype=np.uint8)
for _class in _CLASSES:
    LABEL_ID_TO_CATEGORY[_class.id] = _class.category_id


def _color_table() -> dict[tuple[int, int, int], int]:
    table: dict[tuple[int, int, int], int] = {}
    for cls in _CLASSES:
        # Classes sharing a colour (the five void ones, pole/polegroup) share a category too;
        # stop here if a future table ever breaks that, instead of mislabelling silently.
        if table.setdefault(tuple(cls.color), cls.category_id) != cls.category_id:
            raise RuntimeError(f"colour {cls.color} belongs to two categories in the class table")
    return table


COLOR_TO_CATEGORY = _color_table()
# Colours packed into one integer (r << 16 | g << 8 | b), sorted, for a vectorised lookup.
_PACKED_COLORS = np.array(sorted((r << 16) | (g << 8) | b for r, g, b in COLOR_TO_CATEGORY), np.int64)
_PACKED_CATEGORIES = np.array([COLOR_TO_CATEGORY[((p >> 16) & 255, (p >> 8) & 255, p & 255)]
                               for p in _PACKED_COLORS], np.uint8)


def label_ids_to_categories(label_ids: np.ndarray, *, source: str = "label image") -> np.ndarray:
    """Official ``*_gtFine_labelIds.png`` values (0..33, or 255) -> categories uint8 (H, W) in 0..7.

    Any other value raises a ``ValueError`` naming ``source``: the file is not a labelIds image
    (e.g. a ``*_labelTrainIds.png`` or ``*_instanceIds.png`` was picked up by mistake).
    """
    label_ids = np.asarray(label_ids)
    if label_ids.ndim != 2:
        raise ValueError(f"{source}: expected a single-channel labelIds image, got shape "
                         f"{label_ids.shape}; use the *_gtFine_labelIds.png files, not *_color.png")
    valid = (label_ids <= MAX_LABEL_ID) | (label_ids == VOID_LABEL_ID)
    if not valid.all():
        bad = sorted(set(np.unique(label_ids[~valid]).tolist()))[:5]
        raise ValueError(f"{source}: values {bad} are not Cityscapes label ids (0..33); expected "
                         "the *_gtFine_labelIds.png files from gtFine_trainvaltest.zip")
    return LABEL_ID_TO_CATEGORY[label_ids.astype(np.uint8)]


def colors_to_categories(label_rgb: np.ndarray) -> np.ndarray:
    """Course colour label image uint8 (H, W, 3) -> categories uint8 (H, W); unknown colours -> 0."""
    label_rgb = np.asarray(label_rgb).astype(np.int64)
    packed = (label_rgb[..., 0] << 16) | (label_rgb[..., 1] << 8) | label_rgb[..., 2]
    position = np.searchsorted(_PACKED_COLORS, packed).clip(max=len(_PACKED_COLORS) - 1)
    found = _PACKED_COLORS[position] == packed
    return np.where(found, _PACKED_CATEGORIES[position], 0).astype(np.uint8)


def _how_to_get(root: Path) -> str:
    files = [(name, page) for name, page, _ in ARCHIVES]
    return (how_to_get_message("Cityscapes", files, root,
                               command=f"labkit.data.cityscapes.download({str(root)!r})")
            + "\nThe Cityscapes files need a free account: log in at "
              "https://www.cityscapes-dataset.com/login/ first (the links above then work in a "
              "browser). The course's own copy (ROOT/training/image/0000.png + "
              "ROOT/training/semantic_rgb/0000.png, same for validation) works as well."
              f"\nFor a small synthetic stand-in: labkit.data.cityscapes_fixture.make_fixture({str(root)!r}).")


def check_root(root: str | Path) -> Path:
    """Return `root` as a Path if it holds Cityscapes (either layout), else raise
    `DatasetNotFoundError` saying how to get it. The same question for every dataset module."""
    root = Path(root)
    detect_layout(root)
    return root


def detect_layout(root: str | Path) -> str:
    """``"official"`` or ``"course"``, from the folders present; raises `DatasetNotFoundError`.

    When both are present (as in `labkit.data.cityscapes_fixture.make_fixture`'s output), the official layout wins.
    """
    root = Path(root)
    if (root / "leftImg8bit").is_dir() and (root / "gtFine").is_dir():
        return "official"
    if any((root / split / "image").is_dir() for split in COURSE_SPLITS):
        return "course"
    raise DatasetNotFoundError(f"No Cityscapes data found in {root.absolute()}: expected "
                               f"leftImg8bit/ and gtFine/ (official) or training/image/ (course).\n"
                               f"{_how_to_get(root)}")


def download(root: str | Path, *, progress: bool = True, keep_archives: bool = True) -> Path:
    """Verify (MD5) and extract the two official archives in `root`; return `root`.

    Cityscapes needs a login, so this cannot fetch from the official site. It extracts
    ``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip`` that you put into `root`,
    or fetches them from ``$LABKIT_MIRROR`` (a folder or URL holding them, e.g. a course server).
    Anything missing raises `DatasetNotFoundError` saying which files to put where; an archive
    with the wrong MD5 raises `ChecksumError`. Folders that are already extracted are skipped.
    """
    root = Path(root)
    for name, page, md5 in ARCHIVES:
        folder = root / name.split("_")[0]  # leftImg8bit/ or gtFine/
        if folder.is_dir():
            continue
        archive = archive_path(root, name)
        if archive.is_file():
            actual = md5sum(archive)  # about half a minute for the 11 GB image archive
            if actual != md5:
                raise ChecksumError(f"{archive} has MD5 {actual}, expected {md5}: the file is truncated "
                                    f"or not the official archive. Download it again from {page}.")
        elif os.environ.get("LABKIT_MIRROR", "").strip():
            # download_url fetches <mirror>/<name>: the official page needs a login, so only a
            # mirror can serve the file; the URL's last part just names the file to ask for.
            download_url(f"{page.split('?')[0]}{name}", archive, md5=md5, progress=progress,
                         hint=_how_to_get(root))
        else:
            raise DatasetNotFoundError(f"{archive} not found.\n{_how_to_get(root)}")
        extract_archive(archive, root)
        if not keep_archives and archive.parent == root:  # never delete the kept copy ($LABKIT_ARCHIVES)
            archive.unlink()
    detect_layout(root)
    return root


def _split_folder_name(split: str, layout: str) -> str:
    names = OFFICIAL_SPLITS if layout == "official" else COURSE_SPLITS
    if split == "valid":  # the held-out part of the training folder
        split = "train"
    elif split == "test":  # the validation folder: the stand-in test split
        split = "val"
    if split in names:
        return split
    if _OTHER_NAME.get(split) in names:  # "train" on the course layout means "training"
        return _OTHER_NAME[split]
    raise ValueError(f"split must be one of {RECIPE_SPLITS} (a recipe's splits) or a folder name "
                     f"{OFFICIAL_SPLITS + COURSE_SPLITS}, got {split!r}")


def valid_indices(num_frames: int, *, valid_fraction: float = VALID_FRACTION, seed: int = 0) -> list[int]:
    """Sorted indices of the training frames held out as ``"valid"`` (same seed, same frames).

    ``round(valid_fraction * num_frames)`` frames, at least 1 when ``valid_fraction > 0``, and
    always at least one frame left for training; ``valid_fraction=0`` holds out nothing.

    Example:
        >>> valid_indices(20, valid_fraction=0.15, seed=0)
        [4, 5, 13]
    """
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction!r} "
                         "(e.g. 0.15 holds out 15 % of the training frames; 0 holds out none)")
    count = 0 if valid_fraction == 0 else max(1, round(valid_fraction * num_frames))
    if count >= num_frames:
        raise ValueError(f"valid_fraction={valid_fraction} of {num_frames} training frames leaves none "
                         "to train on: lower it or add frames")
    generator = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(num_frames, generator=generator)[:count].tolist())


def list_samples(root: str | Path, split: str, layout: str) -> list[tuple[Path, Path]]:
    """Sorted ``(image path, label path)`` pairs of one split."""
    root = Path(root)
    folder = _split_folder_name(split, layout)
    if layout == "official":
        images = sorted((root / "leftImg8bit" / folder).glob("*/*_leftImg8bit.png"))
        labels = [root / "gtFine" / folder / image.parent.name /
                  image.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png") for image in images]
    elif layout == "course":
        images = sorted((root / folder / "image").glob("*.png"))
        labels = [root / folder / "semantic_rgb" / image.name for image in images]
    else:
        raise ValueError(f"layout must be one of {('auto',) + LAYOUTS}, got {layout!r}")
    if not images:
        raise DatasetNotFoundError(f"No images for split {folder!r} ({layout} layout) in "
                                   f"{root.absolute()}.\n{_how_to_get(root)}")
    missing = [str(label) for label in labels if not label.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} label file(s) of split {folder!r} are missing, first: "
                                f"{', '.join(missing[:3])}. Each image needs its label image; "
                                "re-extract the archives.")
    return list(zip(images, labels))


def read_rgb(path: str | Path) -> np.ndarray:
    """uint8 (H, W, 3) from any image file (RGBA and palette images are converted)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def read_categories(path: str | Path, layout: str) -> np.ndarray:
    """A label file of either layout as categories uint8 (H, W) in 0..7, at the file's size."""
    if layout == "official":
        with Image.open(path) as image:
            return label_ids_to_categories(np.asarray(image), source=str(path))
    return colors_to_categories(read_rgb(path))


class Cityscapes8(Dataset):
    """Cityscapes street scenes with 8-category labels; items are ``(image, label)`` tensors.

    Args:
        root: dataset folder in the official or the course layout (see the module docstring).
        split: a recipe split, ``"train"`` (training frames minus the held-out ones), ``"valid"``
            (the held-out training frames, for every decision) or ``"test"`` (the validation
            folder, reported once); or a whole folder by name: ``"training"``/``"validation"``
            (course names) or ``"val"`` (official); either name works on either layout.
        valid_fraction, seed: which training frames ``"valid"`` holds (:func:`valid_indices`:
            15 % by default, fixed by ``seed``); ``valid_fraction=0``: ``"train"`` is every
            training frame and ``"valid"`` is refused.
        layout: ``"auto"`` (from the folders present), ``"official"`` or ``"course"``.
        image_size: (H, W) to resize to, default the course's (256, 512); ``None`` keeps each file's size.
        augment: random horizontal flip and random scale-then-crop (zoom in by a factor drawn
            from ``scale_range``, crop back to ``image_size``). For training only.
        scale_range: (min, max) zoom factors, both >= 1 so the crop never needs padding.
        cache: decode and resize every sample once and read uint8 arrays afterwards (augmentation
            still runs per item); needs `image_size`. ``cache_dir`` defaults to the per-user folder
            of ``labkit.data.cache.default_cache_dir``.

    Each item: image float32 (3, H, W) in [0, 1]; label int64 (H, W) in 0..7 (``CATEGORY_NAMES``).
    Attributes: ``split`` (the folder read, e.g. ``"training"``), ``part`` (``"train"``,
    ``"valid"`` or ``"all"`` of that folder), ``samples`` (``(image path, label path)`` pairs).
    """

    def __init__(self, root: str | Path, split: str = "train", *, layout: str = "auto",
                 image_size: tuple[int, int] | None = (256, 512), augment: bool = False,
                 scale_range: tuple[float, float] = (1.0, 1.5), cache: bool = False,
                 cache_dir: str | Path | None = None, progress: bool = True,
                 valid_fraction: float = VALID_FRACTION, seed: int = 0):
        self.root = Path(root)
        self.layout = detect_layout(self.root) if layout == "auto" else layout
        self.split = _split_folder_name(split, self.layout)
        samples = list_samples(self.root, self.split, self.layout)
        self.part = split if split in ("train", "valid") else "all"
        if self.part != "all":
            if split == "valid" and valid_fraction == 0:
                raise ValueError("split='valid' needs valid_fraction > 0 (e.g. 0.15): with 0 no "
                                 "training frames are held out")
            held_out = set(valid_indices(len(samples), valid_fraction=valid_fraction, seed=seed))
            samples = [pair for i, pair in enumerate(samples) if (i in held_out) == (split == "valid")]
        self.samples = samples
        if image_size is not None and (isinstance(image_size, (str, bytes)) or len(image_size) != 2):
            raise ValueError(f"image_size must be (H, W) as two integers, e.g. (256, 512), got {image_size!r}; "
                             "parse a text value first (labkit.params.as_image_size)")
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        self.augment = augment
        if min(scale_range) < 1.0 or scale_range[0] > scale_range[1]:
            raise ValueError(f"scale_range must be (min, max) with 1 <= min <= max, got {scale_range}: "
                             "zooming out would need padding with a label that is not in the image")
        self.scale_range = scale_range
        self._cached = cached_split(self.decode, len(self.samples), cache=cache, cache_dir=cache_dir,
                                    root=self.root, tag=f"cityscapes-{self.layout}-{self.split}-{self.part}",
                                    size=self.image_size, progress=progress,
                                    source_files=[path for pair in self.samples for path in pair])

    def __len__(self) -> int:
        return len(self.samples)

    def decode(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``i`` as uint8 image (H, W, 3) and categories (H, W), resized, not augmented."""
        image_path, label_path = self.samples[i]
        image = Image.fromarray(read_rgb(image_path))
        # Map to categories at the file's own size, THEN resize: nearest neighbour picks the same
        # pixels either way, and both layouts end up resized identically.
        label = Image.fromarray(read_categories(label_path, self.layout))
        if image.size != label.size:
            raise ValueError(f"{image_path} is {image.size} but its label {label_path} is {label.size} "
                             "(width, height); the pair does not belong together")
        if self.image_size is not None:
            size_wh = (self.image_size[1], self.image_size[0])  # PIL wants (width, height)
            image = image.resize(size_wh, Image.BILINEAR)
            label = label.resize(size_wh, Image.NEAREST)  # nearest: a label must stay a category
        return np.asarray(image), np.asarray(label)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cached is not None:
            image, label = np.array(self._cached[0][i]), np.array(self._cached[1][i])
        else:
            image, label = self.decode(i)
        image = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1) / 255.0
        label = torch.from_numpy(np.array(label, dtype=np.int64))
        if self.augment:
            image, label = random_flip_scale_crop(image, label, scale_range=self.scale_range)
        return image, label


def random_flip_scale_crop(image: torch.Tensor, label: torch.Tensor, *,
                           scale_range: tuple[float, float] = (1.0, 1.5),
                           flip_probability: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Paired augmentation: horizontal flip, then zoom in by s ~ U(scale_range) and crop back.

    image float (3, H, W), label int64 (H, W) -> the same shapes. The image is resized bilinearly,
    the label with nearest neighbour. Uses torch's RNG, so ``seed_everything`` makes it repeatable.
    """
    if torch.rand(()) < flip_probability:
        image, label = image.flip(-1), label.flip(-1)
    scale = float(torch.empty(()).uniform_(*scale_range)) if scale_range[1] > scale_range[0] \
        else float(scale_range[0])
    height, width = label.shape
    new_height, new_width = max(height, round(height * scale)), max(width, round(width * scale))
    if (new_height, new_width) == (height, width):
        return image, label
    image = F.interpolate(image[None], size=(new_height, new_width), mode="bilinear",
                          align_corners=False)[0]
    label = F.interpolate(label[None, None].float(), size=(new_height, new_width),
                          mode="nearest")[0, 0].long()
    top = int(torch.randint(0, new_height - height + 1, ()))
    left = int(torch.randint(0, new_width - width + 1, ()))
    return image[:, top:top + height, left:left + width], label[top:top + height, left:left + width]
