"""The first cell of every notebook: on Google Colab, install labkit and keep work on Drive.

Outside Colab the cell does nothing. On Colab it clones the course release (the TA sets
``REPOSITORY`` and ``RELEASE`` once per term), installs it *without touching Colab's torch*, links
``data/`` and ``notebooks/runs/`` to a Drive folder so datasets and checkpoints survive a disconnect,
and moves into ``notebooks/`` so the notebook's relative paths (``../data``, ``../checks``) work.

``tests/test_notebook_contract.py`` checks that every notebook starts with exactly this cell.
"""

COLAB_CELL = '''\
# Colab only: install labkit (keeping Colab's torch) and keep data + checkpoints on Drive.
import importlib.util, os, subprocess, sys
ON_COLAB = importlib.util.find_spec("google") and importlib.util.find_spec("google.colab")
if ON_COLAB and importlib.util.find_spec("labkit") is None:
    REPOSITORY = "https://github.com/<your-course>/labkit"  # the TA sets this once per term
    RELEASE = "v0.1.0"
    USE_DRIVE = True  # datasets and checkpoints in MyDrive/labkit survive a disconnect
    if "<" in REPOSITORY:
        raise RuntimeError("Ask your TA for the labkit repository URL and set REPOSITORY above")
    subprocess.run(["git", "clone", "-q", "--depth", "1", "--branch", RELEASE, REPOSITORY,
                    "/content/labkit"], check=True)
    import torch, torchvision  # pin what Colab has, so pip never replaces torch
    with open("/content/keep-torch.txt", "w") as pins:
        pins.write(f"torch=={torch.__version__}\\ntorchvision=={torchvision.__version__}\\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-c", "/content/keep-torch.txt",
                    "-e", "/content/labkit"], check=True)
    sys.path.insert(0, "/content/labkit")
    if USE_DRIVE:
        from google.colab import drive
        drive.mount("/content/drive")
        for folder in ("data", "notebooks/runs"):
            target = f"/content/drive/MyDrive/labkit/{folder}"
            os.makedirs(target, exist_ok=True)
            subprocess.run(["rm", "-rf", f"/content/labkit/{folder}"], check=True)
            os.symlink(target, f"/content/labkit/{folder}")
    os.chdir("/content/labkit/notebooks")
    os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"
'''


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
    # After changing REPOSITORY/RELEASE above: python -m labkit.tools.colab  (rewrites every lab notebook)
    from labkit.paths import NOTEBOOKS_DIR

    for path in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")):
        write_colab_cell(path)
        print(f"updated {path.name}")
