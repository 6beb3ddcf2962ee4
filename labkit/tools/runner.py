"""Run the lab notebooks headless with papermill and summarise what each one measured.

    python -m labkit run [NOTEBOOK ...] --mode smoke|full [--params params.yaml] [-p NAME VALUE ...]
                         [--out runs/2026-11-25] [--timeout SECONDS] [--resume] [--notebooks-dir notebooks]

NOTEBOOK is a path, a notebook name (``01_unet_oxford_pet``) or its number (``01``); default: every
``*.ipynb`` in ``notebooks/``, in name order. Each notebook runs in its own papermill process (kernel
``python3``, working directory = the notebook's folder, so ``../checks`` resolves), with a wall-clock
timeout per notebook; a failure or a timeout is recorded and the run goes on with the next one.

Parameters, later sources win:

1. ``OUT_DIR = <out>/<notebook name>`` (the notebook's artifacts land beside its executed copy);
2. the ``global`` section of the YAML file;
3. the notebook's own section, keyed by its name or its number;
4. ``-p NAME VALUE`` (repeatable; VALUE is read as YAML, so ``3`` is an int and ``null`` is None);
5. ``SMOKE``, set by ``--mode`` (the kernel also gets ``LABKIT_SMOKE=1`` or ``0``).

Relative paths in parameters are relative to the notebook's folder (like the notebooks' own defaults).
The optional ``timeouts`` section is not passed to the notebooks: seconds per notebook (``default`` for
the rest), used unless ``--timeout`` is given. Example ``params.yaml``::

    global:
      DEVICE: cuda
      SEED: 0
    01_unet_oxford_pet:
      EPOCHS: 60
    03:                      # a number works too (quotes optional)
      STUDENT_ID: "123456"
    timeouts:
      default: 1200
      03: 2400

What lands in ``<out>``: ``<name>.ipynb`` (the executed notebook, with every output), ``<name>.log``
(papermill's log, cell outputs included), ``<name>.params.yaml`` (the parameters it got), ``<name>/``
(its OUT_DIR), and ``summary.json`` / ``summary.md``. Paths in the summary are relative to ``<out>``.
A notebook's outputs from an earlier run into the same ``<out>`` are moved to ``<out>/previous/``
first (replacing what an even earlier run left there): its checkpoints would otherwise let the
notebooks resume and report the old run's training as this one's. ``--resume`` keeps them, to
continue a run that was interrupted.
Metrics are whatever the notebook passed to ``labkit.tools.record`` (read back with ``collect_records``).
The summary also says which data each notebook read (``data``: the folder name and resolved path of its
``DATA_ROOT``, or the synthetic fixture in SMOKE mode) and on what machine (``cpu_model``,
``usable_cores``, ``gpu``, ``omp_num_threads``), which is what ``python -m labkit readme-table`` shows.

Example (Python)::

    summary = run_notebooks(find_notebooks(["01"]), out_dir="runs/try", mode="smoke")
    summary["notebooks"][0]["status"], summary["notebooks"][0]["metrics"]["test_dice"]
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import yaml

from labkit.tools.record import collect_records
from labkit.paths import NOTEBOOKS_DIR
from labkit.tables import format_table

MODES = ("smoke", "full")
TIMEOUTS = "timeouts"  # the params-file section with seconds per notebook (not a parameter)
# seconds; SMOKE notebooks aim at ~90 s on 2 free CPU cores and took 213-392 s on a heavily shared one
DEFAULT_SMOKE_TIMEOUT = 600
ERROR_LINES = 15  # how much of a failed notebook's log goes into the summary
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # tracebacks from the kernel come coloured


# ----------------------------------------------------------------------------- choosing notebooks

def default_notebooks_dir() -> Path:
    """``./notebooks`` when run from a checkout, else the folder beside the installed package."""
    here = Path("notebooks")
    return here if here.is_dir() else NOTEBOOKS_DIR


def find_notebooks(selection=(), *, notebooks_dir=None) -> list[Path]:
    """The notebooks to run: paths, names (``01_unet_oxford_pet``) or numbers (``01``); all if empty."""
    notebooks_dir = Path(notebooks_dir or default_notebooks_dir())
    available = sorted(notebooks_dir.glob("*.ipynb"))
    if not selection:
        if not available:
            raise FileNotFoundError(f"no notebooks in {notebooks_dir.resolve()}: run from the "
                                    "repository root or pass --notebooks-dir")
        return available
    chosen = []
    for item in selection:
        if Path(item).suffix == ".ipynb" and Path(item).is_file():
            chosen.append(Path(item))
            continue
        matches = [path for path in available if section_matches(item, path.stem)]
        if len(matches) != 1:
            names = ", ".join(path.stem for path in available) or "none"
            problem = "matches several notebooks" if matches else "is not a notebook"
            raise FileNotFoundError(f"'{item}' {problem} in {notebooks_dir}; available: {names}")
        chosen.append(matches[0])
    return chosen


def section_matches(key: str, notebook_name: str) -> bool:
    """A YAML section or a selection names a notebook by its full name or by its number prefix."""
    key = str(key).removesuffix(".ipynb")
    return key == notebook_name or notebook_name.startswith(key + "_")


# ----------------------------------------------------------------------------- parameters

def read_yaml_value(text: str):
    """``-p`` values: ``3`` -> 3, ``0.5`` -> 0.5, ``true`` -> True, ``null`` -> None, else the text."""
    value = yaml.safe_load(text) if text.strip() else text
    return value if isinstance(value, (str, int, float, bool, list, dict, type(None))) else text


def load_params_file(path) -> dict:
    """Read a params YAML (``{"global": {...}, "<notebook>": {...}}``) and check its shape."""
    content = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(content, dict) or not all(isinstance(v, dict) for v in content.values()):
        raise ValueError(f"{path}: expected sections of NAME: VALUE pairs, e.g.\n"
                         "global:\n  DEVICE: cuda\n01_unet_oxford_pet:\n  EPOCHS: 60")
    # YAML reads an unquoted 01: as the number 1; the section still means notebook "01_..."
    content = {_section_key(key): section for key, section in content.items()}
    if TIMEOUTS in content:
        content[TIMEOUTS] = {_section_key(key): value for key, value in content[TIMEOUTS].items()}
        for key, value in content[TIMEOUTS].items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{path}: timeouts.{key} must be seconds (a number >= 0, 0 for none), "
                                 f"got {value!r}")
    return content


def _section_key(key) -> str:
    return f"{key:02d}" if isinstance(key, int) else str(key)


def notebook_timeout(notebook_name: str, timeouts: dict | None, default: float | None) -> float | None:
    """Seconds allowed for one notebook: its entry in ``timeouts`` (name or number), else
    ``timeouts["default"]``, else `default`; 0 means none.

    Example:
        >>> notebook_timeout("03_pruning_cifar10", {"default": 600, "03": 2400}, None)
        2400
        >>> notebook_timeout("04_quantization_cifar10", {"default": 600, "03": 2400}, None)
        600
    """
    timeouts = timeouts or {}
    own = [key for key in timeouts if key != "default" and section_matches(key, notebook_name)]
    if own:
        return timeouts[max(own, key=len)] or None
    return timeouts.get("default", default) or None


def notebook_parameters(notebook_name: str, *, mode: str, out_dir, params_file: dict | None = None,
                        overrides: dict | None = None) -> dict:
    """Merge the parameter sources for one notebook (see the module docstring for the order)."""
    params_file = params_file or {}
    parameters = {"OUT_DIR": str(Path(out_dir).resolve() / notebook_name)}
    parameters.update(params_file.get("global", {}))
    own_sections = [key for key in params_file
                    if key not in ("global", TIMEOUTS) and section_matches(key, notebook_name)]
    for key in sorted(own_sections, key=len):  # "01" first, then the more specific full name
        parameters.update(params_file[key])
    parameters.update(overrides or {})
    if "SMOKE" in parameters:
        raise ValueError("SMOKE is set by --mode smoke|full; remove it from the parameters")
    parameters["SMOKE"] = mode == "smoke"
    return parameters


def check_sections(params_file: dict, notebooks: list[Path], notebooks_dir) -> None:
    """A section that names no notebook is a typo that would silently be ignored: refuse it."""
    names = {path.stem for path in notebooks} | {path.stem for path in Path(notebooks_dir).glob("*.ipynb")}
    for key in params_file:
        if key not in ("global", TIMEOUTS) and not any(section_matches(key, name) for name in names):
            raise ValueError(f"params section '{key}' matches no notebook ({', '.join(sorted(names))})")
    for key in params_file.get(TIMEOUTS, {}):
        if key != "default" and not any(section_matches(key, name) for name in names):
            raise ValueError(f"timeouts entry '{key}' matches no notebook ({', '.join(sorted(names))})")


# ----------------------------------------------------------------------------- running

def describe_environment() -> dict:
    """Host, versions, CPU and accelerator, asked in a child process so this one never holds a CUDA context.

    ``cpu_cores`` is the machine's count, ``usable_cores`` the ones this process may run on (its
    affinity, e.g. under ``taskset``), ``omp_num_threads`` the thread limit the notebooks inherit.
    """
    probe = ("import json, torch; cuda = torch.cuda.is_available(); "
             "mps = getattr(torch.backends, 'mps', None) is not None and torch.backends.mps.is_available(); "
             "print(json.dumps({'torch': torch.__version__, 'device': torch.cuda.get_device_name(0) "
             "if cuda else 'mps' if mps else 'cpu'}))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    found = json.loads(result.stdout) if result.returncode == 0 else {"torch": None, "device": "unknown"}
    from labkit.params import usable_cores
    return {"host": platform.node(), "python": platform.python_version(), **found,
            "gpu": None if found["device"] in ("cpu", "mps", "unknown") else found["device"],
            "cpu_model": cpu_model(), "cpu_cores": os.cpu_count(), "usable_cores": usable_cores(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def notebook_default(notebook, name: str):
    """The value the notebook's ``parameters`` cell assigns to `name` (a literal), else ``None``."""
    try:
        cells = json.loads(Path(notebook).read_text()).get("cells", [])
    except (OSError, ValueError):
        return None
    for cell in cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell.get("source", []))
            try:
                tree = ast.parse(source)
            except SyntaxError:
                return None
            for node in tree.body:
                if (isinstance(node, ast.Assign) and len(node.targets) == 1
                        and isinstance(node.targets[0], ast.Name) and node.targets[0].id == name):
                    try:
                        return ast.literal_eval(node.value)
                    except ValueError:
                        return None
    return None


