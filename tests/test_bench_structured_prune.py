"""benchmarks/bench_structured_prune.py: the unstructured model is pruned in the run itself, by notebook 03's
recipe, and the README's two tables are exactly what the committed rows give."""
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

import pytest

from labkit import recipes
from labkit.tools.readme_table import replace_marked_section

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
ROWS = BENCHMARKS / "rows"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHMARKS))  # the script imports lab03_start from its own folder
    try:
        spec = importlib.util.spec_from_file_location("bench_structured_prune", BENCHMARKS / "bench_structured_prune.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def test_the_unstructured_row_is_notebook_03s_gradual_pruning_run_here(bench, tmp_path, monkeypatch):
    import lab03_start
    calls = []

    def recording_gradual_prune(model, train, valid, **settings):
        calls.append(settings)
        return real_gradual_prune(model, train, valid, **settings)
    real_gradual_prune = lab03_start.gradual_prune
    monkeypatch.setattr(lab03_start, "gradual_prune", recording_gradual_prune)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    results = tmp_path / "rows.jsonl"
    bench.main(["--fixture", "--ratios", "", "--unstructured-epochs", "1", "--rounds", "1", "--results", str(results)])
    # the fixture's images were removed once loaded (torch keeps its own compile cache there, shared by every run)
    assert [path.name for path in temporary.iterdir() if not path.name.startswith("torchinductor_")] == []

    cpu = recipes.table("03").recipe("CPU")  # notebook 03's FULL recipe on a CPU, with the epochs asked for
    assert calls == [{"device": "cpu", "final_sparsity": 0.9, "epochs": 1, "prune_fraction": cpu["prune_fraction"],
                      "lr": cpu["lr"], "distill_alpha": cpu["distill_alpha"], "temperature": cpu["temperature"],
                      "ranking": cpu["ranking"]}]
    dense, unstructured = (json.loads(line) for line in results.read_text().splitlines())
    assert dense["model"] == "dense" and dense["epochs"] is None and dense["fine_tune_images"] is None
    assert unstructured["model"] == "unstructured 90% (gradual+kd)"
    assert unstructured["zeros"] == pytest.approx(90.0, abs=0.01)  # the course's sparsity of the graded file
    assert unstructured["minutes"] > 0 and unstructured["epochs"] == 1 and unstructured["seed"] == 0
    assert unstructured["fine_tune_images"] == 400  # the fixture's 500 training images minus a fifth for validation
    assert unstructured["macs_m"] == dense["macs_m"]  # zeros in dense tensors save no MACs


def test_unstructured_epochs_0_leaves_the_unstructured_model_out(bench, tmp_path, monkeypatch):
    import lab03_start
    monkeypatch.setattr(lab03_start, "gradual_prune", lambda *args, **kwargs: pytest.fail("pruned anyway"))
    results = tmp_path / "rows.jsonl"
    bench.main(["--fixture", "--ratios", "", "--unstructured-epochs", "0", "--rounds", "1", "--results", str(results)])
    assert [json.loads(line)["model"] for line in results.read_text().splitlines()] == ["dense"]


def test_the_committed_tables_are_the_ones_the_committed_rows_give(bench, tmp_path):
    readme = BENCHMARKS / "README.md"
    emptied = readme.read_text()
    for start, end in (bench.MARKERS, bench.LATENCY_MARKERS):  # both tables must come back from their rows
        emptied = replace_marked_section(emptied, "", start=start, end=end)
    copy = tmp_path / "README.md"
    copy.write_text(emptied)
    bench.main(["--table-only", "--readme", str(copy), "--results", str(ROWS / "structured_prune.jsonl"),
                "--latency-results", str(ROWS / "structured_latency.jsonl")])
    assert copy.read_text() == readme.read_text(), \
        "rerun python benchmarks/bench_structured_prune.py --table-only --readme benchmarks/README.md"
    rows = [json.loads(line) for line in (ROWS / "structured_prune.jsonl").read_text().splitlines()]
    assert any(row["model"] == "unstructured 90% (gradual+kd)" and row["epochs"] for row in rows)


def test_table_only_without_a_results_file_says_to_run_the_benchmark(bench, tmp_path):
    with pytest.raises(SystemExit, match="no such results file; run the benchmark first"):
        bench.main(["--table-only", "--results", str(tmp_path / "missing.jsonl")])
