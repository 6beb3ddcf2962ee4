"""Fetch dataset files: checksums, a mirror override, atomic writes, and an offline-friendly error.

Every dataset module (pets, cifar10, cityscapes) downloads through `download_url` and unpacks through
`extract_archive`, so all of them behave the same way:

- a file that is already present with the right MD5 is never fetched again;
- the environment variable ``LABKIT_MIRROR`` (a URL, a ``file://`` URL or a plain local folder)
  replaces the official host: ``<mirror>/<file name>`` is fetched instead;
- bytes go to ``<dest>.part`` and are renamed only after the MD5 matched, so an interrupted or
  corrupt download never looks like a finished one;
- without network the error (`DatasetNotFoundError`) says which files to put in which folder;
- the environment variable ``LABKIT_ARCHIVES`` names a folder where downloaded archives are kept
  instead of the dataset folder (`archive_path`): on Colab a folder on Drive, so a new VM extracts the
  archives onto its own fast disk instead of downloading them again.

Example (offline-safe: the mirror is a local folder)::

    >>> import os, pathlib, tempfile
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> (tmp / "mirror").mkdir(); _ = (tmp / "mirror" / "hello.txt").write_text("hi")
    >>> os.environ["LABKIT_MIRROR"] = str(tmp / "mirror")
    >>> download_url("https://example.org/files/hello.txt", tmp / "data" / "hello.txt",
    ...              md5="49f68a5c8493ec2c0bf489821c21fc3b", progress=False).read_text()
    'hi'
    >>> del os.environ["LABKIT_MIRROR"]
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from urllib.parse import urlparse

from tqdm.auto import tqdm

DEFAULT_MIRROR_ENV = "LABKIT_MIRROR"
ARCHIVES_ENV = "LABKIT_ARCHIVES"
TIMEOUT_S = 30  # per blocking network operation; a dead host should fail fast, not hang a notebook


class DatasetNotFoundError(RuntimeError):
    """The dataset is not on disk and could not be downloaded. The message says what to do."""


class ChecksumError(RuntimeError):
    """A downloaded file has the wrong MD5 (corrupt, truncated, or a different version)."""


def file_digest(path: str | Path, algorithm: str = "sha256", *, chunk_size: int = 1 << 20) -> str:
    """Hex digest of a file (``hashlib`` algorithm name), read in chunks so multi-GB files do not fill memory."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def md5sum(path: str | Path, *, chunk_size: int = 1 << 20) -> str:
    """Hex MD5 of a file (the datasets' published checksums)."""
    return file_digest(path, "md5", chunk_size=chunk_size)


def sha256sum(path: str | Path) -> str:
    """Hex SHA-256 of a file (weights, submissions)."""
    return file_digest(path, "sha256")


def archive_path(root: str | Path, name: str) -> Path:
    """Where the archive ``name`` of the dataset in ``root`` is kept: ``$LABKIT_ARCHIVES/name`` when
    that is set (the Colab bootstrap sets it to a folder on Drive), else ``root/name``.

    Example:
        >>> os.environ[ARCHIVES_ENV] = "/drive/data-archives"
        >>> archive_path("data/pets", "images.tar.gz").as_posix()
        '/drive/data-archives/images.tar.gz'
        >>> del os.environ[ARCHIVES_ENV]
    """
    kept = os.environ.get(ARCHIVES_ENV, "").strip()
    return Path(kept) / name if kept else Path(root) / name


