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


def test_folds_validate_every_image_exactly_once_and_never_train_on_it(bench):
    folds = [bench.fold_positions(10, folds=3, fold=fold) for fold in range(3)]
    assert sorted(i for _, valid in folds for i in valid) == list(range(10))
    assert all(not set(train) & set(valid) and sorted(train + valid) == list(range(10)) for train, valid in folds)
    assert folds[0][1] == [0, 3, 6, 9]  # item i is validated in fold i % 3


def test_a_cross_validated_run_writes_one_row_per_fold_and_the_table_averages_them(bench, tmp_path):
    results = tmp_path / "rows.jsonl"
    bench.main(["--fixture", "--epochs", "1", "--image-size", "32", "--folds", "2", "--results", str(results)])
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [(row["folds"], row["fold"]) for row in rows] == [(2, 0), (2, 1)]
    assert sum(row["valid_items"] for row in rows) == 40  # the fixture's 40 train + valid images, each once
    readme = tmp_path / "README.md"
    readme.write_text(MARKERS + "<!-- pets-recipes-cv:begin -->\n<!-- pets-recipes-cv:end -->\n")
    bench.main(["--table-only", "--readme", str(readme), "--results", str(results)])
    cv_table = readme.read_text().split("<!-- pets-recipes-cv:begin -->")[1]
    mean = (rows[0]["last_dice"] + rows[1]["last_dice"]) / 2
    assert f"| {mean:.4f}" in cv_table and f"{rows[0]['last_dice']:.4f} {rows[1]['last_dice']:.4f}" in cv_table
    assert "(no rows)" in readme.read_text().split("<!-- pets-recipes-cv:begin -->")[0]  # no single-split run


def test_one_fold_is_refused(bench, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--fixture", "--folds", "1"])
    assert exit_info.value.code == 2 and "--folds" in capsys.readouterr().err
