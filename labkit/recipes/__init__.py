"""Every lab's recipes, one table per lab: SMOKE, CPU and GPU (and any variant, such as lab 01's
"CPU (bfloat16)"), each setting with its unit and meaning, and for each recipe what it costs where.

A notebook shows its lab's table and takes the recipe its run picks (SMOKE in SMOKE mode; else GPU on
CUDA and CPU elsewhere, then the table's variant rules), then sets its parameters on it with
:func:`labkit.params.apply_overrides`:

    recipes.show("01", smoke=SMOKE, device=device)
    config = apply_overrides(recipes.pick("01", smoke=SMOKE, device=device), {"EPOCHS": EPOCHS, ...})

The tables live in ``labkit/recipes/labNN.py``; every figure in them is quoted from README.md,
benchmarks/README.md or a notebook, with the machine it was measured on (or "not measured").

Example:
    >>> pick("02", smoke=True, device="cpu")["epochs"]
    4
    >>> column("01", smoke=False, device="cuda")
    'GPU'
    >>> pick("04", smoke=False, device="cpu") == pick("04", smoke=False, device="cuda")
    True
"""
from __future__ import annotations

from labkit.recipes import lab01, lab02, lab03, lab04, lab05
from labkit.recipes.table import NA, Cost, RecipeTable, Variant

__all__ = ["NA", "TABLES", "Cost", "RecipeTable", "Variant", "column", "pick", "render", "show", "table"]

TABLES: dict[str, RecipeTable] = {t.lab: t for t in (lab01.TABLE, lab02.TABLE, lab03.TABLE, lab04.TABLE,
                                                    lab05.TABLE)}


def table(lab: str) -> RecipeTable:
    """Lab ``lab``'s table (``"01"`` .. ``"05"``; ``1`` and ``"1"`` work too)."""
    key = f"{int(lab):02d}" if str(lab).isdigit() else str(lab)
    if key not in TABLES:
        raise KeyError(f"no recipes for lab {lab!r}; labs: {', '.join(TABLES)}")
    return TABLES[key]


def column(lab: str, *, smoke: bool, device) -> str:
    """The name of the recipe a run of lab ``lab`` picks (``device``: a torch.device or its type)."""
    return table(lab).column_for(smoke=smoke, device=device)


def pick(lab: str, *, smoke: bool, device, part: str | None = None) -> dict:
    """The recipe a run of lab ``lab`` picks, as a fresh dict (changing it changes no table); with
    ``part`` that part of it (lab 03's ``"structured"`` section).

    Example:
        >>> config = pick("05", smoke=True, device="cpu")
        >>> config["image_size"], config["fixture"]
        ((64, 128), {'n_train': 38, 'n_val': 8})
        >>> config["fixture"]["n_train"] = 1
        >>> pick("05", smoke=True, device="cpu")["fixture"]["n_train"]
        38
    """
    recipes = table(lab)
    return recipes.recipe(recipes.column_for(smoke=smoke, device=device), part)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ", ".join(f"{key}={item}" for key, item in value.items())
    return str(value)


def render(lab: str, *, picked: str | None = None) -> str:
    """Lab ``lab``'s table as Markdown: the settings, then what each recipe costs where.

    Example:
        >>> text = render("02", picked="CPU")
        >>> text.splitlines()[0]
        '**Lab 02 recipes: ResNet34-UNet vs U-Net on Oxford-IIIT Pet**'
        >>> row = next(line for line in text.splitlines() if line.startswith("| epochs "))
        >>> [cell.strip() for cell in row.split("|")[1:-1]]
        ['epochs', 'training epochs, each model', '4', '18', '150']
        >>> "| CPU (this run) |" in text
        True
    """
    from labkit.tables import format_table
    recipes = table(lab)
    names = {name: f"{name} (this run)" if name == picked else name for name in recipes.columns}
    settings = [{"key": key, "unit and meaning": row[0],
                 **{names[name]: _cell(value) for name, value in zip(recipes.columns, row[1:])}}
                for key, row in recipes.rows.items()]
    costs = [{"recipe": names[name], "costs / gave": cost.figures, "measured on": cost.machine,
              "source": cost.source} for name, cost in recipes.costs.items()]
    rules = [f'"{v.column}" runs instead of "{v.instead_of}" {v.rule}.' for v in recipes.variants]
    return "\n\n".join([f"**Lab {recipes.lab} recipes: {recipes.title}**", format_table(settings),
                        format_table(costs), *rules, *recipes.notes])


def show(lab: str, *, smoke: bool, device) -> str:
    """Display lab ``lab``'s table in a notebook (Markdown; plain text elsewhere), the run's recipe marked."""
    text = render(lab, picked=column(lab, smoke=smoke, device=device))
    try:
        from IPython.display import Markdown, display
        display(Markdown(text))
    except ImportError:
        print(text)
    return text
