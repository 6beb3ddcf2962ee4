"""Cityscapes with the 8 *categories* the course grades (void, flat, construction, object, nature,
sky, human, vehicle), read from either of two layouts.

Official layout (what ``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip`` unpack to)::

    ROOT/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    ROOT/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png     splits: train, val

Course layout (the TA's re-packaged copy)::

    ROOT/<split>/image/0000.png
    ROOT/<split>/semantic_rgb/0000.png      colour label images          splits: training, validation

Label ids (0..33) and label colours both map to categories through the Cityscapes class table
(torchvision's ``Cityscapes.classes``: each class has an ``id``, a ``category_id`` and a ``color``).
Colours must match exactly; an unknown colour becomes void (0), as in the course's loader.
Images are scaled to [0, 1] (``/ 255``, no mean/std normalisation, as the course does) and resized
bilinearly; labels are resized with nearest neighbour so they stay categories.

Example (a synthetic set written in both layouts from the same scenes)::

    >>> import tempfile
    >>> root = make_fixture(tempfile.mkdtemp(), n_train=4, n_val=2, size=(32, 64))
    >>> official = Cityscapes8(root, "train", layout="official", size=(32, 64))
    >>> course = Cityscapes8(root, "training", layout="course", size=(32, 64))
    >>> image, label = official[0]
    >>> tuple(image.shape), tuple(label.shape), label.dtype
    ((3, 32, 64), (32, 64), torch.int64)
    >>> bool((course[0][1] == label).all())
    True
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

from labkit.data.cache import load_or_build_cache
from labkit.data.download import (ChecksumError, DatasetNotFoundError, download_url,
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
              f"\nFor a small synthetic stand-in: labkit.data.cityscapes.make_fixture({str(root)!r}).")


def detect_layout(root: str | Path) -> str:
    """``"official"`` or ``"course"``, from the folders present; raises `DatasetNotFoundError`.

    When both are present (as in `make_fixture`'s output), the official layout wins.
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
        archive = root / name
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
        if not keep_archives:
            archive.unlink()
    detect_layout(root)
    return root


def _split_folder_name(split: str, layout: str) -> str:
    names = OFFICIAL_SPLITS if layout == "official" else COURSE_SPLITS
    if split in names:
        return split
    if _OTHER_NAME.get(split) in names:  # "train" on the course layout means "training"
        return _OTHER_NAME[split]
    raise ValueError(f"split must be one of {OFFICIAL_SPLITS + COURSE_SPLITS}, got {split!r}")


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
        split: ``"train"``/``"val"`` (official names) or ``"training"``/``"validation"`` (course
            names); either name works on either layout.
        layout: ``"auto"`` (from the folders present), ``"official"`` or ``"course"``.
        size: (H, W) to resize to, default the course's (256, 512); ``None`` keeps each file's size.
        augment: random horizontal flip and random scale-then-crop (zoom in by a factor drawn
            from ``scale_range``, crop back to ``size``). For training only.
        scale_range: (min, max) zoom factors, both >= 1 so the crop never needs padding.
        cache: decode and resize every sample once and read uint8 arrays afterwards (augmentation
            still runs per item); needs `size`. ``cache_dir`` defaults to ``ROOT/.labkit_cache``.

    Each item: image float32 (3, H, W) in [0, 1]; label int64 (H, W) in 0..7 (``CATEGORY_NAMES``).
    """

    def __init__(self, root: str | Path, split: str = "train", *, layout: str = "auto",
                 size: tuple[int, int] | None = (256, 512), augment: bool = False,
                 scale_range: tuple[float, float] = (1.0, 1.5), cache: bool = False,
                 cache_dir: str | Path | None = None, progress: bool = True):
        self.root = Path(root)
        self.layout = detect_layout(self.root) if layout == "auto" else layout
        self.split = _split_folder_name(split, self.layout)
        self.samples = list_samples(self.root, self.split, self.layout)
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.augment = augment
        if min(scale_range) < 1.0 or scale_range[0] > scale_range[1]:
            raise ValueError(f"scale_range must be (min, max) with 1 <= min <= max, got {scale_range}: "
                             "zooming out would need padding with a label that is not in the image")
        self.scale_range = scale_range
        self._cached = None
        if cache or cache_dir is not None:
            if self.size is None:
                raise ValueError("cache=True stores arrays of one size: give size as well.")
            self._cached = load_or_build_cache(
                range(len(self.samples)), self.decode, progress=progress,
                cache_dir=cache_dir if cache_dir is not None else self.root / ".labkit_cache",
                tag=f"cityscapes-{self.layout}-{self.split}", size=self.size,
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
        if self.size is not None:
            size_wh = (self.size[1], self.size[0])  # PIL wants (width, height)
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


# --- synthetic stand-in -----------------------------------------------------------------------
# Cityscapes label ids the fixture draws (official ids; their colours give the course layout).
_ID = {"ego vehicle": 1, "road": 7, "sidewalk": 8, "building": 11, "pole": 17, "traffic sign": 20,
       "vegetation": 21, "sky": 23, "person": 24, "car": 26}
_ID_TO_COLOR = np.zeros((256, 3), np.uint8)
for _class in _CLASSES:
    _ID_TO_COLOR[_class.id] = _class.color
_FIXTURE_CITIES = {"train": "aachen", "val": "frankfurt"}


def _street_scene(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One street: sky, buildings and trees, sidewalk, road, poles with signs, cars, people, and
    the ego vehicle's bonnet. Returns image uint8 (H, W, 3) and Cityscapes label ids uint8 (H, W)."""
    height, width = size
    image = np.zeros((height, width, 3), np.float64)
    ids = np.zeros((height, width), np.uint8)
    rows = np.arange(height)[:, None]
    cols = np.arange(width)[None, :]

    def paint(region, label_id, colour):
        ids[region] = label_id
        image[region] = colour

    horizon = int(rng.uniform(0.35, 0.5) * height)
    sidewalk_top = horizon + int(0.1 * height)
    road_top = sidewalk_top + int(0.07 * height)
    bonnet_top = height - max(2, int(0.08 * height))
    # Sky: a vertical gradient from deep to pale blue.
    sky_rows = np.linspace(0, 1, height)[:, None, None]
    paint(np.broadcast_to(rows < sidewalk_top, (height, width)), _ID["sky"], 0)
    image[:sidewalk_top] = (np.array([110, 160, 225]) + sky_rows[:sidewalk_top] * [80, 60, 25])
    # Buildings and trees along the street, each reaching a random height above the horizon.
    x = 0
    while x < width:
        block = int(rng.uniform(0.1, 0.3) * width)
        top = int(rng.uniform(0.05, 0.3) * height)
        span = (cols >= x) & (cols < x + block)
        if rng.random() < 0.25:  # a tree: a green crown on the ground
            centre_x, centre_y = x + block / 2, (top + sidewalk_top) / 2
            crown = ((cols - centre_x) / (block / 2)) ** 2 + ((rows - centre_y) / ((sidewalk_top - top) / 2)) ** 2 <= 1
            paint(crown, _ID["vegetation"], rng.uniform([40, 100, 25], [80, 150, 60]))
        else:
            facade = span & (rows >= top) & (rows < sidewalk_top)
            paint(facade, _ID["building"], rng.uniform(90, 170) * rng.uniform(0.9, 1.1, 3))
            windows = facade & ((rows - top) % 6 >= 3) & ((cols - x) % 5 >= 3)
            image[windows] *= 0.55  # darker windows, still building
        x += block
    paint(np.broadcast_to((rows >= sidewalk_top) & (rows < road_top), (height, width)),
          _ID["sidewalk"], (175, 170, 165))
    paint(np.broadcast_to((rows >= road_top) & (rows < bonnet_top), (height, width)),
          _ID["road"], rng.uniform(70, 100) * np.array([1.0, 0.95, 1.05]))
    lane_y = (road_top + bonnet_top) // 2
    image[lane_y:lane_y + 1, (np.arange(width) % 12) < 6] = 235  # dashed lane marking, still road
    for _ in range(rng.integers(1, 3)):  # poles carrying a traffic sign
        pole_x = int(rng.uniform(0.05, 0.95) * width)
        pole_top = int(rng.uniform(0.15, 0.3) * height)
        paint((cols >= pole_x) & (cols < pole_x + 2) & (rows >= pole_top) & (rows < road_top),
              _ID["pole"], (125, 125, 130))
        sign = (abs(cols - pole_x - 1) <= 3) & (rows >= pole_top) & (rows < pole_top + 5)
        paint(sign, _ID["traffic sign"], (225, 200, 30))
    for _ in range(rng.integers(1, 4)):  # cars on the road
        car_width = int(rng.uniform(0.12, 0.22) * width)
        car_height = max(4, int(car_width * rng.uniform(0.4, 0.55)))
        left = int(rng.uniform(0, 1) * (width - car_width))
        bottom = int(rng.uniform(road_top + car_height * 0.6, bonnet_top))
        body = (cols >= left) & (cols < left + car_width) & (rows < bottom) & (rows >= bottom - car_height)
        paint(body, _ID["car"], [(20, 30, 120), (160, 25, 25), (215, 215, 220), (30, 30, 35)][rng.integers(4)])
        glass = body & (rows < bottom - car_height // 2) & (cols >= left + 2) & (cols < left + car_width - 2)
        image[glass] = (60, 80, 95)
    for _ in range(rng.integers(0, 3)):  # people on the sidewalk
        person_height = int(rng.uniform(0.15, 0.25) * height)
        centre_x = rng.uniform(0.05, 0.95) * width
        feet = road_top - 1
        centre_y = feet - person_height / 2
        body = ((cols - centre_x) / max(1.5, person_height * 0.18)) ** 2 + \
               ((rows - centre_y) / (person_height / 2)) ** 2 <= 1
        paint(body, _ID["person"], rng.uniform([120, 0, 40], [240, 60, 120]))
        image[body & (rows < feet - person_height * 0.8)] = (225, 180, 150)  # head
    paint(np.broadcast_to(rows >= bonnet_top, (height, width)), _ID["ego vehicle"], (35, 35, 40))
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), ids


def make_fixture(root: str | Path, *, n_train: int = 24, n_val: int = 8, size: tuple[int, int] = (64, 128),
                 seed: int = 0, layouts: tuple[str, ...] = LAYOUTS) -> Path:
    """Write small learnable synthetic street scenes in the official and/or course layout.

    The same scenes go into both layouts: PNG images, official ``*_gtFine_labelIds.png`` label ids
    and course ``semantic_rgb`` images in the class colours, so both read to identical category
    maps. (H, W) = `size`; `n_train` scenes go to train/training and `n_val` to val/validation.
    Deterministic for a given `seed`. Returns `root`.
    """
    unknown = set(layouts) - set(LAYOUTS)
    if unknown or not layouts:
        raise ValueError(f"layouts must be a subset of {LAYOUTS}, got {layouts}")
    root, rng = Path(root), np.random.default_rng(seed)
    for official_split, count in (("train", n_train), ("val", n_val)):
        course_split = _OTHER_NAME[official_split]
        city = _FIXTURE_CITIES[official_split]
        for k in range(count):
            image, ids = _street_scene(rng, size)
            if "official" in layouts:
                stem = f"{city}_{k:06d}_000019"
                image_dir = root / "leftImg8bit" / official_split / city
                label_dir = root / "gtFine" / official_split / city
                image_dir.mkdir(parents=True, exist_ok=True)
                label_dir.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(image_dir / f"{stem}_leftImg8bit.png")
                Image.fromarray(ids).save(label_dir / f"{stem}_gtFine_labelIds.png")
            if "course" in layouts:
                for folder, picture in (("image", image), ("semantic_rgb", _ID_TO_COLOR[ids])):
                    (root / course_split / folder).mkdir(parents=True, exist_ok=True)
                    Image.fromarray(picture).save(root / course_split / folder / f"{k:04d}.png")
    return root
