"""``python -m labkit``: the student edition lists and runs only the commands it ships."""
import importlib.util

from labkit.tools import cli


def test_a_ta_command_left_out_of_the_edition_is_not_offered(monkeypatch, capsys):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "labkit.tools.release" else real_find_spec(name, *args))
    assert "release" not in cli.usage() and "selfcheck" in cli.usage()
    assert cli.main(["release", "--out", "x"]) == 2
    assert "not part of the student edition" in capsys.readouterr().err
