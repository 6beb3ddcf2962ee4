"""labkit.params: notebook parameters as users pass them (papermill -p gives strings)."""
from __future__ import annotations

import pytest

from labkit import params
from labkit.params import apply_overrides, as_float_list, as_image_size, as_int_list, as_workers


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


# ---- apply_overrides (a notebook's parameters onto its recipe) -----------------------------------

def hand_written_loop(config, epochs, batch_size, base_channels, image_size):
    """Notebooks 01/02's loop before apply_overrides, kept here as the reference it must equal."""
    for name, key, value in (("EPOCHS", "epochs", epochs), ("BATCH_SIZE", "batch_size", batch_size),
                             ("BASE_CHANNELS", "base_channels", base_channels)):
        if (values := as_int_list(name, value)) is not None and len(values) != 1:
            raise ValueError(f"{name}: give one positive integer, got {value!r}")
        config[key] = values[0] if values is not None else config[key]
    config["image_size"] = as_image_size("IMAGE_SIZE", image_size) or config["image_size"]
    config["workers"] = as_workers(config["workers"])
    return config


def outcome(function, *args):
    try:
        return function(*args)
    except ValueError as error:
        return f"ValueError: {error}"


PETS = {"epochs": 60, "batch_size": 16, "image_size": 128, "base_channels": 16, "lr": 3e-3, "workers": 4}


@pytest.mark.parametrize("epochs", [None, 3, "3", "[3]", "[1, 2]", 0, 1.5, True, "ten"])
@pytest.mark.parametrize("image_size", [None, 96, "96", [96, 96], "96x128", "12x"])
def test_apply_overrides_equals_the_hand_written_loop_it_replaced(monkeypatch, epochs, image_size):
    monkeypatch.setattr(params, "usable_cores", lambda: 2)
    for batch_size, base_channels in [(None, None), ("8", 24), (-1, None)]:
        expected = outcome(hand_written_loop, dict(PETS), epochs, batch_size, base_channels, image_size)
        got = outcome(lambda: apply_overrides(
            dict(PETS), {"EPOCHS": epochs, "BATCH_SIZE": batch_size, "BASE_CHANNELS": base_channels,
                         "IMAGE_SIZE": image_size}, kinds={"IMAGE_SIZE": "side"}))
        assert got == expected, (epochs, batch_size, base_channels, image_size)


def test_apply_overrides_keeps_the_recipe_where_a_parameter_is_none_and_returns_the_same_dict():
    recipe = {"epochs": 12, "lr": 0.05, "hand_calibration_candidates": [100]}
    result = apply_overrides(recipe, {"EPOCHS": None, "CALIBRATION_SIZES": None}, kinds={"CALIBRATION_SIZES": "ints"})
    assert result is recipe
    assert result == {"epochs": 12, "lr": 0.05, "hand_calibration_candidates": [100]}  # no key added for None


def test_apply_overrides_adds_a_key_the_recipe_leaves_to_the_notebook():
    # notebook 04: CALIBRATION_SIZES has no recipe value (the default depends on the data), so it is added
    config = apply_overrides({"batch_size": 50}, {"CALIBRATION_SIZES": "1, 10", "HAND_CALIBRATION_IMAGES": 100},
                             kinds={"CALIBRATION_SIZES": "ints", "HAND_CALIBRATION_IMAGES": "ints"})
    assert config == {"batch_size": 50, "calibration_sizes": [1, 10], "hand_calibration_images": [100]}
    assert list(config) == ["batch_size", "calibration_sizes", "hand_calibration_images"]


def test_apply_overrides_sends_one_parameter_to_several_keys():
    config = apply_overrides({"task1_epochs": 16, "task2_epochs": 8, "qat_epochs": 2},
                             {"EPOCHS": "3", "QAT_EPOCHS": None}, keys={"EPOCHS": ("task1_epochs", "task2_epochs")})
    assert config == {"task1_epochs": 3, "task2_epochs": 3, "qat_epochs": 2}
    config = apply_overrides({"epochs_per_round": 2}, {"EPOCHS": 4}, keys={"EPOCHS": "epochs_per_round"})
    assert config == {"epochs_per_round": 4}


@pytest.mark.parametrize("kind, value, expected", [
    ("int", "[7]", 7),
    ("ints", "1 10 100", [1, 10, 100]),
    ("number", "80", 80),
    ("number", 0.5, 0.5),
    ("number", "[0.5]", 0.5),
    ("floats", "0.5, 0.7", [0.5, 0.7]),
    ("side", "96x96", 96),
    ("size", "96x192", (96, 192)),
    ("size", 64, (64, 64)),
])
def test_apply_overrides_reads_each_kind_with_its_reader(kind, value, expected):
    config = apply_overrides({"x": None}, {"X": value}, kinds={"X": kind})
    assert config["x"] == expected and type(config["x"]) is type(expected)


@pytest.mark.parametrize("kind, value, message", [
    ("int", "[1, 2]", "EPOCHS: give one positive integer, got '[1, 2]'"),
    ("int", 0, "EPOCHS: cannot read 0 as a list of positive integers (0 is not > 0)"),
    ("ints", "[1.5]", "EPOCHS: cannot read '[1.5]' as a list of positive integers"),
    ("number", "[80, 90]", "EPOCHS: give one number, got '[80, 90]'"),
    ("number", "nan", "EPOCHS: cannot read 'nan' as a list of numbers"),
    ("floats", "half", "EPOCHS: cannot read 'half' as a list of numbers"),
    ("side", "96x128", "EPOCHS: cannot read '96x128' as an image size (this notebook trains on square images"),
    ("size", "12x", "EPOCHS: cannot read '12x' as an image size; accepted: 128, [128, 256]"),
    ("workers", -1, "workers: cannot read -1 as a number of DataLoader workers"),
])
def test_apply_overrides_refuses_a_bad_value_with_the_readers_message(kind, value, message):
    recipe = {"epochs": 12, "workers": 0}
    with pytest.raises(ValueError) as info:
        apply_overrides(recipe, {"EPOCHS": value}, kinds={"EPOCHS": kind})
    assert str(info.value).startswith(message)
    assert recipe == {"epochs": 12, "workers": 0}


def test_apply_overrides_caps_the_recipes_workers_at_the_cores_once(monkeypatch, capsys):
    monkeypatch.setattr(params, "usable_cores", lambda: 2)
    assert apply_overrides({"workers": 4}, {})["workers"] == 2  # the GPU recipe's 4 on a 2-core machine
    assert capsys.readouterr().out.count("only 2 core(s)") == 1
    assert apply_overrides({"workers": 0}, {"WORKERS": 8})["workers"] == 2  # WORKERS is read as workers
    assert capsys.readouterr().out.count("only 2 core(s)") == 1  # read once, not once more afterwards
    assert apply_overrides({"workers": 4}, {"WORKERS": "1"})["workers"] == 1
    assert apply_overrides({"epochs": 1}, {}) == {"epochs": 1}  # no workers key: none added


def test_apply_overrides_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="unknown parameter kind.*'sizes'"):
        apply_overrides({"x": 1}, {"X": None}, kinds={"X": "sizes"})
