"""Oxford-IIIT Pet for binary segmentation (the course's "UNet" and "ResNet34-UNet" labs).

Official layout (what ``images.tar.gz`` and ``annotations.tar.gz`` unpack to)::

    ROOT/images/<name>.jpg                  photos (a few are really RGBA PNG or palette GIF)
    ROOT/annotations/trimaps/<name>.png     1 = pet, 2 = background, 3 = border
    ROOT/annotations/trainval.txt           "name class_id species breed_id" per line
    ROOT/annotations/test.txt

Course rules: ``test`` = test.txt; ``train`` = trainval lines whose 0-based index i has
``i % 10 != 0``; ``valid`` = ``i % 10 == 0``. Mask = 1 for pet and border, 0 for background: ONE
logit channel per pixel, trained with ``BCEWithLogitsLoss`` (not 2 classes with softmax).

Example (a synthetic set in the same layout; the loader cannot tell the difference)::

    >>> import tempfile
    >>> root = make_fixture(tempfile.mkdtemp(), n_trainval=20, n_test=5)
    >>> train = OxfordIIITPet(root, "train", image_size=64, transform=train_transform(64))
    >>> image, mask = train[0]
    >>> len(train), tuple(image.shape), tuple(mask.shape), sorted(mask.unique().tolist())
    (18, (3, 64, 64), (1, 64, 64), [0.0, 1.0])
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from labkit.data.cache import cached_split
from labkit.download import (DatasetNotFoundError, archive_path, download_url, extract_archive,
                                  how_to_get_message)

# (official URL, MD5, folder the archive unpacks to) -- from torchvision's OxfordIIITPet._RESOURCES
RESOURCES = (
    ("https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz",
     "5c4f3ee8e5d25df40f4fd59a7f44e54c", "images"),
    ("https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz",
     "95a8c909bbe2e81eed6a22bccdf3f68f", "annotations/trimaps"),
)
SPLITS = ("train", "valid", "test")
TRIMAP_VALUES = (1, 2, 3)  # pet, background, border
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _how_to_get(root: Path) -> str:
    files = [(Path(urlparse(url).path).name, url) for url, _, _ in RESOURCES]
    return how_to_get_message("Oxford-IIIT Pet", files, root,
                              command=f"labkit.data.pets.download({str(root)!r})")


def check_root(root: str | Path) -> Path:
    """Return `root` as a Path if it has the official layout, else raise `DatasetNotFoundError`."""
    root = Path(root)
    needed = ["images", "annotations/trimaps", "annotations/trainval.txt", "annotations/test.txt"]
    missing = [name for name in needed if not (root / name).exists()]
    if missing:
        problem = (f"{root} does not exist" if not root.is_dir()
                   else f"{root} lacks {', '.join(missing)}")
        raise DatasetNotFoundError(
            f"Oxford-IIIT Pet not found: {problem}.\n{_how_to_get(root)}\n"
            f"For a small synthetic stand-in: labkit.data.pets.make_fixture({str(root)!r}).")
    return root


def download(root: str | Path, *, progress: bool = True, keep_archives: bool = True) -> Path:
    """Download, verify (MD5) and extract the official archives into `root`; skip what is there.

    Honours the ``LABKIT_MIRROR`` environment variable (see `labkit.download`). Archives that
    were placed in `root` by hand are verified and extracted without any network access.
    """
    root = Path(root)
    for url, md5, unpacked_folder in RESOURCES:
        if (root / unpacked_folder).is_dir():
            continue
        archive = download_url(url, archive_path(root, Path(urlparse(url).path).name), md5=md5,
                               progress=progress, hint=_how_to_get(root))
        extract_archive(archive, root)
        if not keep_archives and archive.parent == root:  # never delete the kept copy ($LABKIT_ARCHIVES)
            archive.unlink()
    return check_root(root)


def read_names(list_file: str | Path) -> list[str]:
    """Sample names from an official list file: first token per line, no blanks or # comments."""
    lines = Path(list_file).read_text().splitlines()
    return [line.split()[0] for line in lines if line.strip() and not line.lstrip().startswith("#")]


