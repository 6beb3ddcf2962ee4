"""``labkit run`` and ``labkit readme-table`` on tiny throwaway notebooks (a kernel start costs ~3 s)."""
import json
from pathlib import Path

import nbformat
import psutil
import pytest
import yaml

from labkit.tools.cli import main
from labkit.paths import REPO_ROOT
from labkit.tools.readme_table import (END_MARKER, START_MARKER, metric_splits, replace_marked_section, results_rows,
                                      run_rows)
from labkit.tools.runner import (check_sections, dataset_used, find_notebooks, load_params_file, notebook_parameters,
                                 notebook_timeout, read_yaml_value, run_notebooks)
PARAMETERS_CELL = 'import os\nSMOKE = os.environ.get("LABKIT_SMOKE") == "1"\nOUT_DIR = "runs/x"\n'


def write_notebook(path, *cells):
    """A python3 notebook whose first cell is the tagged parameters cell."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell(cells[0], metadata={"tags": ["parameters"]}),
                      *(nbformat.v4.new_code_cell(source) for source in cells[1:])]
    nbformat.write(notebook, path)
    return path


@pytest.fixture(scope="module")
def two_notebook_run(tmp_path_factory):
    """One SMOKE run over a failing notebook (first) and a recording one: both must be reported."""
    root = tmp_path_factory.mktemp("run")
    notebooks = root / "notebooks"
    notebooks.mkdir()
    write_notebook(notebooks / "01_fails.ipynb", PARAMETERS_CELL,
                   'from labkit.tools.record import record\nrecord("before_failure", 1.5)',
                   'raise RuntimeError("deliberate failure for the test")')
    write_notebook(notebooks / "02_records.ipynb",
                   PARAMETERS_CELL + 'GREETING = "default"\nEPOCHS = None\nLR = None\n',
                   "from pathlib import Path\nfrom labkit.tools.record import record\n"
                   'record("greeting", GREETING)\nrecord("epochs", EPOCHS)\nrecord("lr", LR)\n'
                   'record("smoke_parameter", SMOKE)\nrecord("smoke_environment", os.environ["LABKIT_SMOKE"])\n'
                   'record("out_dir", OUT_DIR)\nrecord("cwd", str(Path.cwd()))\nrecord("accuracy", 40 + 2.5)\n'
                   'record("table", [{"epoch": 1}, {"epoch": 2}])')
    params_file = {"global": {"GREETING": "from the YAML", "EPOCHS": 1}, "02": {"EPOCHS": 3}}
    out_dir = root / "out"
    summary = run_notebooks(find_notebooks(notebooks_dir=notebooks), out_dir=out_dir, mode="smoke",
                            params_file=params_file, overrides={"LR": read_yaml_value("0.5")},
                            timeout=120, log=lambda line: None)
    return summary, out_dir, notebooks


def test_a_failing_notebook_is_reported_and_the_next_one_still_runs(two_notebook_run):
    summary, _, _ = two_notebook_run
    entries = {entry["notebook"]: entry for entry in summary["notebooks"]}
    assert list(entries) == ["01_fails", "02_records"]
    assert entries["01_fails"]["status"] == "failed"
    assert entries["01_fails"]["error"].startswith('Exception encountered at "In [')  # the cell, not papermill
    assert entries["01_fails"]["error"].endswith("RuntimeError: deliberate failure for the test")
    assert entries["01_fails"]["metrics"] == {"before_failure": 1.5}  # recorded before the error
    assert entries["02_records"]["status"] == "ok" and entries["02_records"]["error"] == ""


def test_yaml_sections_and_overrides_reach_the_notebook(two_notebook_run):
    summary, out_dir, notebooks = two_notebook_run
    metrics = summary["notebooks"][1]["metrics"]
    assert metrics["greeting"] == "from the YAML"  # global section
    assert metrics["epochs"] == 3  # the notebook's own section beats the global one
    assert metrics["lr"] == 0.5  # -p override, read as a YAML float
    assert metrics["smoke_parameter"] is True and metrics["smoke_environment"] == "1"
    assert metrics["out_dir"] == str(out_dir.resolve() / "02_records")
    assert metrics["cwd"] == str(notebooks.resolve())  # so ../checks resolves like in Jupyter


def test_summary_files_hold_status_metrics_and_paths(two_notebook_run):
    _, out_dir, _ = two_notebook_run
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["mode"] == "smoke" and summary["device"] and summary["torch"]
    ok = summary["notebooks"][1]
    assert ok["metrics"]["accuracy"] == 42.5 and ok["seconds"] > 0
    assert ok["metrics"]["table"] == [{"epoch": 1}, {"epoch": 2}]
    assert (out_dir / ok["executed"]).is_file() and (out_dir / ok["log"]).is_file()
    assert ok["data"] == {"name": "synthetic fixture", "root": None}  # SMOKE reads its fixture
    assert summary["cpu_model"] and summary["usable_cores"] >= 1 and "gpu" in summary
    assert yaml.safe_load((out_dir / "02_records.params.yaml").read_text())["EPOCHS"] == 3
    markdown = (out_dir / "summary.md").read_text()
    assert "[02_records](02_records.ipynb)" in markdown  # links work from the summary's folder
    assert "accuracy=42.5" in markdown and "table=[2 items]" in markdown
    assert "deliberate failure for the test" in markdown


def test_a_hanging_notebook_is_killed_at_the_timeout_with_its_children(tmp_path, capsys):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    write_notebook(notebooks / "03_hangs.ipynb", PARAMETERS_CELL + "SLEEP_SECONDS = 0\n",
                   "import subprocess, sys\nfrom labkit.tools.record import record\n"
                   "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
                   'record("child_pid", child.pid)',
                   "import time\ntime.sleep(SLEEP_SECONDS)")
    code = main(["run", "--notebooks-dir", str(notebooks), "--out", str(tmp_path / "out"),
                 "--timeout", "15", "-p", "SLEEP_SECONDS", "600", "03"])  # -p: it hangs only if it arrives
    entry = json.loads((tmp_path / "out" / "summary.json").read_text())["notebooks"][0]
    assert code == 1
    assert entry["status"] == "timeout" and 15 <= entry["seconds"] < 40
    assert entry["error"].startswith("killed after the 15 s timeout")
    assert "03_hangs: timeout" in capsys.readouterr().out  # the progress line
    child_pid = entry["metrics"]["child_pid"]  # a process the kernel started: killed too
    assert process_is_gone(child_pid)


def process_is_gone(pid) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # dead, not yet reaped
    except psutil.NoSuchProcess:
        return True


def test_parameters_merge_in_documented_order_and_smoke_comes_from_the_mode(tmp_path):
    (tmp_path / "params.yaml").write_text(  # 01 unquoted is the number 1 for YAML: still notebook 01
        "global: {A: 1, B: 1, C: 1}\n01: {B: 2, C: 2}\n01_unet_oxford_pet: {C: 3}\n02: {A: 9}\n")
    params_file = load_params_file(tmp_path / "params.yaml")
    merged = notebook_parameters("01_unet_oxford_pet", mode="full", out_dir=tmp_path,
                                 params_file=params_file, overrides={"A": 4})
    assert merged == {"OUT_DIR": str(tmp_path.resolve() / "01_unet_oxford_pet"),
                      "A": 4, "B": 2, "C": 3, "SMOKE": False}
    with pytest.raises(ValueError, match="--mode"):
        notebook_parameters("01_x", mode="smoke", out_dir=tmp_path, overrides={"SMOKE": False})


def test_a_params_section_naming_no_notebook_is_refused(tmp_path, capsys):
    (tmp_path / "01_a.ipynb").write_text("{}")
    (tmp_path / "params.yaml").write_text("global: {EPOCHS: 1}\n07_typo: {EPOCHS: 2}\n")
    code = main(["run", "--notebooks-dir", str(tmp_path), "--params", str(tmp_path / "params.yaml"),
                 "--out", str(tmp_path / "out")])
    assert code == 2 and "07_typo" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


README = "# Kit\n\nintro\n\n{start}\nold table\n{end}\n\n## After\nkept  \n".format(
    start=START_MARKER, end=END_MARKER)


def fake_summary(mode, device, date, notebooks):
    return {"started": f"{date}T09:00:00+00:00", "mode": mode, "device": device,
            "notebooks": [{"notebook": name, "status": status, "device": device, "metrics": metrics}
                          for name, status, metrics in notebooks]}


def test_readme_table_rewrites_only_the_marked_section(tmp_path):
    smoke = fake_summary("smoke", "cpu", "2026-11-25", [
        ("01_unet_oxford_pet", "ok", {"test_dice": 0.7712}),
        ("03_pruning_cifar10", "failed", {"sparsity": 12.5})])
    full = fake_summary("full", "NVIDIA H100", "2026-11-26", [("01_unet_oxford_pet", "ok", {"test_dice": 0.9132})])
    paths = []
    for name, summary in (("smoke.json", smoke), ("full.json", full)):
        paths.append(tmp_path / name)
        paths[-1].write_text(json.dumps(summary))
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert main(["readme-table", str(paths[0]), str(paths[1]), "--readme", str(readme)]) == 0
    text = readme.read_text()
    head, rest = text.split(START_MARKER)
    table, tail = rest.split(END_MARKER)
    assert head == README.split(START_MARKER)[0] and tail == README.split(END_MARKER)[1]
    assert "old table" not in table
    unet = next(line for line in table.splitlines() if "01 UNet" in line)
    assert "test Dice ≥ 0.90" in unet and "test Dice 0.9132 (goal met)" in unet  # the later FULL run
    assert "NVIDIA H100, FULL" in unet and "2026-11-26" in unet
    pruning = next(line for line in table.splitlines() if "03 Pruning" in line)
    assert "sparsity 12.50%" in pruning and "(run failed)" in pruning and "SMOKE" in pruning
    assert main(["readme-table", str(paths[0]), str(paths[1]), "--readme", str(readme)]) == 0
    assert readme.read_text() == text  # idempotent


def test_smoke_results_get_no_goal_verdict_and_missing_labs_say_not_run():
    rows = results_rows([fake_summary("smoke", "cpu", "2026-11-25",
                                      [("01_unet_oxford_pet", "ok", {"test_dice": 0.95})])])
    assert rows[0]["Last measured result"] == "test Dice 0.95"  # synthetic data: no "goal met"
    assert "synthetic" in rows[0]["Hardware"]
    assert all(row["Last measured result"] == "not run yet" for row in rows[1:])


def test_task2_row_shows_the_figure_of_merit_only_where_it_is_defined():
    metrics = {"task2_macs": 1953431552, "task2_size_kb": 1522.402, "task2_int8_test_miou": 0.678319}
    summaries = [fake_summary("full", "cpu", "2026-11-25", [("05_efficient_unet_cityscapes", "ok", metrics)])]
    task2 = next(row for row in results_rows(summaries) if "Task 2" in row["Lab"])
    assert "FoM 3.123e+26" in task2["Last measured result"]  # the course's example numbers
    assert "(goal met)" in task2["Last measured result"]
    metrics["task2_int8_test_miou"] = 0.6
    task2 = next(row for row in results_rows(summaries) if "Task 2" in row["Lab"])
    assert "FoM undefined" in task2["Last measured result"] and "(below goal)" in task2["Last measured result"]


@pytest.mark.parametrize("dice, interval, shown, verdict", [
    (0.8557, None, "test Dice 0.8557", "(goal met)"),                          # no interval: the number decides
    (0.8499, None, "test Dice 0.8499", "(below goal)"),
    (0.8557, [0.83, 0.88], "test Dice 0.8557 (95% CI 0.83-0.88)", "(not shown: the 95% CI spans the goal)"),
    (0.8557, [0.85, 0.87], "test Dice 0.8557 (95% CI 0.85-0.87)", "(goal met)"),  # the interval from the goal up
    (0.84, [0.80, 0.8499], "test Dice 0.84 (95% CI 0.8-0.8499)", "(below goal)"),  # the whole interval below
])
def test_a_small_splits_interval_is_shown_and_decides_the_verdict(dice, interval, shown, verdict, monkeypatch):
    from labkit.grading import tasks
    goal = tasks.Goal("test_dice", "test Dice", minimum=0.85)  # a goal of 0.85, for the boundary cases
    monkeypatch.setattr(tasks, "COURSE_TARGETS", (tasks.LabTarget("01_unet_oxford_pet", "01", (goal,)),))
    metrics = {"test_dice": dice, **({"test_dice_ci": interval} if interval else {})}
    [row] = results_rows([fake_summary("full", "cpu", "2026-11-25", [("01_unet_oxford_pet", "ok", metrics)])],
                         targets=tasks.COURSE_TARGETS)
    assert row["Last measured result"] == f"{shown} {verdict}"


def test_a_run_row_shows_each_recorded_interval_beside_its_number():
    from labkit.tools.readme_table import run_rows
    metrics = {"test_dice": 0.8557, "test_dice_ci": [0.8301, 0.879], "valid_dice": 0.8709}
    [row] = run_rows([fake_summary("full", "cpu", "2026-11-25", [("01_unet_oxford_pet", "ok", metrics)])])
    assert row["Metrics"] == "test_dice 0.8557 (95% CI 0.8301-0.879), valid_dice 0.8709"


def test_an_interval_on_a_percentage_keeps_the_unit_on_both_bounds():
    from labkit.grading.tasks import Measure
    assert Measure("a", "test accuracy", "%").show({"a": 91.5, "a_ci": [89.25, 93.5]}) == \
        "test accuracy 91.50% (95% CI 89.25%-93.50%)"


def test_a_duration_names_no_split_in_the_split_column():
    # train_minutes is how long training took, not a metric measured on the train split
    assert metric_splits({"test_dice": 0.8, "valid_dice": 0.82, "train_minutes": 7.5}) == "test, valid"
    assert metric_splits({"test_dice": 0.8, "train_loss": 0.1}) == "test, train"


def test_readme_without_markers_is_left_alone_with_a_clear_error():
    with pytest.raises(ValueError, match="results:start"):
        replace_marked_section("# no markers\n", "table")


def test_cli_lists_its_commands_and_refuses_an_unknown_one(capsys):
    assert main([]) == 2 and "readme-table" in capsys.readouterr().out
    assert main(["grade-everything"]) == 2 and "unknown command" in capsys.readouterr().err


# ----------------------------------------------------------------------------- timeouts and data per notebook

def test_a_params_timeouts_section_sets_seconds_per_notebook_and_is_not_a_parameter(tmp_path):
    (tmp_path / "params.yaml").write_text("global: {A: 1}\n01: {B: 2}\ntimeouts: {default: 600, 01: 900}\n")
    params_file = load_params_file(tmp_path / "params.yaml")
    assert notebook_timeout("01_unet_oxford_pet", params_file["timeouts"], None) == 900
    assert notebook_timeout("04_quantization_cifar10", params_file["timeouts"], None) == 600
    assert notebook_timeout("04_quantization_cifar10", {"04": 0}, 300) is None  # 0: no limit
    merged = notebook_parameters("01_unet_oxford_pet", mode="full", out_dir=tmp_path, params_file=params_file)
    assert "timeouts" not in merged and "default" not in merged and merged["B"] == 2


def test_a_timeouts_entry_naming_no_notebook_or_not_seconds_is_refused(tmp_path):
    (tmp_path / "01_a.ipynb").write_text("{}")
    with pytest.raises(ValueError, match="timeouts entry '07'"):
        check_sections({"timeouts": {"07": 60}}, [tmp_path / "01_a.ipynb"], tmp_path)
    (tmp_path / "bad.yaml").write_text("timeouts: {01: ten minutes}\n")
    with pytest.raises(ValueError, match="timeouts.01 must be seconds"):
        load_params_file(tmp_path / "bad.yaml")


def test_the_data_a_notebook_read_is_its_data_root_seen_from_the_notebook_folder(tmp_path):
    notebook = write_notebook(tmp_path / "01_x.ipynb", PARAMETERS_CELL + 'DATA_ROOT = "../data/pets"\n')
    assert dataset_used(notebook, {"DATA_ROOT": "../../shared/data/pets-real"}, "full") == {
        "name": "pets-real", "root": str((tmp_path / "../../shared/data/pets-real").resolve())}
    assert dataset_used(notebook, {}, "full")["name"] == "pets"  # the notebook's own default
    assert dataset_used(notebook, {"DATA_ROOT": "/x/pets-real"}, "smoke")["name"] == "synthetic fixture"
    assert dataset_used(notebook, {}, "full", {"dataset": "cifar10 (torchvision)"})["name"] == "cifar10 (torchvision)"


# ----------------------------------------------------------------------------- README rows per run

MACHINE = {"cpu_model": "Intel Xeon Platinum 8481C", "cpu_cores": 2, "usable_cores": 1, "gpu": None,
           "omp_num_threads": "1"}


def machine_summary(mode, date, entries, **machine):
    return {"started": f"{date}T09:00:00+00:00", "mode": mode, "device": machine.pop("device", "cpu"),
            **MACHINE, **machine, "notebooks": entries}


def run_entry(name, metrics, *, seconds=90.0, status="ok", data=None, device="cpu"):
    return {"notebook": name, "status": status, "seconds": seconds, "device": device, "metrics": metrics,
            "data": data or {"name": "synthetic fixture", "root": None}}


def test_readme_table_puts_real_data_rows_beside_smoke_rows(tmp_path):
    smoke = machine_summary("smoke", "2026-12-01", [
        run_entry("01_unet_oxford_pet", {"test_dice": 0.9784, "valid_dice": 0.97, "seconds_per_epoch": 2.0}),
        run_entry("04_quantization_cifar10", {"hand_accuracy": 100.0})])
    real = machine_summary("full", "2026-12-02", [
        run_entry("01_unet_oxford_pet", {"test_dice": 0.8012, "valid_dice": 0.8123, "device": "cpu",
                                         "splits": {"train": 225, "valid": 25, "test": 50}},
                  seconds=612.0, data={"name": "oxford-iiit-pet-real", "root": "/w/shared/data/oxford-iiit-pet-real"}),
        run_entry("04_quantization_cifar10", {"fp32_accuracy": 91.54, "hand_accuracy": 91.5},
                  seconds=95.0, status="timeout", data={"name": "cifar10-real", "root": None})])
    paths = [tmp_path / "smoke.json", tmp_path / "real.json"]
    for path, summary in zip(paths, (smoke, real)):
        path.write_text(json.dumps(summary))
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert main(["readme-table", str(paths[0]), str(paths[1]), "--readme", str(readme)]) == 0
    table = readme.read_text().split(START_MARKER)[1].split(END_MARKER)[0]
    lines = [line for line in table.splitlines() if line.startswith("| 0")]
    assert [line.split("|")[1].strip() + " " + line.split("|")[2].strip() for line in lines[:4]] == [
        "01_unet_oxford_pet SMOKE", "01_unet_oxford_pet FULL",
        "04_quantization_cifar10 SMOKE", "04_quantization_cifar10 FULL"]  # side by side per notebook
    real_unet = [cell.strip() for cell in lines[1].split("|")[1:-1]]
    assert real_unet == ["01_unet_oxford_pet", "FULL", "oxford-iiit-pet-real", "test (50), valid (25)",
                         "test_dice 0.8012, valid_dice 0.8123",
                         "CPU Intel Xeon Platinum 8481C, 1 of 2 cores, OMP_NUM_THREADS=1", "10.2", "2026-12-02"]
    assert "synthetic fixture" in lines[0] and "seconds_per_epoch" not in lines[0]
    assert "(run timeout)" in lines[3] and "not in the metric names" in lines[3]
    assert "01 UNet, Oxford-IIIT Pet" in table  # the course-goal table follows
    assert f"readme-table {paths[0]} {paths[1]}`" in table


def test_run_rows_render_any_recorded_metric_and_skip_bookkeeping():
    summary = machine_summary("full", "2026-12-02", [run_entry("05_efficient_unet_cityscapes", {
        "task1_test_miou": 0.4741, "task2_int8_test_miou": 0.479, "task2_minutes": 6.5, "task2_macs": 184123456,
        "check_exit_code": 0, "threads": 2, "task1_epochs": 12, "smoke": True, "recipe": "cpu",
        "image_size": [128, 256]})], device="NVIDIA H200", gpu="NVIDIA H200", usable_cores=16, cpu_cores=16)
    summary["notebooks"][0]["device"] = "NVIDIA H200"
    row = run_rows([summary])[0]
    assert row["Metrics"] == ("task1_test_miou 0.4741, task2_int8_test_miou 0.479, task2_minutes 6.5, "
                              "task2_macs 1.841e+08")
    assert row["Split"] == "test; the rest name no split"  # task2_minutes, task2_macs
    assert row["Hardware"] == "NVIDIA H200; CPU Intel Xeon Platinum 8481C, 16 cores, OMP_NUM_THREADS=1"


def test_run_rows_read_summaries_written_before_the_machine_fields():
    old = {"started": "2026-11-25T10:00:00+00:00", "mode": "full", "device": "cpu", "cpu_cores": 2,
           "notebooks": [{"notebook": "03_pruning_cifar10", "status": "ok", "seconds": 346.0, "device": "cpu",
                          "metrics": {"sparsity": 85.0}, "parameters": {"DATA_ROOT": "../data/cifar10"}}]}
    row = run_rows([old])[0]
    assert (row["Data set"], row["Hardware"], row["Minutes"]) == ("cifar10", "cpu (2 cores)", "5.8")


def real_cpu_parameters() -> dict:
    """Each notebook's FULL parameters under params/real-cpu.yaml: {notebook name: parameters}."""
    notebooks_dir = REPO_ROOT / "notebooks"
    params_file = load_params_file(REPO_ROOT / "params" / "real-cpu.yaml")
    notebooks = find_notebooks(notebooks_dir=notebooks_dir)
    check_sections(params_file, notebooks, notebooks_dir)
    return {notebook.stem: notebook_parameters(notebook.stem, mode="full", out_dir="/tmp/x", params_file=params_file)
            for notebook in notebooks}


