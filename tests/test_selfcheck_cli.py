"""``python -m labkit selfcheck LAB``: one line per TODO; exit 0 all pass, 1 a failure, 3 a TODO still a stub."""
import io
import subprocess
import sys

import pytest

from labkit.selfcheck import SelfCheckFailure, require_lab, run_lab
from labkit.selfcheck.labs import LABS


def stub(*args, **kwargs):
    raise NotImplementedError("TODO: implement fuse_conv_bn()")


def test_selfcheck_all_passes_on_the_solution_with_one_line_per_todo():
    completed = subprocess.run([sys.executable, "-m", "labkit", "selfcheck", "all"], capture_output=True, text=True,
                               timeout=300)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    lines = [line for line in completed.stdout.splitlines() if line.startswith(("PASS", "FAIL", "TODO"))]
    assert len(lines) == sum(len(checks) for checks in LABS.values())
    assert all(line.startswith("PASS") for line in lines)


def test_a_todo_still_a_stub_exits_3_and_is_named(monkeypatch):
    import labkit.quant.manual as manual

    monkeypatch.setattr(manual, "fuse_conv_bn", stub)
    report = io.StringIO()
    assert run_lab("04", out=report) == 3
    assert "TODO fuse_conv_bn: not written yet" in report.getvalue()
    assert "PASS affine_qparams" in report.getvalue()  # the other TODO is still checked


def test_a_wrong_todo_exits_1(monkeypatch):
    import labkit.quant.manual as manual

    monkeypatch.setattr(manual, "fuse_conv_bn", lambda conv, bn: (conv.weight, bn.bias))
    assert run_lab("04", out=io.StringIO()) == 1


def test_require_lab_stops_a_notebook_before_training_and_can_be_skipped(monkeypatch, capsys):
    import labkit.quant.manual as manual

    monkeypatch.setattr(manual, "fuse_conv_bn", lambda conv, bn: (conv.weight, bn.bias))
    with pytest.raises(SelfCheckFailure, match="(?s)fix this before training.*FAIL fuse_conv_bn"):
        require_lab("04")
    monkeypatch.setattr(manual, "fuse_conv_bn", stub)
    with pytest.raises(NotImplementedError, match="TODO: implement fuse_conv_bn"):  # nbval's marker for a TODO
        require_lab("04")
    require_lab("04", enabled=False)
    assert "skipped (SELFCHECK=False)" in capsys.readouterr().out


def test_lab_02_and_05_check_the_lab_01_parts_they_use_first():
    assert [part for part, _ in LABS["02"][:3]] == ["dice_score (from Lab 01)", "DoubleConv (from Lab 01)",
                                                    "Up.forward (from Lab 01)"]
    assert [part for part, _ in LABS["05"][:2]] == ["DoubleConv (from Lab 01)", "Up.forward (from Lab 01)"]
    assert LABS["05"][-1][0] == "INT8 conversion"
