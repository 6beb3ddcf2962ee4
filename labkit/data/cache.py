"""Decode-once cache: a whole split as two uint8 arrays on disk, memory-mapped on load.

On a 2-core CPU, decoding and resizing JPEGs costs more than a small model's training step. This
module decodes every sample of a split once, at the training size, and stores

    <cache_dir>/<tag>-<H>x<W>-<fingerprint>.images.npy   uint8 (N, H, W, 3)
    <cache_dir>/<tag>-<H>x<W>-<fingerprint>.masks.npy    uint8 (N, H, W)

Later epochs read these with ``np.load(mmap_mode="r")``: no decoding, and only the pages that are
touched come into memory. The fingerprint hashes the sample ids and the size and modification time
of every source file, so editing, adding or replacing a file makes a new cache (the stale one for the
same tag and size is removed). Nothing here knows about a particular dataset: masks may hold any
uint8 labels ({0, 1} for pets, 0..7 for Cityscapes).

Where caches live (:func:`default_cache_dir`): never inside the dataset folder, which is often a
read-only shared copy. The default is a per-user folder, ``$LABKIT_CACHE_DIR`` if set, else
``$XDG_CACHE_HOME/labkit``, else ``~/.cache/labkit``, with one subfolder per dataset root
(``<root name>-<hash of its resolved path>``) so two copies of a dataset never share or delete each
other's caches; inside it the file names carry the split, the size and the fingerprint. When that
folder cannot be written, the cache goes to a per-user temporary folder and a note says so.

Example::

    >>> import numpy as np, tempfile
    >>> def decode(i):  # -> (image uint8 HxWx3, mask uint8 HxW)
    ...     return np.full((4, 6, 3), i, np.uint8), np.full((4, 6), i % 2, np.uint8)
    >>> images, masks = load_or_build_cache([0, 1, 2], decode, cache_dir=tempfile.mkdtemp(),
    ...                                     tag="demo-train", size=(4, 6), source_files=[],
    ...                                     progress=False)
    >>> images.shape, masks.shape, int(images[2, 0, 0, 0])
    ((3, 4, 6, 3), (3, 4, 6), 2)
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap
from tqdm.auto import tqdm

CACHE_FORMAT = 1  # bump when the meaning of cached arrays changes, so old caches are not reused


def fingerprint(ids: Sequence, source_files: Sequence[str | Path]) -> str:
    """Short hash of the sample ids and the (path, size, mtime) of every source file."""
    digest = hashlib.sha1(f"format={CACHE_FORMAT}\n".encode())
    digest.update("\n".join(map(str, ids)).encode())
    for path in source_files:
        stat = os.stat(path)
        digest.update(f"\n{path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def user_cache_home() -> Path:
    """The per-user base folder for labkit caches (not created here).

    ``$LABKIT_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/labkit``, else ``~/.cache/labkit``.

    Example:
        >>> from unittest import mock
        >>> with mock.patch.dict("os.environ", {"LABKIT_CACHE_DIR": "/tmp/my-caches"}):
        ...     print(user_cache_home())
        /tmp/my-caches
    """
    if os.environ.get("LABKIT_CACHE_DIR"):
        return Path(os.environ["LABKIT_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "labkit"
    return Path.home() / ".cache" / "labkit"


def dataset_key(root: str | Path) -> str:
    """``<root folder name>-<12 hex digits of its resolved path>``: one cache subfolder per dataset copy.

    Example:
        >>> dataset_key("/data/oxford-iiit-pet") == dataset_key("/data/../data/oxford-iiit-pet")
        True
        >>> dataset_key("/data/oxford-iiit-pet") == dataset_key("/other/oxford-iiit-pet")
        False
    """
    resolved = Path(root).expanduser().resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    return f"{resolved.name or 'root'}-{digest}"


def default_cache_dir(root: str | Path) -> Path:
    """The writable folder that holds the caches of the dataset at `root` (created if needed).

    ``user_cache_home() / dataset_key(root)``; if that cannot be written (a read-only home, a
    sandbox), ``<temp dir>/labkit-cache-<user id>/dataset_key(root)`` with a printed note. Never a
    folder inside `root`.

    Example:
        >>> import tempfile
        >>> from unittest import mock
        >>> with mock.patch.dict("os.environ", {"LABKIT_CACHE_DIR": tempfile.mkdtemp()}):
        ...     folder = default_cache_dir("/data/oxford-iiit-pet")
        ...     print(folder.parent == user_cache_home(), folder.is_dir(), folder.name[:16])
        True True oxford-iiit-pet-
    """
    key = dataset_key(root)
    preferred = user_cache_home() / key
    if _writable_dir(preferred):
        return preferred
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    fallback = Path(tempfile.gettempdir()) / f"labkit-cache-{user}" / key
    if not _writable_dir(fallback):
        raise PermissionError(f"no writable folder for the decoded-image cache: tried {preferred} and "
                              f"{fallback}. Set LABKIT_CACHE_DIR to a folder you can write, or pass "
                              "cache_dir=..., or turn caching off (cache=False).")
    print(f"note: the cache folder {preferred} is not writable; caching in {fallback} instead "
          "(set LABKIT_CACHE_DIR to choose another folder)")
    return fallback


def _writable_dir(folder: Path) -> bool:
    """Create `folder` if needed and check that a file can be written in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError:
        return False
    return True