def test_real_cpu_params_give_every_notebook_the_cpu_a_timeout_and_a_shared_data_root():
    params_file = load_params_file(REPO_ROOT / "params" / "real-cpu.yaml")
    for name, merged in real_cpu_parameters().items():
        assert merged["DEVICE"] == "cpu" and merged["DATA_ROOT"].startswith("../../shared/data/"), name
        assert notebook_timeout(name, params_file["timeouts"], None) > 0


def test_real_cpu_params_point_every_notebook_at_the_shared_data():
    notebooks_dir = REPO_ROOT / "notebooks"
    if not (REPO_ROOT.parent / "shared" / "data").is_dir():
        pytest.skip(f"{REPO_ROOT.parent / 'shared' / 'data'} not present: the real data lives in ../shared")
    for name, merged in real_cpu_parameters().items():
        shared = (notebooks_dir / merged["DATA_ROOT"]).resolve()
        assert shared.is_dir(), f"{name}: {shared} is missing"
        if "PRETRAINED" in merged:
            assert (notebooks_dir / merged["PRETRAINED"]).is_file(), f"{name}: {merged['PRETRAINED']} is missing"


def test_a_rerun_into_the_same_folder_starts_afresh_unless_resume_is_asked_for(tmp_path):
    """A checkpoint left by an earlier run must not be resumed silently: its training is not this run's."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    write_notebook(notebooks / "01_resumes.ipynb", PARAMETERS_CELL,
                   "from pathlib import Path\nfrom labkit.tools.record import record\n"
                   'checkpoint = Path(OUT_DIR) / "checkpoints" / "last.pt"\n'
                   'record("found_a_checkpoint", checkpoint.exists())\n'
                   'checkpoint.parent.mkdir(parents=True, exist_ok=True)\ncheckpoint.write_text("epoch 1")')
    out_dir = tmp_path / "out"

    def found(**kwargs):
        summary = run_notebooks(find_notebooks(notebooks_dir=notebooks), out_dir=out_dir, mode="smoke",
                                timeout=120, log=lambda line: None, **kwargs)
        return summary["notebooks"][0]["metrics"]["found_a_checkpoint"]

    assert found() is False
    assert found() is False  # the first run's folder was moved aside, not resumed
    assert (out_dir / "previous" / "01_resumes" / "checkpoints" / "last.pt").exists()
    previous = out_dir / "previous"
    assert sorted(path.name for path in previous.iterdir()) == [
        "01_resumes", "01_resumes.ipynb", "01_resumes.log", "01_resumes.params.yaml"]  # all four, nothing else
    assert "OUT_DIR" in (previous / "01_resumes.params.yaml").read_text()
    assert json.loads((previous / "01_resumes.ipynb").read_text())["cells"]  # the executed copy, whole
    assert found(resume=True) is True
