"""labkit.recipes: one table per lab, and every key a notebook reads is in the recipes it can pick."""
from __future__ import annotations

import json
import re

import pytest

from labkit import recipes
from labkit.paths import REPO_ROOT
from labkit.recipes import NA

LABS = ["01", "02", "03", "04", "05"]
NOTEBOOKS = {path.name[:2]: path for path in (REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}


def code(lab: str) -> str:
    cells = json.loads(NOTEBOOKS[lab].read_text())["cells"]
    return "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")


def pickable(table) -> list[str]:
    """The recipes a run can get: SMOKE, CPU, GPU and the variants that replace one of them."""
    return ["SMOKE", "CPU", "GPU", *(variant.column for variant in table.variants)]


def test_there_is_one_table_per_lab_with_smoke_cpu_and_gpu():
    assert list(recipes.TABLES) == LABS
    for lab, table in recipes.TABLES.items():
        assert {"SMOKE", "CPU", "GPU"} <= set(table.columns), lab
        assert all(meaning.strip() for meaning, *_ in table.rows.values()), f"lab {lab}: a key without its meaning"


@pytest.mark.parametrize("lab", LABS)
def test_every_key_the_notebook_reads_is_in_each_recipe_it_can_pick(lab):
    """``config["key"]`` (and lab 03's ``structured["key"]``) in the notebook's code cells: each key is a row of
    the lab's table, set in every recipe the notebook can pick unless the table marks it n/a there (e.g. lab 04's
    stand-in epochs in FULL, which loads the pretrained model) or the notebook sets it itself."""
    text, table = code(lab), recipes.table(lab)
    written = set(re.findall(r"""config\[["'](\w+)["']\]\s*=[^=]""", text))
    written |= set(re.findall(r"""config\.setdefault\(["'](\w+)["']""", text))
    read = {("", key) for key in re.findall(r"""config\[["'](\w+)["']\]""", text)} - {("", key) for key in written}
    read |= {("structured", key) for key in re.findall(r"""structured\[["'](\w+)["']\]""", text)}
    assert len(read) >= 5, f"notebook {lab}: the pattern no longer finds the config keys it reads"
    for part, key in sorted(read):
        row = f"{part}.{key}" if part else key
        assert row in table.rows, f"notebook {lab} reads {row!r}, which lab {lab}'s table does not have"
        for column in pickable(table):
            value = table.rows[row][1 + table.columns.index(column)]
            assert value is NA or key in table.recipe(column, part or None), (lab, column, row)


@pytest.mark.parametrize("lab", LABS)
def test_each_notebook_shows_its_table_and_picks_from_it(lab):
    text = code(lab)
    assert f'recipes.show("{lab}", smoke=SMOKE, device=device)' in text
    assert f'recipes.pick("{lab}", smoke=SMOKE, device=device' in text
    assert "apply_overrides(" in text
    assert not re.search(r"\b(FULL_GPU|FULL_CPU|SMOKE_CONFIG|FULL_CONFIG)\b", text), "a hand-written recipe is back"


def test_the_run_picks_smoke_then_the_device_then_lab_01s_bfloat16_rule(monkeypatch):
    from labkit import device
    assert recipes.column("02", smoke=True, device="cuda") == "SMOKE"
    assert recipes.column("02", smoke=False, device="cuda:0") == "GPU"
    assert recipes.column("02", smoke=False, device="cpu") == "CPU"
    for has, expected in [(True, "CPU (bfloat16)"), (False, "CPU")]:
        monkeypatch.setattr(device, "cpu_has_bfloat16", lambda has=has: has)
        assert recipes.column("01", smoke=False, device="cpu") == expected
        assert recipes.column("01", smoke=False, device="cuda") == "GPU"  # the rule is the CPU's only
    assert recipes.pick("01", smoke=False, device="cpu")["epochs"] == 60
    monkeypatch.setattr(device, "cpu_has_bfloat16", lambda: True)
    bf16 = recipes.pick("01", smoke=False, device="cpu")
    assert (bf16["epochs"], bf16["lovasz"], bf16["bfloat16"], bf16["ema"]) == (100, 0.5, True, 0.99)


def test_pick_gives_a_fresh_dict_each_time():
    first = recipes.pick("04", smoke=False, device="cpu")
    first["hand_calibration_candidates"].append(1)
    first["batch_size"] = 1
    assert recipes.pick("04", smoke=False, device="cpu")["hand_calibration_candidates"] == [100, 1000, 5000]
    assert recipes.pick("04", smoke=False, device="cpu")["batch_size"] == 128