def dataset_used(notebook, parameters: dict, mode: str, metrics: dict | None = None) -> dict:
    """``{"name", "root"}`` of the data a notebook read: a recorded ``dataset`` wins, SMOKE reads its
    synthetic fixture, FULL its ``DATA_ROOT`` (relative to the notebook's folder, like the notebook)."""
    metrics = metrics or {}
    if isinstance(metrics.get("dataset"), str):
        return {"name": metrics["dataset"], "root": metrics.get("data_root")}
    if mode == "smoke":
        return {"name": "synthetic fixture", "root": None}
    root = parameters.get("DATA_ROOT", notebook_default(notebook, "DATA_ROOT"))
    if not root:
        return {"name": "?", "root": None}
    path = Path(root) if Path(root).is_absolute() else Path(notebook).resolve().parent / root
    return {"name": Path(root).name, "root": str(path.resolve())}


def _kill_process_tree(process: subprocess.Popen) -> None:
    """Stop papermill and everything it started (the kernel runs in a session of its own)."""
    try:
        import psutil  # ipykernel depends on it, so it is there wherever notebooks run
        children = psutil.Process(process.pid).children(recursive=True)
    except Exception:
        psutil, children = None, []
    if hasattr(os, "killpg"):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.kill()
    process.wait()
    for child in children:
        try:
            child.kill()
        except Exception:  # already gone
            pass
    if psutil is not None:
        psutil.wait_procs(children, timeout=10)  # a kill is asynchronous: be sure they are gone


