"""labkit.params: notebook parameters as users pass them (papermill -p gives strings)."""
from __future__ import annotations

import pytest

from labkit import params
from labkit.params import as_float_list, as_image_size, as_int_list, as_workers


# ---- as_int_list (CALIBRATION_SIZES) -------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (None, None),
    (10, [10]),
    ([1, 10, 100], [1, 10, 100]),
    ((1, 10), [1, 10]),
    ("10", [10]),
    ("[1, 10, 100]", [1, 10, 100]),
    ("(1, 10)", [1, 10]),
    ("1, 10, 100", [1, 10, 100]),
    ("1,10,100", [1, 10, 100]),
    ("1 10 100", [1, 10, 100]),
])
def test_int_list_accepts_each_form(value, expected):
    assert as_int_list("CALIBRATION_SIZES", value) == expected


@pytest.mark.parametrize("value", [True, "1.5", [1, 2.5], "0", [-1], "[]", "", "ten", "__import__('os')",
                                   "[[1, 2]]", {"a": 1}, [True, 2]])
def test_int_list_refuses_with_the_parameter_name_and_value(value):
    with pytest.raises(ValueError) as info:
        as_int_list("CALIBRATION_SIZES", value)
    message = str(info.value)
    assert message.startswith("CALIBRATION_SIZES: cannot read ")
    assert repr(value) in message
    assert "accepted:" in message


# ---- as_float_list (TARGETS) ---------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (None, None),
    (0.5, [0.5]),
    (1, [1.0]),
    ([0.5, 0.7], [0.5, 0.7]),
    ((0.5, 0.7), [0.5, 0.7]),
    ("0.5", [0.5]),
    ("0.5, 0.7", [0.5, 0.7]),
    ("[0.5, 0.7]", [0.5, 0.7]),
    ("(0.5, 0.7)", [0.5, 0.7]),
    ("0.5 0.7", [0.5, 0.7]),
])
def test_float_list_accepts_each_form(value, expected):
    result = as_float_list("TARGETS", value)
    assert result == expected
    assert result is None or all(type(x) is float for x in result)


@pytest.mark.parametrize("value", [False, "half", [0.5, "0.7"], [0.5, True], "[]", "nan", float("inf"),
                                   "0.5;0.7", "[0.5, 0.7"])
def test_float_list_refuses_with_the_parameter_name_and_value(value):
    with pytest.raises(ValueError) as info:
        as_float_list("TARGETS", value)
    message = str(info.value)
    assert message.startswith("TARGETS: cannot read ")
    assert repr(value) in message
    assert "accepted:" in message


# ---- as_image_size (IMAGE_SIZE) ------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (None, None),
    (128, (128, 128)),
    ("128", (128, 128)),
    ([128, 256], (128, 256)),
    ((128, 256), (128, 256)),
    ("[128, 256]", (128, 256)),
    ("(128, 256)", (128, 256)),
    ("128x256", (128, 256)),
    ("128X256", (128, 256)),
    (" 128 x 256 ", (128, 256)),
    ("128,256", (128, 256)),
    ("128, 256", (128, 256)),
])
def test_image_size_pair_accepts_each_form(value, expected):
    assert as_image_size("IMAGE_SIZE", value, pair=True) == expected


@pytest.mark.parametrize("value, expected", [
    (None, None),
    (160, 160),
    ("160", 160),
    ([160, 160], 160),
    ("160x160", 160),
])
def test_image_size_square_accepts_each_form(value, expected):
    assert as_image_size("IMAGE_SIZE", value) == expected


@pytest.mark.parametrize("value", ["12x", "x256", True, 0, "-128", "[128, 256, 3]", "128.5", [128.0, 256],
                                   "big", "[]", [128, False]])
def test_image_size_pair_refuses_with_the_parameter_name_and_value(value):
    with pytest.raises(ValueError) as info:
        as_image_size("IMAGE_SIZE", value, pair=True)
    message = str(info.value)
    assert message.startswith("IMAGE_SIZE: cannot read ")
    assert repr(value) in message
    assert 'accepted: 128, [128, 256], "128x256"' in message


def test_image_size_refusal_reads_like_the_documented_example():
    with pytest.raises(ValueError, match=r"^IMAGE_SIZE: cannot read '12x' as an image size; "
                                         r"accepted: 128, \[128, 256\], \"128x256\"$"):
        as_image_size("IMAGE_SIZE", "12x", pair=True)


def test_image_size_square_refuses_unequal_sides_and_says_why():
    with pytest.raises(ValueError, match=r"^IMAGE_SIZE: .*'128x256'.*square"):
        as_image_size("IMAGE_SIZE", "128x256")


# ---- as_workers ----------------------------------------------------------------------------------

def test_workers_default_is_at_most_four_and_leaves_a_core(monkeypatch):
    for cores, expected in [(1, 0), (2, 1), (3, 2), (16, 4)]:
        monkeypatch.setattr(params, "usable_cores", lambda cores=cores: cores)
        assert as_workers(None) == expected


def test_workers_request_is_capped_at_usable_cores(monkeypatch, capsys):
    monkeypatch.setattr(params, "usable_cores", lambda: 2)
    assert as_workers(8) == 2
    assert "only 2 core(s)" in capsys.readouterr().out
    assert as_workers(2) == 2
    assert as_workers("1") == 1
    assert as_workers(0) == 0


def test_usable_cores_follows_the_affinity_mask():
    import os
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no sched_getaffinity on this OS")
    assert params.usable_cores() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("value", [-1, True, "two", 1.5])
def test_workers_refuses_with_the_parameter_name(value):
    with pytest.raises(ValueError, match=r"^workers: cannot read .*accepted:"):
        as_workers(value)
