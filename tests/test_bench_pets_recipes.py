"""benchmarks/bench_pets_recipes.py on synthetic pets: a rerun gives the same row, and the table is written."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_pets_recipes.py"
MARKERS = "<!-- pets-recipes:begin -->\n<!-- pets-recipes:end -->\n"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_pets_recipes", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_rerun_of_the_same_recipe_gives_the_same_validation_dice(bench, tmp_path):
    results = tmp_path / "rows.jsonl"
    for earlier_seed in (1, 11):  # whatever ran before must not change the initial weights
        torch.manual_seed(earlier_seed)
        bench.main(["--fixture", "--epochs", "2", "--image-size", "32", "--results", str(results)])
    first, second = (json.loads(line) for line in results.read_text().splitlines())
    assert first["valid_dice"] == second["valid_dice"]
    assert first["machine"].endswith("fixture") and first["epochs"] == 2 and first["image_size"] == 32


def test_table_only_rewrites_the_marked_table_from_the_rows(bench, tmp_path):
    results = tmp_path / "rows.jsonl"
    row = {"epochs": 60, "batch_size": 16, "image_size": 128, "base_channels": 16, "valid_dice": 0.8765}
    results.write_text(json.dumps(row) + "\n")
    readme = tmp_path / "README.md"
    readme.write_text("before\n" + MARKERS + "after\n")
    bench.main(["--table-only", "--readme", str(readme), "--results", str(results)])
    text = readme.read_text()
    assert "| 0.8765" in text and text.startswith("before\n") and text.endswith("after\n")
    row_line = next(line for line in text.splitlines() if "0.8765" in line)
    assert "| True" not in row_line and "| False" in row_line  # a row from before --bf16: the default


def test_table_only_without_a_readme_is_refused(bench, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--table-only"])
    assert exit_info.value.code == 2 and "--readme" in capsys.readouterr().err


def test_the_committed_table_is_the_one_the_committed_rows_give(bench, tmp_path):
    readme = SCRIPT.parent / "README.md"
    copy = tmp_path / "README.md"
    copy.write_text(readme.read_text())
    bench.main(["--table-only", "--readme", str(copy), "--results", str(SCRIPT.parent / "rows" / "pets_recipes.jsonl")])
    assert copy.read_text() == readme.read_text(), "rerun bench_pets_recipes.py --table-only --readme benchmarks/README.md"
