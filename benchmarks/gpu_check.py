"""One prepared GPU check of labkit (issue 36, item 5): everything a lent GPU should prove, in <= 8 minutes.

On a machine with the real data beside the clone (../shared), once:

    python benchmarks/gpu_check.py --prepare          # a <= 50 MB subset + wheels into gpu_subset/ (git-ignored)

On the GPU machine (gpu_check.sh installs the wheels for a python3 that lacks them, then runs this):

    bash benchmarks/gpu_check.sh --out $OUT/gpu        # = python benchmarks/gpu_check.py --device cuda --out ...

On a CPU, in SMOKE size (what tests/test_gpu_check.py runs in CI; what needs CUDA is skipped, with why):

    python benchmarks/gpu_check.py --device cpu --smoke --data FIXTURES --out /tmp/gpu_check

Steps, each a process of its own with a timeout (a failing step is reported with its exit code and the
end of its output, and the others still run; the exit code is 1 if any failed): the device (versions,
FP16 peak); a few epochs of each FULL GPU recipe on the subset, one at a time (the timings); a resume
after a kill; then, at the same time: make test's GPU-sensitive tests (GPU_TESTS), every notebook in
SMOKE mode on cuda (``python -m labkit run``), the checks on ``--device`` and a grading of notebook 05's
Task 1 pair, with ``--sandbox-gpu`` on CUDA where ``python -m labkit grade`` has that option (its absence
is reported as a skipped step); last, the checks of notebooks 03/04's SMOKE files. Results: ``gpu_check.json``,
``gpu_check.md`` and ``gpu_check.log`` (the end of every step's output) in --out; the work files
(models, notebooks, caches) in --work (default: a new temporary folder).

Images/s per recipe are measured over the epochs after the first, with the subset repeated to >= 1024
images per epoch on a GPU; the full-recipe minutes are the recipe's epochs x the full training set /
images/s (training passes only). The Colab T4 minutes are an ESTIMATE: the minutes here x (this
GPU's dense FP16 peak / the T4's 65 TFLOP/s, datasheet figures in gpu_check_lib.PEAK_TFLOPS); the T4
floor is the recipe's training FLOPs at 100 % of the T4's peak, which no run can beat.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LIB = REPO / "benchmarks" / "gpu_check_lib.py"
sys.path.insert(0, str(LIB.parent))
from gpu_check_lib import NOTEBOOKS, PRUNING_MODEL, T4_TFLOPS  # noqa: E402 - no torch is imported here
from gpu_check_report import markdown, recipe_table  # noqa: E402

# make test's tests whose behaviour changes where torch.cuda.is_available() (checks default to --device auto).
GPU_TESTS = (
    "tests/test_train.py",               # resume: read to the CPU, CUDA RNG states, recipe switch, GradScaler
    "tests/test_device.py",              # the device probe and its faults, with a real GPU present
    "tests/test_doctor.py",              # doctor's GPU lines
    "tests/test_check_exit_causes.py",   # the memory cap (not applied on CUDA), CUDA faults -> exit 3
    "tests/test_call_check.py",          # notebook-vs-check agreement: device and batch size
    "tests/test_check_segmentation.py", "tests/test_check_efficient.py", "tests/test_check_pruning.py",
    "tests/test_check_quantization.py",  # the checks on CUDA
    "tests/test_check_network.py", "tests/test_sandbox.py",  # students' networks in the sandbox
    "tests/test_qat.py",                 # QAT on the device, INT8 on the CPU
    "tests/test_compare.py",             # train_and_measure on device auto
    "tests/test_grade_batch.py",         # the batch grader on a GPU machine
)
SMOKE_TESTS = ("tests/test_train.py::test_resume_after_interruption_equals_an_uninterrupted_run",)
NOTEBOOK_NUMBERS = ("01", "02", "03", "04", "05")
TIMEOUTS = {"device": 120, "tests": 360, "notebook": 360, "recipe": 180, "resume": 240, "check": 150, "grade": 180}
TAIL_LINES = 15


def step(name: str, command: list, timeout: float, verify=None, ok_codes=(0,)) -> dict:
    """A step to run: ``verify(result)`` may raise AssertionError to fail a step that exited well."""
    return {"name": name, "command": [str(part) for part in command], "timeout": timeout, "verify": verify,
            "ok_codes": ok_codes}


def skipped(name: str, reason: str) -> dict:
    print(f"[skipped] {name}: {reason}", flush=True)
    return {"name": name, "status": "skipped", "reason": reason}


def run_steps(steps: list[dict], *, deadline: float, logs: Path, env: dict) -> list[dict]:
    """Run ``steps`` at the same time, each killed (with all it started) at its timeout or the deadline."""
    logs.mkdir(parents=True, exist_ok=True)
    started = []
    for item in steps:
        limit = min(item["timeout"], deadline - time.monotonic())
        log = logs / (re.sub(r"[^A-Za-z0-9]+", "_", item["name"]).strip("_") + ".log")
        process = None
        if limit >= 2:
            with open(log, "w") as handle:
                process = subprocess.Popen(item["command"], stdout=handle, stderr=subprocess.STDOUT, cwd=REPO,
                                           env=env, start_new_session=True)
        started.append((item, process, log, time.monotonic(), time.monotonic() + limit))
    results = []
    for item, process, log, began, end in started:
        result = {"name": item["name"], "log": str(log)}
        if process is None:
            result |= {"status": "failed", "reason": "not run: the time budget was spent"}
        else:
            try:
                result["exit_code"] = process.wait(timeout=max(0.1, end - time.monotonic()))
                result["status"] = "ok" if result["exit_code"] in item["ok_codes"] else "failed"
            except subprocess.TimeoutExpired:
                _kill(process)
                result |= {"status": "timeout", "exit_code": None, "reason": f"killed after {end - began:.0f} s"}
            result["seconds"] = round(time.monotonic() - began, 1)
            if result["status"] == "ok" and item["verify"]:
                try:
                    item["verify"](result)
                except (AssertionError, OSError, ValueError, KeyError) as error:
                    result |= {"status": "failed", "reason": f"{type(error).__name__}: {error}"}
            if result["status"] != "ok":
                lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
                result["tail"] = "\n".join(lines[-TAIL_LINES:])
                result.setdefault("reason", lines[-1][:300] if lines else "no output")
        results.append(result)
        line = f"[{result['status']}] {item['name']} ({result.get('seconds', 0):.0f} s)"
        if result["status"] != "ok":
            line += f" exit {result.get('exit_code')}: {result.get('reason', '')}\n{result.get('tail', '')}"
        print(line, flush=True)
    return results


def _kill(process: subprocess.Popen) -> None:
    """Kill a step's process group and every descendant (a notebook's kernel runs in a session of its own)."""
    try:
        import psutil
        descendants = [child.pid for child in psutil.Process(process.pid).children(recursive=True)]
    except Exception:  # noqa: BLE001 - no psutil, or the process is gone: the group kill below still runs
        descendants = []
    for kill, pid in [(os.killpg, process.pid)] + [(os.kill, pid) for pid in descendants]:
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    process.wait()


def last_json(result: dict) -> dict:
    """The last line of a step's output that is a JSON object (a check's --json verdict)."""
    for line in reversed(Path(result["log"]).read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON verdict in the output")


def verify_rows(folder: Path):
    def verify(result):
        rows = json.loads((folder / "rows.json").read_text())
        assert rows and all(row["images_per_s"] > 0 for row in rows), "a recipe measured no images/s"
    return verify


def verify_check(result: dict) -> None:
    verdict = last_json(result)
    assert verdict["exit_code"] == result["exit_code"], verdict
    result["metrics"] = verdict.get("metrics", {})


def check_steps(data: Path, work: Path, device: str, *, notebooks_files: bool = False) -> list[dict]:
    """The checks on ``--device``: the recipes' models on the subset and the pretrained ResNet-20 (dense,
    so exit 1: below the sparsity goal); with ``notebooks_files``, notebooks 03/04's SMOKE files instead."""
    recipes, notebooks = work / "recipes", work / "notebooks"
    size = {number: json.loads((recipes / number / "rows.json").read_text())[0]["image_size"]
            for number in NOTEBOOKS if (recipes / number / "rows.json").exists()}
    pets, city = ["--data", data / "oxford-iiit-pet"], ["--data", data / "cityscapes"]
    candidates = [  # (name, file, the notebook whose step makes it, the check and its arguments)
        ("check_segmentation UNet (01)", recipes / "01" / "unet.pth", "01",
         ["check_segmentation.py", "--model", "unet", *pets, "--image-size", size.get("01", [0])[0]]),
        ("check_segmentation ResNet34-UNet (02)", recipes / "02" / "resnet34_unet.pth", "02",
         ["check_segmentation.py", "--model", "resnet34_unet", *pets, "--image-size", size.get("02", [0])[0]]),
        *((f"check_efficient Task {task} (05)", recipes / "05" / f"model_task{task}.pth", "05",
           ["check_efficient.py", "--task", task, *city, "--image-size", *size.get("05", [0, 0])]) for task in (1, 2)),
        ("check_pruning dense ResNet-20 (CIFAR-10 subset)", data / PRUNING_MODEL, None,
         ["check_pruning.py", "--data", data / "cifar10"])]
    if notebooks_files:
        candidates = []
        for number, task in (("03", "pruning"), ("04", "quantization")):
            folder = notebooks / number / f"{number}_{task}_cifar10"
            found = sorted(folder.glob(f"*_{task}.pt")) or [folder / f"ID_{task}.pt"]
            candidates.append((f"check_{task} notebook {number} SMOKE file", found[0], number,
                               [f"check_{task}.py", "--data", folder / "data" / "cifar10-fixture"]))
    steps = []
    for name, path, source, (script, *arguments) in candidates:
        if not path.exists():
            why = f"notebook {source}'s step did not make it" if source else "not in the data subset"
            steps.append(skipped(name, f"no {path.name}: {why}"))
        else:
            steps.append(step(name, [sys.executable, REPO / "checks" / script, "--path", path, *arguments,
                                     "--device", device, "--json"], TIMEOUTS["check"], verify_check, ok_codes=(0, 1)))
    return steps


