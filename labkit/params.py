"""Read notebook parameters the way users actually pass them.

``papermill -p NAME VALUE`` turns numbers into numbers but leaves everything else a string, so
``-p IMAGE_SIZE "[128, 256]"`` arrives as the *string* ``"[128, 256]"``. These helpers accept both
the Python value (``128``, ``[128, 256]``, ``(128, 256)``) and the strings people type, and refuse
anything else with an error that names the parameter, shows what was received and lists the
accepted forms. Strings are read with :func:`ast.literal_eval` (never ``eval``). ``None`` always
means "not set" and comes back as ``None`` (the notebook then uses its mode's default).

Example:
    >>> as_image_size("IMAGE_SIZE", "128x256", pair=True)
    (128, 256)
    >>> as_int_list("CALIBRATION_SIZES", "1, 10, 100")
    [1, 10, 100]
    >>> as_float_list("TARGETS", "[0.5, 0.7]")
    [0.5, 0.7]

A notebook sets all its parameters on its recipe at once with :func:`apply_overrides`.
"""
from __future__ import annotations

import ast
import math
import os
import re

_INT_LIST_FORMS = '10, [1, 10, 100], "1, 10, 100"'
_FLOAT_LIST_FORMS = '0.5, [0.5, 0.7], "0.5, 0.7"'
_SIZE_FORMS = '128, [128, 256], "128x256"'
_SQUARE_FORMS = '128, "128" (one side of a square image)'


def _refuse(name: str, value, what: str, accepted: str, why: str = "") -> ValueError:
    reason = f" ({why})" if why else ""
    return ValueError(f"{name}: cannot read {value!r} as {what}{reason}; accepted: {accepted}")