def how_to_get_message(
    dataset: str,
    files: list[tuple[str, str]],
    folder: str | Path,
    *,
    mirror_env: str = DEFAULT_MIRROR_ENV,
    command: str | None = None,
) -> str:
    """The 'how to get it' text shared by every dataset: which files, from where, into which folder.

    `files` is a list of ``(file name, official URL)``; `command` is the call that downloads or
    unpacks them (e.g. ``labkit.data.pets.download('data/oxford-iiit-pet')``).
    """
    width = max(len(name) for name, _ in files)
    lines = [f"{dataset} is not available in {Path(folder).absolute()}.",
             "Put these files into that folder:"]
    lines += [f"  {name:<{width}}  from {url}" for name, url in files]
    lines.append(f"or set {mirror_env} to a folder or URL that holds them "
                 f"(e.g. {mirror_env}=/mnt/datasets or {mirror_env}=https://my.mirror/path).")
    if os.environ.get(ARCHIVES_ENV, "").strip():
        lines.append(f"(Archives are kept in {os.environ[ARCHIVES_ENV]} ({ARCHIVES_ENV}): files put there are used too.)")
    if command:
        lines.append(f"Then run {command} to verify and extract them.")
    return "\n".join(lines)


def mirrored_url(url: str, *, mirror_env: str = DEFAULT_MIRROR_ENV) -> str:
    """`url`, or ``<mirror>/<basename of url>`` when the environment variable `mirror_env` is set.

    The mirror may be an http(s) URL, a ``file://`` URL or a plain local folder.
    """
    mirror = os.environ.get(mirror_env, "").strip()
    if not mirror:
        return url
    basename = Path(urlparse(url).path).name
    if "://" not in mirror:  # a plain folder: turn it into a file:// URL so urllib can open it
        return (Path(mirror).expanduser().resolve() / basename).as_uri()
    return f"{mirror.rstrip('/')}/{basename}"


def download_url(
    url: str,
    dest_path: str | Path,
    *,
    md5: str | None = None,
    mirror_env: str = DEFAULT_MIRROR_ENV,
    progress: bool = True,
    hint: str | None = None,
) -> Path:
    """Download `url` to `dest_path` (or take it from the mirror) and return the path.

    Skips the download when the file exists and its MD5 matches (or exists and `md5` is None).
    Raises `DatasetNotFoundError` when the source cannot be reached, `ChecksumError` when the
    bytes have the wrong MD5 (the partial file is deleted in both cases). `hint` replaces the
    default one-file "how to get it" text in that error (a dataset lists all of its files).
    """
    dest_path = Path(dest_path)
    if dest_path.is_file() and (md5 is None or md5sum(dest_path) == md5):
        return dest_path

    source = mirrored_url(url, mirror_env=mirror_env)
    part_path = dest_path.with_name(dest_path.name + ".part")
    dest_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(source, timeout=TIMEOUT_S) as response, \
                open(part_path, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=dest_path.name, disable=not progress) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as err:
        # URLError covers HTTP errors and missing file:// paths; OSError covers refused or
        # dropped connections and timeouts; ValueError an unusable URL in the mirror variable.
        part_path.unlink(missing_ok=True)
        hint = hint or how_to_get_message(dest_path.name, [(dest_path.name, url)],
                                          dest_path.parent, mirror_env=mirror_env)
        raise DatasetNotFoundError(f"Could not download {source} ({err}).\n{hint}") from err

    if md5 is not None:
        actual = md5sum(part_path)
        if actual != md5:
            part_path.unlink()
            raise ChecksumError(
                f"{source} has MD5 {actual}, expected {md5}: the file is corrupt, truncated or a "
                f"different version. Nothing was saved to {dest_path}. Fetch it again, or check "
                f"the copy on your mirror ({mirror_env}) against the official {url}.")
    os.replace(part_path, dest_path)  # atomic on one file system: no half-written dest_path
    return dest_path


def extract_archive(path: str | Path, dest: str | Path) -> Path:
    """Unpack a ``.tar.gz``/``.tgz``/``.tar`` or ``.zip`` archive into the folder `dest`."""
    path, dest = Path(path), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(path) as archive:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: refuse ../ paths, links, devices
                archive.extractall(dest, filter="data")
            else:
                archive.extractall(dest)
    elif name.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            archive.extractall(dest)  # zipfile already strips absolute paths and '..'
    else:
        raise ValueError(f"Cannot extract {path}: expected a .tar.gz, .tgz, .tar or .zip file.")
    return dest