def log_tail(log_path: Path, lines: int = ERROR_LINES) -> str:
    """The end of a log without colour codes; for a cell's error, the cell's traceback, not papermill's."""
    if not log_path.exists():
        return ""
    text = ANSI_ESCAPE.sub("", log_path.read_text(errors="replace")).strip()
    if "PapermillExecutionError" in text:
        text = text.rsplit("PapermillExecutionError", 1)[1].lstrip(":").strip("-\n ")
    kept = [line.rstrip() for line in text.splitlines()]
    if len(kept) > lines:  # keep which cell failed (first line) and how it ended
        kept = kept[:1] + ["..."] + kept[-(lines - 2):]
    return "\n".join(kept)


def set_aside_previous_outputs(name: str, out_dir) -> list[Path]:
    """Move notebook ``name``'s outputs of an earlier run in ``out_dir`` to ``out_dir/previous/``.

    The outputs are its OUT_DIR (``<out>/<name>/``, checkpoints included) and ``<name>.ipynb``,
    ``.log`` and ``.params.yaml``; an older copy in ``previous/`` is replaced. Returns what moved.
    """
    out_dir = Path(out_dir)
    previous = out_dir / "previous"
    moved = []
    for path in (out_dir / name, *(out_dir / f"{name}{suffix}" for suffix in (".ipynb", ".log", ".params.yaml"))):
        if not path.exists():
            continue
        target = previous / path.name
        previous.mkdir(parents=True, exist_ok=True)
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        path.rename(target)
        moved.append(target)
    return moved