def cache_paths(cache_dir: str | Path, tag: str, size: tuple[int, int], key: str) -> tuple[Path, Path]:
    """The (images, masks) file paths for one cached split."""
    stem = f"{tag}-{size[0]}x{size[1]}-{key}"
    return Path(cache_dir) / f"{stem}.images.npy", Path(cache_dir) / f"{stem}.masks.npy"


def load_or_build_cache(
    ids: Sequence,
    decode: Callable[[object], tuple[np.ndarray, np.ndarray]],
    *,
    cache_dir: str | Path,
    tag: str,
    size: tuple[int, int],
    source_files: Sequence[str | Path],
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Return read-only memory-mapped ``(images (N,H,W,3), masks (N,H,W))`` uint8 arrays.

    Builds them first if no cache matches: ``decode(id)`` is called once per id and must return an
    image uint8 (H, W, 3) and a mask uint8 (H, W) at `size` = (H, W). `tag` names the split (e.g.
    ``"pets-train"``); `source_files` are the files whose changes must invalidate the cache.
    """
    size = (int(size[0]), int(size[1]))
    key = fingerprint(ids, source_files)
    images_path, masks_path = cache_paths(cache_dir, tag, size, key)
    if not (images_path.is_file() and masks_path.is_file()):
        _remove_stale(cache_dir, tag, size, keep=key)
        _build(ids, decode, images_path, masks_path, size, progress=progress)
    return np.load(images_path, mmap_mode="r"), np.load(masks_path, mmap_mode="r")


def cached_split(decode: Callable, count: int, *, cache: bool, cache_dir, root, tag: str,
                 size: tuple[int, int] | None, source_files: Sequence[str | Path], progress: bool = True):
    """The datasets' shared switch: ``None`` when caching is off, else the cached (images, masks).

    Giving ``cache_dir`` turns caching on and puts the files there; with ``cache=True`` and no
    ``cache_dir`` they go to :func:`default_cache_dir` of `root` (a per-user folder, never inside
    the dataset).
    """
    if not cache and cache_dir is None:
        return None
    if size is None:
        raise ValueError("cache=True stores arrays of one size: give the image size as well.")
    return load_or_build_cache(range(count), decode, progress=progress,
                               cache_dir=cache_dir if cache_dir is not None else default_cache_dir(root),
                               tag=tag, size=size, source_files=source_files)


def _build(ids, decode, images_path: Path, masks_path: Path, size, *, progress: bool) -> None:
    images_path.parent.mkdir(parents=True, exist_ok=True)
    height, width = size
    # Write through memory maps into .part files: the full split never has to fit in RAM, and a
    # crash leaves no file under the final name (np.save-style header, so np.load reads them).
    images_part = images_path.with_name(images_path.name + ".part")
    masks_part = masks_path.with_name(masks_path.name + ".part")
    images = open_memmap(images_part, mode="w+", dtype=np.uint8, shape=(len(ids), height, width, 3))
    masks = open_memmap(masks_part, mode="w+", dtype=np.uint8, shape=(len(ids), height, width))
    try:
        for i, sample_id in enumerate(tqdm(ids, desc=f"caching {images_path.stem}",
                                           disable=not progress)):
            image, mask = decode(sample_id)
            if image.shape != (height, width, 3) or mask.shape != (height, width):
                raise ValueError(
                    f"decode({sample_id!r}) returned image {image.shape} and mask {mask.shape}; "
                    f"the cache needs image {(height, width, 3)} and mask {(height, width)}. "
                    "Resize inside the decode function.")
            images[i], masks[i] = image, mask
        images.flush()
        masks.flush()
    except BaseException:
        del images, masks
        images_part.unlink(missing_ok=True)
        masks_part.unlink(missing_ok=True)
        raise
    del images, masks  # close the maps before renaming (needed on Windows)
    os.replace(masks_part, masks_path)
    os.replace(images_part, images_path)


def _remove_stale(cache_dir: str | Path, tag: str, size, *, keep: str) -> None:
    """Delete caches of the same split and size built from an older version of the files."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return
    prefix = f"{tag}-{size[0]}x{size[1]}-"
    for path in cache_dir.iterdir():
        if path.name.startswith(prefix) and not path.name.startswith(prefix + keep):
            path.unlink(missing_ok=True)