def grade_steps(data: Path, work: Path, device: str, env: dict) -> list[dict]:
    """``python -m labkit grade`` on notebook 05's Task 1 pair (its network.py runs in the sandbox), with
    ``--sandbox-gpu`` on CUDA where grade has that option; without it, the option's absence is reported."""
    usage = subprocess.run([sys.executable, "-m", "labkit", "grade", "--help"], capture_output=True, text=True,
                           cwd=REPO, env=env, timeout=120).stdout
    gpu = device == "cuda" and "--sandbox-gpu" in usage
    steps = [] if gpu else [skipped("grade --sandbox-gpu", "needs CUDA" if device != "cuda" else
                                    "python -m labkit grade has no --sandbox-gpu option in this checkout")]
    name = f"grade Task 1 ({'--sandbox-gpu' if gpu else 'sandbox on the CPU'}, --device {device})"
    task1, folder = work / "recipes" / "05", work / "grade"
    if not (task1 / "model_task1.pth").exists():
        return steps + [skipped(name, "no model_task1.pth: notebook 05's recipe step did not make it")]
    shutil.copytree(task1 / "network", folder / "submissions" / "s1" / "network", dirs_exist_ok=True)
    shutil.copy2(task1 / "model_task1.pth", folder / "submissions" / "s1" / "model_task1.pth")

    def verify(result):
        rows = json.loads((folder / "grades.json").read_text())
        assert len(rows) == 1 and rows[0]["exit_code"] in (0, 1), rows
        result["metrics"] = rows[0].get("metrics", {})
    command = [sys.executable, "-m", "labkit", "grade", folder / "submissions", "--task", "efficient",
               "--data", data / "cityscapes", "--device", device, *(["--sandbox-gpu"] if gpu else []), "--jobs", 1,
               "--timeout", TIMEOUTS["grade"] - 30, "--out", folder / "grades.csv"]
    return steps + [step(name, command, TIMEOUTS["grade"], verify)]


