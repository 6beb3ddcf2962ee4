"""Run inside a simulated Colab VM (tests/colab_sim.py): open a notebook in a fresh kernel and run its
cells in order until the first error, as a student pressing *Run all* would.

    python colab_driver.py NOTEBOOK RESULT.json '{"after_parameters": "RESUME = True", "probe": true}'

The kernel starts in ``/content`` (Colab's working folder), whatever folder the notebook is in.
``after_parameters`` is a cell inserted after the parameters cell (what papermill does with ``-p``);
``probe`` adds a cell after the first one that prints where the kernel is and where labkit comes from.
RESULT.json gets each cell's printed text, the first error and the probe. Needs only nbclient/nbformat.
"""
import json
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

PROBE = '''import json as _json, os as _os, sys as _sys, labkit as _labkit
print("PROBE " + _json.dumps({"cwd": _os.getcwd(), "labkit": _labkit.__file__,
                              "pythonpath": _os.environ.get("PYTHONPATH", ""), "path0": _sys.path[0]}))'''


def cell_text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif output.get("output_type") in ("execute_result", "display_data"):
            parts.append(output.get("data", {}).get("text/plain", ""))
        elif output.get("output_type") == "error":
            parts.append("\n".join(output.get("traceback", [])))
    return "".join(parts)


def main(notebook_path: str, result_path: str, inject_json: str) -> int:
    inject = json.loads(inject_json)
    notebook = nbformat.read(notebook_path, as_version=4)
    code = [index for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    parameters = next(i for i in code if "parameters" in notebook.cells[i].metadata.get("tags", []))
    if inject.get("after_parameters"):
        notebook.cells.insert(parameters + 1, nbformat.v4.new_code_cell(inject["after_parameters"]))
    if inject.get("probe"):
        notebook.cells.insert(code[0] + 1, nbformat.v4.new_code_cell(PROBE))
    client = NotebookClient(notebook, kernel_name="python3", timeout=900, resources={"metadata": {"path": "/content"}})
    result = {"cells": [], "error": None, "probe": None}
    started = time.perf_counter()
    code_cells = [(index, cell) for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    with client.setup_kernel():
        for index, cell in code_cells:
            try:
                client.execute_cell(cell, index)
            except CellExecutionError as error:
                result["error"] = {"cell": index, "ename": error.ename, "evalue": error.evalue,
                                   "source": cell.source, "text": cell_text(cell)}
            text = cell_text(cell)
            result["cells"].append({"index": index, "source": cell.source, "text": text})
            if text.startswith("PROBE "):
                result["probe"] = json.loads(text[len("PROBE "):].splitlines()[0])
            if result["error"]:
                break
    result["seconds"] = time.perf_counter() - started
    result["markdown_before_error"] = ""
    if result["error"]:
        before = [cell for cell in notebook.cells[:result["error"]["cell"]] if cell.cell_type == "markdown"]
        result["markdown_before_error"] = before[-1].source if before else ""
    with open(result_path, "w") as out:
        json.dump(result, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