def _parse_text(text: str):
    """A user-typed string -> a Python value: ``"[1, 2]"``, ``"(1, 2)"``, ``"1, 2"``, ``"1 2"``, ``"3"``.

    Raises ``ValueError``/``SyntaxError`` when the text is not a plain literal.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty")
    if text[0] in "[(":
        return ast.literal_eval(text)
    parts = [part for part in re.split(r"[,\s]+", text) if part]
    values = [ast.literal_eval(part) for part in parts]
    if len(values) == 1 and "," not in text:
        return values[0]
    return values


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _as_items(name: str, value, what: str, accepted: str, *, received=None) -> list:
    """``value`` (a scalar, list, tuple or string) -> a non-empty Python list of its items.

    ``received`` is what the user passed, shown in errors (defaults to ``value``).
    """
    received = value if received is None else received
    if isinstance(value, str):
        try:
            value = _parse_text(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise _refuse(name, received, what, accepted) from None
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif _is_number(value):
        items = [value]
    else:
        raise _refuse(name, received, what, accepted)
    if not items:
        raise _refuse(name, received, what, accepted, "the list is empty")
    return items


def as_int_list(name: str, value) -> list[int] | None:
    """A list of positive integers (e.g. ``CALIBRATION_SIZES``), or ``None`` when ``value`` is ``None``.

    Accepts an int (one item), a list/tuple of ints, or the strings ``"10"``, ``"[1, 10, 100]"``,
    ``"(1, 10)"``, ``"1, 10, 100"``, ``"1 10 100"``. Refuses booleans, fractions, zero/negative
    numbers and empty lists.

    Example:
        >>> as_int_list("CALIBRATION_SIZES", "[1, 5, 10]")
        [1, 5, 10]
        >>> as_int_list("CALIBRATION_SIZES", 100)
        [100]
        >>> as_int_list("CALIBRATION_SIZES", None) is None
        True
        >>> as_int_list("CALIBRATION_SIZES", "1.5")
        Traceback (most recent call last):
        ...
        ValueError: CALIBRATION_SIZES: cannot read '1.5' as a list of positive integers (1.5 is not an integer); accepted: 10, [1, 10, 100], "1, 10, 100"
    """
    if value is None:
        return None
    what = "a list of positive integers"
    items = _as_items(name, value, what, _INT_LIST_FORMS)
    for item in items:
        if not _is_int(item):
            raise _refuse(name, value, what, _INT_LIST_FORMS, f"{item!r} is not an integer")
        if item <= 0:
            raise _refuse(name, value, what, _INT_LIST_FORMS, f"{item} is not > 0")
    return [int(item) for item in items]


def as_float_list(name: str, value) -> list[float] | None:
    """A list of finite numbers as floats (e.g. pruning ``TARGETS``), or ``None`` for ``None``.

    Accepts a number (one item), a list/tuple of numbers, or the strings ``"0.5"``,
    ``"[0.5, 0.7]"``, ``"(0.5, 0.7)"``, ``"0.5, 0.7"``, ``"0.5 0.7"``. Refuses booleans, NaN/inf and
    empty lists. The range (e.g. a sparsity in (0, 1)) is the caller's business.

    Example:
        >>> as_float_list("TARGETS", "0.5, 0.7")
        [0.5, 0.7]
        >>> as_float_list("TARGETS", [0.5, 1])
        [0.5, 1.0]
        >>> as_float_list("TARGETS", "half")
        Traceback (most recent call last):
        ...
        ValueError: TARGETS: cannot read 'half' as a list of numbers; accepted: 0.5, [0.5, 0.7], "0.5, 0.7"
    """
    if value is None:
        return None
    what = "a list of numbers"
    items = _as_items(name, value, what, _FLOAT_LIST_FORMS)
    for item in items:
        if not _is_number(item):
            raise _refuse(name, value, what, _FLOAT_LIST_FORMS, f"{item!r} is not a number")
        if not math.isfinite(item):
            raise _refuse(name, value, what, _FLOAT_LIST_FORMS, f"{item} is not finite")
    return [float(item) for item in items]


def as_image_size(name: str, value, *, pair: bool = False) -> int | tuple[int, int] | None:
    """An image size in pixels, or ``None`` for ``None``.

    ``pair=False`` (square images, Pets): one positive int side, from ``128`` or ``"128"``; a pair
    with equal sides (``[128, 128]``, ``"128x128"``) is accepted as that side, unequal sides are
    refused. ``pair=True`` (Cityscapes): an ``(H, W)`` tuple, from ``[128, 256]``, ``(128, 256)``,
    ``"[128, 256]"``, ``"(128, 256)"``, ``"128x256"`` or ``"128,256"``; one int ``128`` means a
    square ``(128, 128)``. Every side must be a positive integer.

    Example:
        >>> as_image_size("IMAGE_SIZE", "128x256", pair=True)
        (128, 256)
        >>> as_image_size("IMAGE_SIZE", 128, pair=True)
        (128, 128)
        >>> as_image_size("IMAGE_SIZE", "160")
        160
        >>> as_image_size("IMAGE_SIZE", "12x", pair=True)
        Traceback (most recent call last):
        ...
        ValueError: IMAGE_SIZE: cannot read '12x' as an image size; accepted: 128, [128, 256], "128x256"
    """
    if value is None:
        return None
    what = "an image size"
    accepted = _SIZE_FORMS if pair else _SQUARE_FORMS
    parsed = value
    if isinstance(value, str):
        text = value.strip()
        match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
        parsed = [int(match.group(1)), int(match.group(2))] if match else value
    items = _as_items(name, parsed, what, accepted, received=value)
    if len(items) > 2:
        raise _refuse(name, value, what, accepted, f"{len(items)} numbers, expected 1 or 2")
    for item in items:
        if not _is_int(item):
            raise _refuse(name, value, what, accepted, f"{item!r} is not an integer")
        if item <= 0:
            raise _refuse(name, value, what, accepted, f"{item} is not > 0")
    if len(items) == 1:
        items = items * 2
    height, width = int(items[0]), int(items[1])
    if pair:
        return height, width
    if height != width:
        raise _refuse(name, value, what, accepted, "this notebook trains on square images; give one side")
    return height


def usable_cores() -> int:
    """The number of CPU cores this process may run on (its affinity mask where the OS has one).

    Example:
        >>> usable_cores() >= 1
        True
    """
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def as_workers(requested: int | None) -> int:
    """DataLoader worker processes: never more than the cores this process may use.

    ``None`` -> ``min(4, cores - 1)``: leave one core to the training loop itself, so on a 1- or
    2-core machine loading stays in the main process or uses one helper. An explicit request is
    capped at the number of usable cores (a note is printed when it is lowered). ``0`` means
    "load in the main process". Accepts an int or a string of one (``"2"``); refuses booleans and
    negative numbers.

    Example:
        >>> as_workers(0)
        0
        >>> 0 <= as_workers(None) <= 4
        True
        >>> as_workers(usable_cores()) == usable_cores()
        True
    """
    cores = usable_cores()
    if requested is None:
        return max(0, min(4, cores - 1))
    value = requested
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
    if not _is_int(value) or value < 0:
        raise ValueError(f"workers: cannot read {requested!r} as a number of DataLoader workers; "
                         "accepted: 0 (load in the main process), a positive int such as 2, or None (automatic)")
    if value > cores:
        print(f"note: {value} DataLoader workers requested but only {cores} core(s) are usable here; using {cores}")
        return cores
    return int(value)


KINDS = {
    "int": "one positive integer (EPOCHS, BATCH_SIZE, a width): as_int_list, exactly one item",
    "ints": "a list of positive integers (CALIBRATION_SIZES): as_int_list",
    "number": "one finite number, its int or float kept (ACCURACY_FLOOR; epochs that may be 0.5): as_float_list, one item",
    "floats": "a list of finite numbers (TARGETS): as_float_list",
    "side": "a square image's side in pixels (Pets' IMAGE_SIZE): as_image_size",
    "size": "an (H, W) image size (Cityscapes' IMAGE_SIZE): as_image_size(pair=True)",
    "workers": "DataLoader workers, never more than the usable cores (WORKERS): as_workers",
}


def _read(kind: str, name: str, value):
    """``value`` of parameter ``name`` read as ``kind`` (one of :data:`KINDS`); ``None`` stays ``None``."""
    if kind in ("int", "ints"):
        values = as_int_list(name, value)
        if kind == "int" and values is not None and len(values) != 1:
            raise ValueError(f"{name}: give one positive integer, got {value!r}")
        return values[0] if kind == "int" and values is not None else values
    if kind in ("number", "floats"):
        values = as_float_list(name, value)
        if kind == "floats" or values is None:
            return values
        if len(values) != 1:
            raise ValueError(f"{name}: give one number, got {value!r}")
        number = _as_items(name, value, "a number", _FLOAT_LIST_FORMS)[0]  # as given: 3 stays 3, 0.5 stays 0.5
        return int(number) if _is_int(number) else float(number)
    if kind in ("side", "size"):
        return as_image_size(name, value, pair=kind == "size")
    if kind == "workers":
        return None if value is None else as_workers(value)
    raise ValueError(f"{name}: unknown parameter kind {kind!r}; known: {', '.join(KINDS)}")


def apply_overrides(config: dict, overrides: dict, *, kinds: dict[str, str] | None = None,
                    keys: dict[str, str | tuple[str, ...]] | None = None) -> dict:
    """Set a notebook's parameters on its recipe: ``overrides`` maps each parameter's NAME to the value
    papermill gave it, ``None`` meaning "keep the recipe's".

    Each value is read by its kind (``kinds[NAME]``, one of :data:`KINDS`; default ``"int"``, and
    ``"workers"`` for ``WORKERS``) with the readers above, so a bad value stops here with the message
    that names the parameter, what it received and the accepted forms. It goes to the key
    ``NAME.lower()``, or to ``keys[NAME]`` (a key, or a tuple of keys that all get it). Where ``config``
    has a ``workers`` key it always goes through :func:`as_workers` (the recipe's value when no
    parameter set it): never more DataLoader workers than this machine's cores. ``config`` is changed
    in place and returned.

    Example:
        >>> recipe = {"epochs": 12, "image_size": 64, "workers": 0}
        >>> apply_overrides(recipe, {"EPOCHS": "20", "IMAGE_SIZE": None}, kinds={"IMAGE_SIZE": "side"})
        {'epochs': 20, 'image_size': 64, 'workers': 0}
        >>> apply_overrides({"task1_epochs": 8, "task2_epochs": 8}, {"EPOCHS": 3},
        ...                 keys={"EPOCHS": ("task1_epochs", "task2_epochs")})
        {'task1_epochs': 3, 'task2_epochs': 3}
        >>> apply_overrides({"image_size": (64, 128)}, {"IMAGE_SIZE": "96x192"}, kinds={"IMAGE_SIZE": "size"})
        {'image_size': (96, 192)}
        >>> apply_overrides({"epochs": 12}, {"EPOCHS": "[1, 2]"})
        Traceback (most recent call last):
        ...
        ValueError: EPOCHS: give one positive integer, got '[1, 2]'
    """
    kinds = {"WORKERS": "workers", **(kinds or {})}
    keys = keys or {}
    unknown = sorted(set(kinds.values()) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown parameter kind(s) {unknown}; known: {', '.join(KINDS)}")
    workers_set = False
    for name, value in overrides.items():
        kind = kinds.get(name, "int")
        value = _read(kind, name, value)
        if value is None:
            continue
        targets = keys.get(name, name.lower())
        for key in (targets,) if isinstance(targets, str) else targets:
            config[key] = value
            workers_set |= key == "workers" and kind == "workers"
    if "workers" in config and not workers_set:
        config["workers"] = as_workers(config["workers"])
    return config