def run_all(items: list[dict], **how) -> list[dict]:
    """Skipped items as they are, the others run together."""
    return [item for item in items if "status" in item] + run_steps([item for item in items if "status" not in item],
                                                                    **how)


def run_check(args) -> list[dict]:
    """Every step in order; returns their results."""
    data, device, work, deadline = args.data, args.device, args.work, time.monotonic() + args.budget
    env = os.environ | {"LABKIT_CACHE_DIR": str(work / "cache"), "NO_ALBUMENTATIONS_UPDATE": "1", "LABKIT_SMOKE": "1",
                        "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1",
                        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    how = dict(deadline=deadline, logs=work / "logs", env=env)
    lib, common = [sys.executable, LIB], ["--data", data, "--device", device] + (["--smoke"] if args.smoke else [])
    results = run_steps([step("device", lib + ["env", "--device", device, "--json", work / "env.json"],
                              TIMEOUTS["device"])], **how)
    if not data.is_dir():
        results.append({"name": "data subset", "status": "failed", "reason": f"no {data}: run --prepare first"})
    epochs = args.epochs or (1 if args.smoke else 3)
    for number in NOTEBOOKS:  # first, one at a time, alone on the device: the timings
        folder = work / "recipes" / number
        results += run_steps([step(f"recipe {number}, {epochs} epoch(s)", lib + ["recipe", number, *common, "--epochs",
                                   epochs, "--out", folder], TIMEOUTS["recipe"], verify_rows(folder))], **how)

    def verify_resume(result):
        result["metrics"] = json.loads((work / "resume" / "resume.json").read_text())
    results += run_steps([step("resume after a kill", lib + ["resume", *common, "--out", work / "resume"],
                               TIMEOUTS["resume"], verify_resume)], **how)
    # Then everything that is not timed at the same time: tests, notebooks, the checks and the grading.
    tests = SMOKE_TESTS if args.smoke else GPU_TESTS
    group = [step(f"tests ({'one, SMOKE' if args.smoke else 'GPU-sensitive'})",
                  [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], TIMEOUTS["tests"])]
    notebooks = NOTEBOOK_NUMBERS if args.notebooks is None and device == "cuda" else args.notebooks or ()
    group += [step(f"notebook {number} SMOKE on {device}",
                   [sys.executable, "-m", "labkit", "run", number, "--mode", "smoke", "-p", "DEVICE", device,
                    "--out", work / "notebooks" / number, "--timeout", TIMEOUTS["notebook"] - 30], TIMEOUTS["notebook"])
              for number in notebooks]
    if not notebooks:
        results.append(skipped("notebooks SMOKE on cuda", "none asked for (--notebooks)" if device == "cuda" else
                               "needs CUDA (on the CPU, make test runs every notebook in SMOKE mode)"))
    group += check_steps(data, work, device) + grade_steps(data, work, device, env)
    threads = str(max(2, (os.cpu_count() or 1) // len(group)))  # they share the cores
    results += run_all(group, **how | {"env": env | {"OMP_NUM_THREADS": threads}})
    return results + run_all(check_steps(data, work, device, notebooks_files=True), **how)

def write_report(args, results: list[dict], seconds: float) -> dict:
    """gpu_check.json, gpu_check.md and gpu_check.log (the end of every step's output) in --out."""
    info = json.loads((args.work / "env.json").read_text()) if (args.work / "env.json").exists() else {}
    failed = [result["name"] for result in results if result["status"] in ("failed", "timeout")]
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": args.device,
              "smoke": args.smoke, "data": str(args.data), "work": str(args.work), "budget_s": args.budget,
              "seconds": round(seconds, 1), "env": info,
              "t4": {"tflops": T4_TFLOPS, "source": "NVIDIA T4 datasheet, FP16 tensor (65 TFLOPS)",
                     "ratio": info.get("t4_ratio"), "this_device_tflops": info.get("peak_tflops"),
                     "this_device_source": info.get("peak_source"), "estimate": True},
              "recipes": recipe_table(args.work, info), "steps": results, "failed": failed, "ok": not failed}
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    (args.out / "gpu_check.md").write_text(markdown(report))
    with open(args.out / "gpu_check.log", "w") as handle:
        for result in results:
            log = Path(result.get("log") or args.work / "none")
            text = log.read_text(errors="replace").splitlines()[-200:] if log.is_file() else []
            handle.write(f"===== {result['name']}: {result['status']}\n" + "\n".join(text) + "\n")
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepare", action="store_true", help="copy the data subset (and wheels) and stop")
    parser.add_argument("--source", type=Path, default=REPO.parent / "shared", help="--prepare: the shared folder")
    parser.add_argument("--no-wheels", action="store_true", help="--prepare: copy the data only")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--smoke", action="store_true", help="tiny models and sizes, 1 epoch (CI on a CPU)")
    parser.add_argument("--data", type=Path, default=REPO / "gpu_subset")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "gpu_check")
    parser.add_argument("--work", type=Path, help="models, notebooks, caches (default: a new temporary folder)")
    parser.add_argument("--budget", type=float, default=480, help="seconds for everything (default 8 minutes)")
    parser.add_argument("--epochs", type=int, help="epochs per recipe (default 3; --smoke: 1)")
    parser.add_argument("--notebooks", nargs="*", choices=NOTEBOOK_NUMBERS,
                        help="the notebooks to run in SMOKE mode on --device (default: all on cuda, none on a CPU)")
    args = parser.parse_args(argv)
    if args.prepare:
        from gpu_check_prepare import prepare
        print(json.dumps(prepare(args.source, args.data, wheels=not args.no_wheels), indent=1))
        return 0
    began = time.monotonic()
    args.data, args.out = args.data.resolve(), args.out.resolve()
    args.work = (args.work or Path(tempfile.mkdtemp(prefix="gpu_check-"))).resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"gpu_check: {args.device}{' (SMOKE sizes)' if args.smoke else ''}, data {args.data}, work {args.work}",
          flush=True)
    report = write_report(args, run_check(args), time.monotonic() - began)
    failed = ", ".join(report["failed"]) or "none"
    print("\n" + markdown(report) + f"\n{len(report['failed'])} step(s) failed: {failed}; {report['seconds']:.0f} s; "
          f"results in {args.out}", flush=True)
    return 0 if report["ok"] else 1

if __name__ == "__main__":
    sys.exit(main())