def split_names(root: str | Path, split: str) -> list[str]:
    """The names in `split` ("train", "valid" or "test") under the course's 9:1 index rule."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    annotations = Path(root) / "annotations"
    if split == "test":
        return read_names(annotations / "test.txt")
    names = read_names(annotations / "trainval.txt")
    return [name for i, name in enumerate(names) if (i % 10 == 0) == (split == "valid")]


def read_rgb(path: str | Path) -> np.ndarray:
    """uint8 (H, W, 3) from any image file PIL reads, whatever its extension says (RGBA, P, L...)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def read_trimap(path: str | Path) -> np.ndarray:
    """uint8 (H, W) trimap with values in {1, 2, 3}; anything else raises naming the file."""
    with Image.open(path) as image:
        trimap = np.asarray(image)
    if trimap.ndim != 2 or trimap.min() < 1 or trimap.max() > 3:
        bad = sorted(set(np.unique(trimap).tolist()) - set(TRIMAP_VALUES))
        raise ValueError(f"Trimap {path} has shape {trimap.shape} and values {bad} outside "
                         f"{set(TRIMAP_VALUES)}: expected a single-channel PNG with 1 = pet, "
                         "2 = background, 3 = border. Re-extract annotations.tar.gz.")
    return trimap


def trimap_to_mask(trimap: np.ndarray) -> np.ndarray:
    """Course rule: background (2) -> 0, pet (1) and border (3) -> 1; uint8 (H, W)."""
    return (trimap != 2).astype(np.uint8)


def to_tensors(image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 image (H, W, 3) and mask (H, W) -> ImageNet-normalised float (3, H, W), float (1, H, W)."""
    image = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1) / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (image - mean) / std, torch.from_numpy(np.array(mask, dtype=np.float32))[None]


def denormalize(image: torch.Tensor) -> torch.Tensor:
    """Undo the ImageNet normalisation of (..., 3, H, W) for display; values in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device).view(3, 1, 1)
    return (image * std + mean).clamp(0, 1)