def run_notebook(notebook, *, out_dir, parameters: dict, mode: str = "smoke",
                 timeout: float | None = None, kernel: str = "python3") -> dict:
    """Execute one notebook with papermill in a child process; return its summary entry."""
    notebook, out_dir = Path(notebook), Path(out_dir)
    name = notebook.stem
    executed, log_path, params_path = (out_dir / f"{name}.ipynb", out_dir / f"{name}.log",
                                       out_dir / f"{name}.params.yaml")
    params_path.write_text(yaml.safe_dump(parameters, sort_keys=False))
    command = [sys.executable, "-m", "papermill", str(notebook.resolve()), str(executed.resolve()),
               "-f", str(params_path.resolve()), "-k", kernel, "--cwd", str(notebook.resolve().parent),
               "--log-output", "--no-progress-bar"]
    environment = dict(os.environ, LABKIT_SMOKE="1" if mode == "smoke" else "0",
                       # figures go into the executed notebook, never to a window
                       MPLBACKEND="module://matplotlib_inline.backend_inline")
    environment.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    start = time.perf_counter()
    with open(log_path, "w") as log_file:
        # a session of its own: on timeout the whole group is killed, not this process
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                   env=environment, start_new_session=True)
        try:
            status = "ok" if process.wait(timeout=timeout or None) == 0 else "failed"
        except subprocess.TimeoutExpired:
            _kill_process_tree(process)
            status = "timeout"
        except KeyboardInterrupt:
            _kill_process_tree(process)
            raise
    seconds = time.perf_counter() - start
    try:
        metrics = collect_records(executed)
    except (OSError, ValueError):  # never written, or cut off mid-write by the timeout
        metrics = {}
    error = ""
    if status == "timeout":
        error = f"killed after the {timeout:g} s timeout; last output:\n" + log_tail(log_path)
    elif status == "failed":
        error = log_tail(log_path)
    return {"notebook": name, "status": status, "seconds": round(seconds, 1),
            "device": metrics.get("device"), "data": dataset_used(notebook, parameters, mode, metrics),
            "metrics": metrics, "error": error, "timeout": timeout,
            "executed": executed.name, "log": log_path.name, "parameters": parameters}


