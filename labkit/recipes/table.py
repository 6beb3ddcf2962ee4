"""The shape of a lab's recipe table: one row per setting (its unit and meaning, then one value per
recipe), and for each recipe what it costs where (airbench style: every figure with its machine).

Example:
    >>> table = RecipeTable(
    ...     lab="00", title="a toy", columns=("SMOKE", "CPU", "GPU"),
    ...     rows={"epochs": ("training epochs", 2, 10, NA)},
    ...     costs={name: Cost("-", "not measured", "-") for name in ("SMOKE", "CPU", "GPU")})
    >>> table.recipe("CPU"), table.recipe("GPU")
    ({'epochs': 10}, {})
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable


class _NotApplicable:
    """A cell whose setting that recipe does not have (the key is left out of its dict)."""

    def __repr__(self) -> str:
        return "n/a"


NA = _NotApplicable()


@dataclass(frozen=True)
class Cost:
    """What a recipe costs or gave, where that was measured (or that it was not), and where it is written."""
    figures: str
    machine: str
    source: str


@dataclass(frozen=True)
class Variant:
    """Column ``column`` runs instead of ``instead_of`` where ``applies()`` is true (``rule`` says when)."""
    column: str
    instead_of: str
    rule: str
    applies: Callable[[], bool]


@dataclass(frozen=True)
class RecipeTable:
    """One lab's recipes: ``rows`` maps each key to ``(unit and meaning, value per column...)``."""
    lab: str
    title: str
    columns: tuple[str, ...]
    rows: dict[str, tuple]
    costs: dict[str, Cost]
    variants: tuple[Variant, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self):
        for key, row in self.rows.items():
            if len(row) != 1 + len(self.columns):
                raise ValueError(f"lab {self.lab}, {key}: {len(row) - 1} values for {len(self.columns)} recipes")
        if set(self.costs) != set(self.columns):
            raise ValueError(f"lab {self.lab}: costs for {sorted(self.costs)}, recipes {list(self.columns)}")
        for variant in self.variants:
            if {variant.column, variant.instead_of} - set(self.columns):
                raise ValueError(f"lab {self.lab}: variant {variant.column!r} names a recipe the table lacks")

    def recipe(self, column: str, part: str | None = None) -> dict:
        """Recipe ``column`` as a fresh dict (its own copies of lists and dicts), in row order: the keys
        without a dot, or with ``part`` those named ``part.key`` (as ``key``)."""
        if column not in self.columns:
            raise KeyError(f"lab {self.lab} has no recipe {column!r}; it has {list(self.columns)}")
        if part is not None and part not in self.parts:
            raise KeyError(f"lab {self.lab} has no part {part!r}; parts: {list(self.parts)}")
        index, prefix = 1 + self.columns.index(column), f"{part}." if part else ""
        return {key[len(prefix):]: copy.deepcopy(row[index]) for key, row in self.rows.items()
                if row[index] is not NA and key.startswith(prefix) and "." not in key[len(prefix):]}

    @property
    def parts(self) -> list[str]:
        """The named parts besides the main one (``structured`` for keys ``structured.*``)."""
        return list(dict.fromkeys(key.split(".")[0] for key in self.rows if "." in key))

    def column_for(self, *, smoke: bool, device) -> str:
        """The recipe a run picks: ``SMOKE``; else ``GPU`` on CUDA, ``CPU`` elsewhere; then its variants."""
        kind = getattr(device, "type", str(device).split(":")[0])
        column = "SMOKE" if smoke else "GPU" if kind == "cuda" else "CPU"
        for variant in self.variants:
            if variant.instead_of == column and variant.applies():
                column = variant.column
        return column
