"""The first cell of every notebook: on Google Colab, set up the course on every run.

Outside Colab the cell does nothing. On Colab it runs in full every time (first run on a new VM,
after *Runtime -> Restart session*, twice in one kernel), so the kernel always ends in the same state:

1. mounts Drive (``USE_DRIVE``; ``drive.mount`` answers at once when Drive is already mounted);
2. once per release, copies ``labkit-course-<version>.zip`` from ``RELEASE`` (a URL folder or a Drive
   folder the TA sets ONCE, here) to ``MyDrive/labkit-course/releases/``; once per VM, unpacks it on
   the VM's disk (one large file read from Drive, not hundreds of small ones written to it). The
   version is the newest of the notebook's own and the release folder's ``LATEST`` file (written by
   ``python -m labkit release``), so a notebook the student keeps on Drive still gets a newer release;
3. runs ``labkit/tools/colab_setup.py`` from that release: the student's code and notebooks copied to
   Drive where missing (never overwritten), labkit imported from there, the missing requirements
   pip-installed around Colab's torch, data on the VM's disk, checkpoints on Drive, and ``os.chdir``
   into the working ``notebooks/`` folder. See that module for the layout.

After changing ``RELEASE``: ``python -m labkit.tools.colab`` rewrites the cell in every notebook.
The kit's tests check that every notebook starts with exactly this cell (``test_notebook_contract``)
and walk it on a simulated Colab (``test_colab_journey``).

Example:
    >>> "bootstrap(" in colab_cell(release="https://example.org/labkit") and "drive.mount" in colab_cell()
    True
"""
from labkit.tools.colab_setup import DRIVE_FOLDER
from labkit.version import __version__

# The one place the TA sets where students get the release: an https:// folder holding
# labkit-course-<version>.zip (e.g. a course web page or a GitHub release), or a Drive folder shared
# with the students (e.g. "/content/drive/MyDrive/labkit-release"; each student adds it to their Drive).
RELEASE = "<ask your TA: the labkit release folder (URL or Drive path)>"

_CELL = '''\
# Colab only, run on every start: Drive, your code on Drive, the course's requirements, data on the VM.
import importlib.util, os
ON_COLAB = importlib.util.find_spec("google") is not None and importlib.util.find_spec("google.colab") is not None
if ON_COLAB:
    RELEASE = "@RELEASE@"  # set by the TA in labkit/tools/colab.py
    VERSION = "@VERSION@"
    USE_DRIVE = True  # your code, checkpoints and dataset archives live in @DRIVE_FOLDER@
    COURSE = "/content/drive/@DRIVE_FOLDER@" if USE_DRIVE else "/content/labkit-course-files"
    if USE_DRIVE:
        from google.colab import drive
        drive.mount("/content/drive")
    import shutil, urllib.request, zipfile
    try:  # the newest release the TA published (its LATEST file), when newer than this notebook's
        where = f"{RELEASE.rstrip('/')}/LATEST"
        source = urllib.request.urlopen(where, timeout=10) if "://" in where else open(where, "rb")
        latest = source.read().decode().strip()
        VERSION = max(VERSION, latest, key=lambda v: tuple(int(part) for part in v.split(".")))
    except (OSError, ValueError):
        pass  # offline, or no LATEST: this notebook's release
    bundle = f"{COURSE}/releases/labkit-course-{VERSION}.zip"
    if not os.path.isfile(bundle):  # once per release
        if "<" in RELEASE:
            raise RuntimeError("Ask your TA for the labkit release folder and set RELEASE above")
        os.makedirs(os.path.dirname(bundle), exist_ok=True)
        name = os.path.basename(bundle)
        if RELEASE.startswith(("http://", "https://")):
            urllib.request.urlretrieve(f"{RELEASE.rstrip('/')}/{name}", bundle + ".part")
        else:
            shutil.copyfile(os.path.join(RELEASE, name), bundle + ".part")
        os.replace(bundle + ".part", bundle)
    unpacked = f"/content/labkit-release-{VERSION}"
    if not os.path.isfile(f"{unpacked}/.complete"):  # once per VM
        try:
            zipfile.ZipFile(bundle).extractall(unpacked)
        except zipfile.BadZipFile:
            os.remove(bundle)
            raise RuntimeError(f"{bundle} was damaged (an interrupted copy?) and is now deleted: run this cell again")
        open(f"{unpacked}/.complete", "w").close()
    spec = importlib.util.spec_from_file_location("colab_setup", f"{unpacked}/labkit/tools/colab_setup.py")
    colab_setup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(colab_setup)
    colab_setup.bootstrap(course=COURSE, release=unpacked, version=VERSION)
'''


def colab_cell(*, release: str = RELEASE, version: str = __version__) -> str:
    """The Colab cell's source for a release folder (URL or Drive path) and version."""
    return _CELL.replace("@RELEASE@", release).replace("@VERSION@", version).replace("@DRIVE_FOLDER@", DRIVE_FOLDER)


COLAB_CELL = colab_cell()


def write_colab_cell(notebook_path, *, release: str = RELEASE) -> None:
    """Put the Colab cell (for ``release``) first among the notebook's code cells, replacing an older copy."""
    import nbformat

    source = colab_cell(release=release).rstrip("\n")
    notebook = nbformat.read(notebook_path, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    if code_cells and "".join(code_cells[0].source).startswith("# Colab only"):
        code_cells[0].source = source
    else:
        first_code = next(i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code")
        notebook.cells.insert(first_code, nbformat.v4.new_code_cell(source))
    nbformat.write(notebook, notebook_path)


if __name__ == "__main__":
    # After changing RELEASE above: python -m labkit.tools.colab  (rewrites every lab notebook)
    from labkit.paths import NOTEBOOKS_DIR

    for path in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")):
        write_colab_cell(path)
        print(f"updated {path.name}")
