"""The student edition's self-checks hold no answer: no solution line, no reference formula, no recorder.

A self-check that computed its expected value (``torch.relu(block.bn2(...)) + block.downsample(x)``)
would show the answer in its source and in every failing traceback. The expected values are data
(``labkit/selfcheck/recorded``); this test reads the edition's self-check code and fails on a call to
any operation a reference forward or a reference metric would need.
"""
import ast

import pytest

from labkit.paths import REPO_ROOT
from labkit.selfcheck.recorded import RECORDED_DIR
from labkit.tools.release import build_student_edition, find_reimplementations

# What a reference implementation of a TODO would call: the ops of the solutions, by attribute name.
REFERENCE_OPS = {"cat", "conv1d", "conv2d", "batch_norm", "sigmoid", "relu", "interpolate", "pad_to_match",
                 "kthvalue", "global_unstructured", "l1_unstructured", "sqrt", "round", "mean", "amax",
                 "avg_pool2d", "adaptive_avg_pool2d", "clamp", "where"}


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("edition") / "student"
    release = build_student_edition(REPO_ROOT, out)
    return out, release


def called_names(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            function = node.func
            names.add(function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", ""))
    return names


def test_no_solution_line_is_in_the_editions_selfcheck_code(edition):
    out, release = edition
    secrets = release.secret_lines()
    assert secrets  # the release did strip solutions
    for path in sorted((out / "labkit" / "selfcheck").glob("*.py")):
        text = path.read_text()
        leaked = [line for line in secrets if line in text]
        assert not leaked, f"{path.name} contains solution lines: {leaked[:3]}"


def test_no_reference_formula_is_called_in_the_editions_selfcheck_code(edition):
    out, _ = edition
    modules = sorted((out / "labkit" / "selfcheck").glob("*.py"))
    assert len(modules) >= 8
    for path in modules:
        used = called_names(path.read_text()) & REFERENCE_OPS
        assert not used, f"{path.name} calls {sorted(used)}: expected values must come from the recorded data"


def test_the_edition_ships_the_recorded_values_but_not_the_recorder(edition):
    out, _ = edition
    assert (out / "labkit" / "selfcheck" / "recorded" / "layouts.json").is_file()
    shipped = sorted(path.name for path in (out / "labkit" / "selfcheck" / "recorded").glob("*.npz"))
    assert shipped and shipped == sorted(path.name for path in RECORDED_DIR.glob("*.npz"))
    assert not (out / "labkit" / "tools" / "record_selfcheck.py").exists()


def test_the_scan_sees_a_reference_forward():
    assert called_names("expected = torch.relu(block.bn2(x)) + F.interpolate(x)") >= {"relu", "interpolate"}


def test_no_function_of_the_editions_selfcheck_code_computes_what_a_todo_asks(edition):
    out, release = edition
    found = [(where, name, solution.name) for where, name, solution, _, _ in find_reimplementations(out, release.solutions)
             if where.startswith("labkit/selfcheck/")]
    assert found == []


def test_check_decoder_block_compares_with_the_recorded_output_not_a_formula(tmp_path, monkeypatch, capsys):
    """A check that re-derived DecoderBlock.forward would not notice a changed recording; this one fails."""
    from labkit.selfcheck import module_case, segmentation
    from labkit.selfcheck.recorded import load_case, save_case
    from labkit.selfcheck.report import SelfCheckFailure

    assert segmentation.check_decoder_block()                       # the solution against the recording
    case = load_case("decoder_block")
    case.expected["out"] = case.expected["out"] + 0.5
    save_case("decoder_block", case, folder=tmp_path)
    monkeypatch.setattr(module_case, "load_case",
                        lambda name: load_case(name, folder=tmp_path if name == "decoder_block" else RECORDED_DIR))
    with pytest.raises(SelfCheckFailure, match="differs from the course's by 5.0e-01"):
        segmentation.check_decoder_block()
