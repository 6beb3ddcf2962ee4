"""The first cell of every notebook: on Google Colab, install labkit and keep work on Drive.

Outside Colab the cell does nothing. On Colab it fetches the course release that
``python -m labkit release`` wrote (``labkit-<version>-py3-none-any.whl`` and
``labkit-notebooks-<version>.zip``) from ``RELEASE``, a URL folder or a Google Drive folder that the
TA sets ONCE, here; it installs the wheel *without touching Colab's torch* (pip gets the installed
torch/torchvision as constraints), unzips the notebooks and checks to ``/content/labkit``, links
``data/`` and ``notebooks/runs/`` to Drive so datasets and checkpoints survive a disconnect, and
moves into ``notebooks/`` so the notebook's relative paths (``../data``, ``../checks``) work.

After changing ``RELEASE``: ``python -m labkit.tools.colab`` rewrites the cell in every notebook.
``tests/test_notebook_contract.py`` checks that every notebook starts with exactly this cell.

Example:
    >>> "pip" in colab_cell(release="https://example.org/labkit") and "-c" in colab_cell()
    True
"""
from labkit.version import __version__

# The one place the TA sets where students get the release: an https:// folder holding the wheel and
# the .zip (e.g. a course web page or a GitHub release), or a Drive folder shared with the students
# (e.g. "/content/drive/MyDrive/labkit-release"; each student adds the shared folder to their Drive).
RELEASE = "<ask your TA: the labkit release folder (URL or Drive path)>"

_CELL = '''\
# Colab only: install labkit (keeping Colab's torch) and keep data + checkpoints on Drive.
import importlib.util, os, subprocess, sys
ON_COLAB = importlib.util.find_spec("google") and importlib.util.find_spec("google.colab")
if ON_COLAB and importlib.util.find_spec("labkit") is None:
    RELEASE = "@RELEASE@"  # set by the TA in labkit/tools/colab.py
    VERSION = "@VERSION@"
    USE_DRIVE = True  # datasets and checkpoints in MyDrive/labkit survive a disconnect
    if "<" in RELEASE:
        raise RuntimeError("Ask your TA for the labkit release folder and set RELEASE above")
    if USE_DRIVE or RELEASE.startswith("/content/drive"):
        from google.colab import drive
        drive.mount("/content/drive")
    files = [f"labkit-{VERSION}-py3-none-any.whl", f"labkit-notebooks-{VERSION}.zip"]
    if RELEASE.startswith(("http://", "https://")):
        import urllib.request
        for name in files:
            urllib.request.urlretrieve(f"{RELEASE.rstrip('/')}/{name}", f"/content/{name}")
        wheel, bundle = (f"/content/{name}" for name in files)
    else:
        wheel, bundle = (os.path.join(RELEASE, name) for name in files)
    import torch, torchvision  # pin what Colab has, so pip never replaces torch
    with open("/content/keep-torch.txt", "w") as pins:
        pins.write(f"torch=={torch.__version__}\\ntorchvision=={torchvision.__version__}\\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-c", "/content/keep-torch.txt", wheel],
                   check=True)
    importlib.invalidate_caches()  # so this kernel imports the labkit pip just installed
    import zipfile
    zipfile.ZipFile(bundle).extractall("/content")  # /content/labkit/{notebooks,checks,README.md}
    if USE_DRIVE:
        for folder in ("data", "notebooks/runs"):
            target = f"/content/drive/MyDrive/labkit/{folder}"
            os.makedirs(target, exist_ok=True)
            subprocess.run(["rm", "-rf", f"/content/labkit/{folder}"], check=True)
            os.symlink(target, f"/content/labkit/{folder}")
    os.chdir("/content/labkit/notebooks")
    os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"
'''


def colab_cell(*, release: str = RELEASE, version: str = __version__) -> str:
    """The Colab cell's source for a release folder (URL or Drive path) and version."""
    return _CELL.replace("@RELEASE@", release).replace("@VERSION@", version)


COLAB_CELL = colab_cell()


def write_colab_cell(notebook_path) -> None:
    """Put ``COLAB_CELL`` first among the notebook's code cells (replacing an older copy)."""
    import nbformat

    notebook = nbformat.read(notebook_path, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    if code_cells and "".join(code_cells[0].source).startswith("# Colab only"):
        code_cells[0].source = COLAB_CELL.rstrip("\n")
    else:
        first_code = next(i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code")
        notebook.cells.insert(first_code, nbformat.v4.new_code_cell(COLAB_CELL.rstrip("\n")))
    nbformat.write(notebook, notebook_path)


if __name__ == "__main__":
    # After changing RELEASE above: python -m labkit.tools.colab  (rewrites every lab notebook)
    from labkit.paths import NOTEBOOKS_DIR

    for path in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")):
        write_colab_cell(path)
        print(f"updated {path.name}")