class OxfordIIITPet(Dataset):
    """Oxford-IIIT Pet images with binary masks; returns ``(image, mask)`` tensors.

    Args:
        root: folder with the official layout (see the module docstring).
        split: "train", "valid" or "test" (course rule: valid = every 10th trainval line).
        image_size: int or (H, W) to resize to (image bilinear, mask nearest); None keeps each
            file's own size (then `transform` must resize, or use batch size 1).
        augment: use :func:`train_transform` at ``image_size`` (for training); for other
            settings (a seed, zoom) pass ``transform=train_transform(...)`` instead.
        transform: albumentations Compose, applied to ``image=uint8 (H, W, 3), mask=uint8 (H, W)``;
            geometry and colour only. See `train_transform` and `eval_transform`.
        cache: decode and resize every sample of the split once and read uint8 arrays afterwards
            (augmentations still run per item). Needs `image_size`.
        cache_dir: where the cache lives (default: the per-user folder of
            ``labkit.data.cache.default_cache_dir``, never inside ROOT); giving it turns `cache` on.

    Each item: image float32 (3, H, W), ALWAYS ImageNet-normalised as the last step (so every
    pipeline, train or eval, sees the same input statistics); mask float32 (1, H, W) in {0, 1}:
    one logit channel. ``names``, ``trimap(i)`` (raw, original size) and ``decode(i)`` (uint8,
    resized, before transform) give access to the underlying data.
    """

    def __init__(self, root: str | Path, split: str = "train", *,
                 image_size: int | tuple[int, int] | None = 256, augment: bool = False, transform=None,
                 cache: bool = False, cache_dir: str | Path | None = None, progress: bool = True):
        self.root = check_root(root)
        self.split = split
        self.names = split_names(self.root, split)
        self.image_size = None if image_size is None else _size_hw(image_size)
        if augment and transform is not None:
            raise ValueError("give augment=True (the default train_transform) or a transform, not both")
        self.transform = train_transform(self.image_size or 256) if augment else transform
        files = [path for i in range(len(self.names))
                 for path in (self.image_path(i), self.trimap_path(i))]
        missing = [path for path in files if not path.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} file(s) listed for split {split!r} are missing, first: "
                f"{', '.join(map(str, missing[:3]))}. Re-extract the archives, or download again "
                f"with labkit.data.pets.download({str(self.root)!r}).")
        self._cached = cached_split(self.decode, len(self.names), cache=cache, cache_dir=cache_dir,
                                    root=self.root, tag=f"pets-{self.root.name}-{split}",
                                    size=self.image_size, source_files=files, progress=progress)

    def __len__(self) -> int:
        return len(self.names)

    def __getstate__(self):
        # DataLoader workers started with "spawn" (Windows, macOS) receive a pickled dataset: send
        # the cache file names, not the arrays, so each worker maps the files instead of copying.
        state = self.__dict__.copy()
        if self._cached is not None:
            state["_cached"] = tuple(array.filename for array in self._cached)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self._cached is not None:
            self._cached = tuple(np.load(name, mmap_mode="r") for name in self._cached)

    def image_path(self, i: int) -> Path:
        return self.root / "images" / f"{self.names[i]}.jpg"

    def trimap_path(self, i: int) -> Path:
        return self.root / "annotations" / "trimaps" / f"{self.names[i]}.png"

    def trimap(self, i: int) -> np.ndarray:
        """Raw trimap uint8 (H0, W0) at the file's own size, values in {1, 2, 3}."""
        return read_trimap(self.trimap_path(i))

    def decode(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample i as uint8 image (H, W, 3) and mask (H, W) in {0, 1}, resized, no transform."""
        image = Image.fromarray(read_rgb(self.image_path(i)))
        mask = Image.fromarray(trimap_to_mask(self.trimap(i)))
        if self.image_size is not None:
            size_wh = (self.image_size[1], self.image_size[0])  # PIL wants (width, height)
            image = image.resize(size_wh, Image.BILINEAR)
            mask = mask.resize(size_wh, Image.NEAREST)  # nearest: a mask must stay in {0, 1}
        return np.asarray(image), np.asarray(mask)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cached is not None:
            image, mask = np.array(self._cached[0][i]), np.array(self._cached[1][i])
        else:
            image, mask = self.decode(i)
        if self.transform is not None:
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        return to_tensors(image, mask)


def _size_hw(image_size: int | tuple[int, int]) -> tuple[int, int]:
    return (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)


def train_transform(image_size: int | tuple[int, int] = 256, *, seed: int | None = None,
                    scale: float = 0.0):
    """Resize, horizontal flip, rotation up to 15 degrees, mild colour jitter (no normalisation).

    ``scale`` > 0 replaces the plain rotation by an affine warp that also zooms by a factor in
    ``[1 - scale, 1 + scale]`` and shifts by up to 10 % (rotation still up to 15 degrees, border
    reflected). With a few hundred training images this is what keeps a U-Net from memorising
    where and how large the pet is (CPU recipe of notebook 01: ``scale=0.25``). ``scale=0`` is the
    original transform, random stream included.

    albumentations draws from its own generator, which ``seed_everything`` does not reach: pass
    ``seed`` to make the augmentations (and so a whole training run) repeatable.

    Example:
        >>> import numpy as np
        >>> out = train_transform(64, seed=0, scale=0.25)(image=np.zeros((80, 90, 3), np.uint8),
        ...                                               mask=np.ones((80, 90), np.uint8))
        >>> out["image"].shape, out["mask"].shape
        ((64, 64, 3), (64, 64))
    """
    import albumentations as A  # imported here: the loader itself works without albumentations
    import cv2

    if not 0.0 <= scale < 1.0:
        raise ValueError(f"scale must be in [0, 1) (a zoom range of 1 +- scale), got {scale}")
    height, width = _size_hw(image_size)
    # Reflect the border: no black corners, and the mask is reflected with the image.
    if scale:
        geometry = A.Affine(scale=(1.0 - scale, 1.0 + scale), translate_percent=(-0.1, 0.1),
                            rotate=(-15, 15), border_mode=cv2.BORDER_REFLECT_101, p=0.7)
    else:
        geometry = A.Rotate(limit=15, border_mode=cv2.BORDER_REFLECT_101, p=0.5)
    return A.Compose([
        A.Resize(height, width),
        A.HorizontalFlip(p=0.5),
        geometry,
        A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5),
    ], seed=seed)


def seed_augmentation_worker(worker_id: int) -> None:
    """``DataLoader(worker_init_fn=...)``: give each worker its own augmentation stream.

    Each worker receives a pickled copy of the transform, random generator included, so without
    this every worker (and every epoch) would repeat the same augmentations. ``torch.initial_seed()``
    differs per worker and per epoch and follows the main process's seed, so runs stay repeatable.
    """
    import torch.utils.data

    info = torch.utils.data.get_worker_info()
    dataset = info.dataset if info is not None else None
    while isinstance(dataset, torch.utils.data.Subset):
        dataset = dataset.dataset
    transform = getattr(dataset, "transform", None)
    if hasattr(transform, "set_random_seed"):
        transform.set_random_seed(torch.initial_seed() % 2**32)


def eval_transform(image_size: int | tuple[int, int] = 256):
    """Resize only (image bilinear, mask nearest): what validation and test see."""
    import albumentations as A

    height, width = _size_hw(image_size)
    return A.Compose([A.Resize(height, width)])


# --- synthetic stand-in -----------------------------------------------------------------------
# (breed, class_id, species 1=cat 2=dog, breed_id) as in the official list files
FIXTURE_BREEDS = (("Abyssinian", 1, 1, 1), ("american_bulldog", 2, 2, 1),
                  ("basset_hound", 4, 2, 3), ("beagle", 5, 2, 4), ("Bengal", 6, 1, 2))


def _synthetic_pet(rng: np.random.Generator, size: tuple[int, int], border: float = 2.0):
    """A bright textured ellipse on a muted noisy background; trimap with a border band."""
    height, width = size
    coarse = rng.integers(30, 150, size=(max(2, height // 12), max(2, width // 12), 3), dtype=np.uint8)
    background = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR))
    yy, xx = np.mgrid[0:height, 0:width] + 0.5
    cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
    semi_y, semi_x = rng.uniform(0.15, 0.35) * height, rng.uniform(0.15, 0.35) * width
    angle = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)

    def inside(grow: float) -> np.ndarray:
        return (u / (semi_x + grow)) ** 2 + (v / (semi_y + grow)) ** 2 <= 1

    colour = rng.uniform(0.0, 1.0, 3)
    colour = 90 + 165 * colour / colour.max()  # saturated and bright: the brightest channel is 255
    image = np.where(inside(0)[..., None], colour, background.astype(np.float64))
    image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
    trimap = np.full((height, width), 2, np.uint8)
    trimap[inside(border)] = 3
    trimap[inside(-border)] = 1
    return image, trimap


def make_fixture(root: str | Path, *, n_trainval: int = 40, n_test: int = 20,
                 size: tuple[int, int] = (96, 128), seed: int = 0) -> Path:
    """Write a small learnable synthetic Oxford-IIIT Pet in the official layout; return `root`.

    Images are JPEGs of size (H, W) = `size`. Like the real files: trainval line 1 is an RGBA PNG
    and line 2 a palette GIF (both named .jpg), ``images/<first name>.mat`` is a stray file, and
    one extra image with its trimap is in neither list. Deterministic for a given `seed`.
    """
    if n_trainval < 3 or n_test < 1:
        raise ValueError("make_fixture needs n_trainval >= 3 (for the quirks) and n_test >= 1.")
    root, rng = Path(root), np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "trimaps").mkdir(parents=True, exist_ok=True)
    lines = []
    for k in range(n_trainval + n_test + 1):  # the last one stays unlisted
        breed, class_id, species, breed_id = FIXTURE_BREEDS[k % len(FIXTURE_BREEDS)]
        name = f"{breed}_{k // len(FIXTURE_BREEDS) + 1}"
        image, trimap = _synthetic_pet(rng, size)
        picture = Image.fromarray(image)
        if k == 1:
            picture.convert("RGBA").save(root / "images" / f"{name}.jpg", format="PNG")
        elif k == 2:
            picture.convert("P", palette=Image.ADAPTIVE).save(root / "images" / f"{name}.jpg",
                                                              format="GIF")
        else:
            picture.save(root / "images" / f"{name}.jpg", format="JPEG", quality=90)
        Image.fromarray(trimap).save(root / "annotations" / "trimaps" / f"{name}.png")
        lines.append(f"{name} {class_id} {species} {breed_id}")
    (root / "images" / f"{lines[0].split()[0]}.mat").write_bytes(b"MATLAB 5.0 MAT-file, stray\n")
    (root / "annotations" / "trainval.txt").write_text("\n".join(lines[:n_trainval]) + "\n")
    (root / "annotations" / "test.txt").write_text("\n".join(lines[n_trainval:-1]) + "\n")
    return root