def run_notebooks(notebooks, *, out_dir, mode: str = "smoke", params_file: dict | None = None,
                  overrides: dict | None = None, timeout: float | None = None,
                  kernel: str = "python3", resume: bool = False, log=print) -> dict:
    """Run each notebook in turn, carry on after failures; write and return the summary.

    A notebook's outputs of an earlier run in ``out_dir`` are set aside first
    (:func:`set_aside_previous_outputs`) unless ``resume`` is true.

    `timeout` (seconds, per notebook) applies to every notebook; when it is ``None`` the params
    file's ``timeouts`` section decides (see :func:`notebook_timeout`).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    notebooks, out_dir = [Path(path) for path in notebooks], Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {"started": datetime.now().astimezone().isoformat(timespec="seconds"), "mode": mode,
               **describe_environment(), "timeout": timeout, "notebooks": []}
    for index, notebook in enumerate(notebooks, start=1):
        parameters = notebook_parameters(notebook.stem, mode=mode, out_dir=out_dir,
                                         params_file=params_file, overrides=overrides)
        if timeout is not None:  # given for every notebook; 0 means none
            seconds = timeout or None
        else:
            seconds = notebook_timeout(notebook.stem, (params_file or {}).get(TIMEOUTS), None)
        limit = f"timeout {seconds:g} s" if seconds else "no timeout"
        if not resume and (moved := set_aside_previous_outputs(notebook.stem, out_dir)):
            log(f"[{index}/{len(notebooks)}] {notebook.stem}: an earlier run's outputs moved to "
                f"{moved[0].parent} (--resume continues from them instead)")
        log(f"[{index}/{len(notebooks)}] {notebook.stem}: running ({limit}), log {out_dir / notebook.stem}.log")
        entry = run_notebook(notebook, out_dir=out_dir, parameters=parameters, mode=mode,
                             timeout=seconds, kernel=kernel)
        if entry["device"] is None or str(entry["device"]).startswith("cuda"):
            entry["device"] = summary["device"]  # the GPU's name says more than "cuda"
        summary["notebooks"].append(entry)
        write_summary(summary, out_dir)  # after every notebook, so an interrupted run keeps its results
        log(f"[{index}/{len(notebooks)}] {notebook.stem}: {entry['status']} in {entry['seconds']:.1f} s "
            f"on {entry['device']} | {format_metrics(entry['metrics'])}")
    summary["finished"] = datetime.now().astimezone().isoformat(timespec="seconds")
    write_summary(summary, out_dir)
    return summary


# ----------------------------------------------------------------------------- summary files

def format_metrics(metrics: dict, *, digits: int = 4) -> str:
    """``test_dice=0.9123, sparsity=91.66, sweep=[5 items]``; tables recorded as lists stay in the JSON."""
    def show(value):
        if isinstance(value, (list, dict)):
            return f"[{len(value)} items]"
        return f"{value:.{digits}g}" if isinstance(value, float) else str(value)
    return ", ".join(f"{name}={show(value)}" for name, value in metrics.items() if name != "device") or "-"


def summary_markdown(summary: dict) -> str:
    """A readable report: one row per notebook, then the end of each failure's log."""
    rows = [{"notebook": f"[{entry['notebook']}]({entry['executed']})", "status": entry["status"],
             "seconds": f"{entry['seconds']:.1f}", "device": entry["device"],
             "metrics": format_metrics(entry["metrics"]), "log": f"[log]({entry['log']})"}
            for entry in summary["notebooks"]]
    lines = [f"# labkit run, {summary['mode'].upper()} mode, started {summary['started']}", "",
             f"host `{summary['host']}`, {machine_description(summary)}, "
             f"torch {summary['torch']}, python {summary['python']}", "", format_table(rows)]
    for entry in summary["notebooks"]:
        if entry["error"]:
            lines += ["", f"## {entry['notebook']}: {entry['status']}", "", "```", entry["error"], "```"]
    return "\n".join(lines) + "\n"