def test_a_column_leaves_out_its_not_applicable_keys_and_a_part_is_its_own_dict():
    smoke, full = (recipes.pick("04", smoke=smoke, device="cpu") for smoke in (True, False))
    assert {"epochs", "lr"} <= set(smoke) and not {"epochs", "lr"} & set(full)
    structured = recipes.pick("03", smoke=False, device="cpu", part="structured")
    assert structured["epochs"] == 8 and "ratio" in structured
    assert not any("." in key for key in recipes.pick("03", smoke=False, device="cpu"))


def test_every_recipe_says_what_it_costs_where_or_that_it_was_not_measured():
    for lab, table in recipes.TABLES.items():
        for column, cost in table.costs.items():
            assert cost.figures and cost.machine and cost.source, (lab, column)
            if column.startswith("GPU"):  # no GPU has run a recipe of this build
                assert "not measured" in cost.machine, (lab, column)


def _numbers(text: str) -> list[str]:
    return re.findall(r"(?<![\w.])\d+\.\d+(?![\w.])", text)


def test_every_figure_in_a_table_is_quoted_from_the_readmes_or_the_notebooks():
    """No figure was typed in from elsewhere: each decimal in a cost or note appears (to its decimals) in
    README.md, benchmarks/README.md or a notebook."""
    corpus = "\n".join([(REPO_ROOT / "README.md").read_text(), (REPO_ROOT / "benchmarks" / "README.md").read_text(),
                        *(code(lab) + json.dumps(json.loads(NOTEBOOKS[lab].read_text())["cells"]) for lab in LABS)])
    known = {float(number) for number in _numbers(corpus)}
    for lab, table in recipes.TABLES.items():
        texts = [cost.figures for cost in table.costs.values()] + list(table.notes)
        for number in _numbers(" ".join(texts)):
            decimals = len(number.split(".")[1])
            assert any(round(value, decimals) == float(number) for value in known), (lab, number)


def test_render_marks_the_picked_recipe_and_shows_every_key_and_cost():
    text = recipes.render("05", picked="GPU")
    assert "GPU (this run)" in text
    for key in recipes.table("05").rows:
        assert f"| {key} " in text
    assert "not measured: no GPU was lent" in text and "README.md Results, 05 FULL row" in text  # every cost, with where it is measured


def test_lab_03s_table_holds_the_course_goal_the_stage_ratios_and_train_baselines_defaults():
    import inspect

    from labkit.grading.tasks import ACCURACY_GOAL
    from labkit.prune.channels import resnet20_stage_ratios
    from labkit.train import train_baseline
    for column in ("SMOKE", "CPU", "GPU"):
        assert recipes.table("03").recipe(column)["accuracy_floor"] == ACCURACY_GOAL
        assert recipes.table("03").recipe(column, "structured")["ratio"] == resnet20_stage_ratios(0.5, 0.0, 0.0)
    scratch = recipes.table("03").recipe("GPU (from scratch)")
    defaults = {name: p.default for name, p in inspect.signature(train_baseline).parameters.items()}
    assert {key: defaults[key] for key in ("epochs", "lr", "momentum", "weight_decay", "nesterov")} == \
        {key: scratch[key] for key in ("epochs", "lr", "momentum", "weight_decay", "nesterov")}


def test_the_benchmarks_run_lab_03s_recipes_from_the_table():
    import sys
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        import bench_prune_recipes
        import bench_structured_prune
        import lab03_start
    finally:
        sys.path.remove(str(REPO_ROOT / "benchmarks"))
    cpu = recipes.table("03").recipe("CPU")
    assert lab03_start.CPU_GRADUAL == {key: cpu[key] for key in lab03_start.GRADUAL_KEYS}
    assert bench_prune_recipes.CPU_GRADUAL is bench_structured_prune.CPU_GRADUAL is lab03_start.CPU_GRADUAL
    assert bench_prune_recipes.CPU_ITERATIVE["targets"] == (0.5, 0.7, 0.8, 0.85, 0.9)
    structured = recipes.table("03").recipe("CPU", "structured")
    assert bench_structured_prune.CPU_STRUCTURED == {k: v for k, v in structured.items() if k != "latency_rounds"}
