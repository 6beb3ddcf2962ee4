"""A simulated Google Colab VM for the tests: a fresh venv, a fake ``google.colab``, ``/content`` and a Drive.

What is simulated, and where it differs from the real Colab (colab.research.google.com, as documented
by Google's "External data: Local Files, Drive, Sheets" notebook and the ``google.colab.drive`` API):

- **The VM image**: a fresh venv (``--without-pip``) whose ``.pth`` file exposes this environment's
  site-packages as the preinstalled stack (torch, torchvision, numpy, matplotlib, pip, jupyter), minus
  the packages named in ``hide`` (Colab does not preinstall ``torch-pruning``) and minus labkit. A
  recycled VM is a new venv: what pip installed and the ``.pth`` the bootstrap wrote are gone.
  Colab's Python may be another version than this one; its torch is a CUDA build (here: this one).
- **``/content``**: a temporary folder bound at ``/content`` in a private mount namespace
  (bubblewrap), so the notebook's absolute paths are the real ones; everything else is the host's
  file system. The kernel starts in ``/content``, as Colab's does, whatever folder the notebook is in.
- **Drive**: ``drive.mount("/content/drive")`` makes ``/content/drive/MyDrive`` a symlink to a
  temporary folder that outlives the VM; the real one is a FUSE mount (slow for many small files,
  which is why the bootstrap keeps datasets on the VM's disk). Mounting twice prints Colab's message.
- **No network**: ``PIP_NO_INDEX``/``PIP_FIND_LINKS`` point pip at a local wheel folder.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

DRIVER = Path(__file__).with_name("colab_driver.py")

FAKE_DRIVE_MODULE = '''"""Stand-in for google.colab.drive (tests only): MyDrive is a symlink to $FAKE_COLAB_DRIVE."""
import os


def mount(mountpoint, force_remount=False, timeout_ms=120000, readonly=False):
    my_drive = os.path.join(mountpoint, "MyDrive")
    if os.path.islink(my_drive) and not force_remount:
        print(f"Drive already mounted at {mountpoint}; to attempt to forcibly remount, call "
              f'drive.mount("{mountpoint}", force_remount=True).')
        return
    os.makedirs(mountpoint, exist_ok=True)
    if os.path.islink(my_drive):
        os.unlink(my_drive)
    os.symlink(os.environ["FAKE_COLAB_DRIVE"], my_drive)
    print(f"Mounted at {mountpoint}")
'''


def bwrap_available() -> bool:
    if shutil.which("bwrap") is None:
        return False
    return subprocess.run(["bwrap", "--dev-bind", "/", "/", "true"], capture_output=True).returncode == 0


def make_fake_colab(folder: Path) -> Path:
    """A folder holding ``google/colab/{__init__,drive}.py`` (``google`` stays a namespace package)."""
    package = folder / "google" / "colab"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text('"""Stand-in for Colab\'s google.colab (tests only)."""\n')
    (package / "drive.py").write_text(FAKE_DRIVE_MODULE)
    return folder


def _stack_without(folder: Path, hide: tuple[str, ...]) -> Path:
    """A folder of symlinks to this environment's site-packages, without labkit and ``hide``."""
    site = Path(sysconfig.get_paths()["purelib"])
    folder.mkdir(parents=True, exist_ok=True)
    hidden = tuple(name.lower().replace("-", "_") for name in (*hide, "labkit", "__editable__"))
    for entry in site.iterdir():
        name = entry.name.lower().replace("-", "_")
        if name.endswith(".pth") or any(name == h or name.startswith((h + "-", h + ".", h + "_")) for h in hidden):
            continue
        (folder / entry.name).symlink_to(entry)
    return folder


@dataclass
class ColabVM:
    """One simulated VM: its venv python, its ``/content`` folder and its home."""
    root: Path
    drive: Path
    wheels: Path | None = None

    @property
    def python(self) -> Path:
        return self.root / "venv" / "bin" / "python"

    @property
    def content(self) -> Path:
        return self.root / "content"

    def environ(self, **extra) -> dict:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("PYTHON", "LABKIT_", "VIRTUAL_ENV", "JUPYTER", "PIP_"))}
        env.update(HOME=str(self.root / "home"), FAKE_COLAB_DRIVE=str(self.drive), MPLBACKEND="Agg",
                   PIP_NO_INDEX="1", PIP_FIND_LINKS=str(self.wheels or self.root), PIP_CONFIG_FILE=os.devnull,
                   PIP_DISABLE_PIP_VERSION_CHECK="1")
        env.update(extra)
        return env

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` in a mount namespace where ``/content`` is this VM's and the rest is the host's."""
        args = ["bwrap", "--dev-bind", "/dev", "/dev", "--proc", "/proc"]
        for entry in sorted(os.listdir("/")):
            path = Path("/") / entry
            if entry in ("dev", "proc", "content"):
                continue
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                args += ["--bind", str(path), str(path)]
        return [*args, "--bind", str(self.content), "/content", "--chdir", "/content", "--", *argv]

    def run(self, argv: list[str], *, timeout: int = 900, **extra_env) -> subprocess.CompletedProcess:
        return subprocess.run(self.command([str(self.python), *argv]), capture_output=True, text=True,
                              env=self.environ(**extra_env), timeout=timeout)

    def run_notebook(self, notebook: Path, result: Path, *, inject: dict | None = None, **extra_env) -> dict:
        """Open ``notebook`` in a fresh kernel and run all its cells until the first error (colab_driver.py)."""
        ran = self.run([str(DRIVER), str(notebook), str(result), json.dumps(inject or {})], **extra_env)
        if ran.returncode != 0 or not result.is_file():
            raise AssertionError(f"the driver failed ({ran.returncode}):\n{ran.stdout[-3000:]}\n{ran.stderr[-3000:]}")
        return json.loads(result.read_text())


def new_vm(root: Path, *, drive: Path, hide: tuple[str, ...] = (), wheels: Path | None = None) -> ColabVM:
    """A fresh VM under ``root`` (replacing one there: a recycled VM keeps nothing but Drive)."""
    if root.exists():
        shutil.rmtree(root)
    for folder in ("content", "home"):
        (root / folder).mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    purelib = subprocess.run([str(root / "venv" / "bin" / "python"), "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    image = [_stack_without(root / "image" / "site-packages", hide), make_fake_colab(root / "image" / "colab")]
    Path(purelib, "zz_colab_image.pth").write_text("".join(f"{path}\n" for path in image))
    return ColabVM(root=root, drive=drive, wheels=wheels)
