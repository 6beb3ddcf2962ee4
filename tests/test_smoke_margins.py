"""SMOKE "it learned" assertions: check_learning records before it asserts; smoke_margins' table."""
import importlib.util
import json

import pytest

from labkit.paths import REPO_ROOT
from labkit.tools import record as record_module
from labkit.tools.record import LEARNING_CHECKS, check_learning, recorded

SCRIPT = REPO_ROOT / "benchmarks" / "smoke_margins.py"


@pytest.fixture
def margins():
    spec = importlib.util.spec_from_file_location("smoke_margins", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def fresh_records(monkeypatch):
    monkeypatch.setattr(record_module, "_RECORDED", {})


def test_a_passing_check_is_recorded_with_its_threshold():
    check_learning("dice", 0.75, at_least=0.6, display=False)
    check_learning("distance", 2.0, at_most=3.0, display=False)
    assert recorded()[LEARNING_CHECKS] == {"dice": {"value": 0.75, "at_least": 0.6},
                                           "distance": {"value": 2.0, "at_most": 3.0}}


def test_a_failing_check_is_recorded_first_then_raises_naming_value_and_threshold():
    with pytest.raises(AssertionError, match=r"dice = 0\.55, needs at least 0\.6: did not learn"):
        check_learning("dice", 0.55, at_least=0.6, why="did not learn", display=False)
    assert recorded()[LEARNING_CHECKS]["dice"] == {"value": 0.55, "at_least": 0.6}
    with pytest.raises(AssertionError, match="needs at most 3"):
        check_learning("distance", 3.5, at_most=3.0, display=False)


def test_a_check_needs_exactly_one_bound():
    with pytest.raises(ValueError, match="exactly one"):
        check_learning("dice", 0.7, display=False)
    with pytest.raises(ValueError, match="exactly one"):
        check_learning("dice", 0.7, at_least=0.5, at_most=0.9, display=False)


def row(value, seed, threads=2, **bound):
    return {"source": "01", "check": "dice", "value": value, "seed": seed, "threads": threads, **bound}


def test_the_margin_is_the_worst_run_and_names_its_seed_and_threads(margins):
    # at_least 0.6; values 0.9, 0.7, 0.8 -> min 0.7, median 0.8, max 0.9, margin 0.1, SD 0.1 -> 1.0 SD
    rows = [row(0.9, 0, at_least=0.6), row(0.7, 3, threads=1, at_least=0.6), row(0.8, 5, at_least=0.6)]
    (table,) = margins.margin_table(rows)
    assert table["assertion"] == "dice >= 0.6" and table["runs"] == 3
    assert (table["min"], table["median"], table["max"]) == (0.7, 0.8, 0.9)
    assert table["margin"] == pytest.approx(0.1) and table["margin/SD"] == pytest.approx(1.0)
    assert table["worst (seed, threads)"] == "3, 1" and table["failed"] == 0


def test_an_at_most_margin_counts_from_the_largest_value_and_counts_failures(margins):
    rows = [row(1.0, 0, at_most=3.0), row(3.5, 1, at_most=3.0), row(2.0, 2, at_most=3.0)]
    (table,) = margins.margin_table(rows)
    assert table["margin"] == pytest.approx(-0.5) and table["failed"] == 1
    assert table["worst (seed, threads)"] == "1, 2"


def test_a_threshold_that_moves_with_the_seed_is_judged_per_run(margins):
    # thresholds 0.6 and 0.85: the run at 0.9 is the closer one (0.05), not the lowest value (0.7)
    rows = [row(0.7, 0, at_least=0.6), row(0.9, 1, at_least=0.85)]
    (table,) = margins.margin_table(rows)
    assert table["margin"] == pytest.approx(0.05) and table["worst (seed, threads)"] == "1, 2"
    assert table["assertion"] == "dice >= 0.6..0.85"


def test_the_committed_table_is_the_one_the_committed_rows_give(margins):
    rows_path = margins.DEFAULT_ROWS
    rows = [json.loads(line) for line in rows_path.read_text().splitlines() if line.strip()]
    readme = (REPO_ROOT / "benchmarks" / "README.md").read_text()
    assert margins.table_text(rows) in readme