def write_summary(summary: dict, out_dir) -> None:
    out_dir = Path(out_dir)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out_dir / "summary.md").write_text(summary_markdown(summary))


# ----------------------------------------------------------------------------- the machine a run used

def machine_description(summary: dict, entry: dict | None = None) -> str:
    """``CPU AMD EPYC 7B13, 1 of 2 cores, OMP_NUM_THREADS=1`` or ``NVIDIA H200; CPU ..., 16 cores``.

    Example:
        >>> machine_description({"device": "cpu", "cpu_model": "Xeon", "cpu_cores": 2, "usable_cores": 2})
        'CPU Xeon, 2 cores'
    """
    device = str((entry or {}).get("device") or summary.get("device") or "?")
    total, usable = summary.get("cpu_cores"), summary.get("usable_cores")
    cores = f"{usable} of {total} cores" if usable and total and usable != total else f"{total or '?'} cores"
    cpu = f"CPU {summary['cpu_model']}, {cores}" if summary.get("cpu_model") else f"cpu ({cores})"
    if summary.get("omp_num_threads"):
        cpu += f", OMP_NUM_THREADS={summary['omp_num_threads']}"
    if device.startswith("cpu"):
        extra = device[3:].strip()  # a notebook may record e.g. "cpu (2 threads)"
        return f"{cpu} {extra}" if extra else cpu
    return f"{summary.get('gpu') or device}; {cpu}"


# ----------------------------------------------------------------------------- command line

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labkit run", description="Execute notebooks with papermill; "
                                     "write each executed notebook, its log, summary.json and summary.md.")
    parser.add_argument("notebooks", nargs="*", metavar="NOTEBOOK",
                        help="paths, names or numbers (01); default: every notebook, in order")
    parser.add_argument("--mode", choices=MODES, default="smoke",
                        help="smoke: fixture data, tiny models (LABKIT_SMOKE=1); full: the real recipe")
    parser.add_argument("--params", help="YAML file with a 'global' section and per-notebook sections")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"), help="override one parameter (repeatable)")
    parser.add_argument("--out", help="output folder (default: runs/<date>_<time>)")
    parser.add_argument("--timeout", type=float, default=None,
                        help=f"seconds per notebook, 0 for none (default: the params file's 'timeouts' "
                             f"section, else {DEFAULT_SMOKE_TIMEOUT} in smoke mode and none in full mode)")
    parser.add_argument("--resume", action="store_true",
                        help="keep an earlier run's outputs in --out, so the notebooks continue from their "
                             "checkpoints (default: move them to <out>/previous/ and start afresh)")
    parser.add_argument("--notebooks-dir", default=None, help="where to look for notebooks")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``labkit run``: exit code 0 when every notebook ran cleanly, 1 otherwise."""
    args = build_parser().parse_args(argv)
    notebooks_dir = Path(args.notebooks_dir or default_notebooks_dir())
    notebooks = find_notebooks(args.notebooks, notebooks_dir=notebooks_dir)
    params_file = load_params_file(args.params) if args.params else {}
    check_sections(params_file, notebooks, notebooks_dir)
    timeout = args.timeout  # None: the params file's timeouts, else the mode's default
    if timeout is None and TIMEOUTS not in params_file:
        timeout = DEFAULT_SMOKE_TIMEOUT if args.mode == "smoke" else 0
    out_dir = Path(args.out or Path("runs") / datetime.now().strftime("%Y-%m-%d_%H%M%S"))
    summary = run_notebooks(notebooks, out_dir=out_dir, mode=args.mode, params_file=params_file,
                            overrides={name: read_yaml_value(value) for name, value in args.parameter},
                            timeout=timeout, kernel=args.kernel, resume=args.resume)
    failed = [entry["notebook"] for entry in summary["notebooks"] if entry["status"] != "ok"]
    print(f"{len(notebooks) - len(failed)}/{len(notebooks)} notebooks ok; summary: {out_dir / 'summary.md'}")
    if failed:
        print("not ok: " + ", ".join(failed))
    return 1 if failed else 0
