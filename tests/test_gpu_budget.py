"""labkit.gpu_budget and benchmarks/bench_gpu_budget.py: the T4 estimate, the FULL GPU recipes it sizes
(each within one Colab session), and the README table it writes."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from labkit.gpu_budget import COLAB_SESSION_MINUTES, T4, Phase, bound_by, estimate_minutes, image_cost, phase_seconds

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu_budget.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gpu_budget", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_a_compute_bound_phase_takes_its_flops_over_the_t4s_effective_flops_plus_host_time():
    phase = Phase("p", macs=10**10, activations=10**6, train_images=100, valid_images=20, epochs=2, batch_size=10)
    fast, slow = phase_seconds(phase)
    flop = 10**10 * 2 * (100 * 3 + 20)  # 3 passes per training image, 1 per validation image
    assert slow == pytest.approx(2 * (flop / (65e12 * 0.10) + 10 * 0.020))
    assert fast == pytest.approx(2 * (flop / (65e12 * 0.15) + 10 * 0.010))
    assert bound_by(phase) == "compute"


def test_a_depthwise_net_is_bound_by_memory_and_float32_doubles_its_traffic():
    phase = Phase("p", macs=10**8, activations=10**8, train_images=10, valid_images=0, epochs=1, batch_size=10)
    traffic = 10**8 * 2 * 2 * 30  # float16 elements, written and read, 3 passes of 10 images
    assert phase_seconds(phase)[1] == pytest.approx(traffic / (320e9 * 0.5) + 0.020)
    qat = Phase("p", 10**8, 10**8, 10, 0, 1, 10, precision="float32")
    assert phase_seconds(qat)[1] == pytest.approx(2 * traffic / (320e9 * 0.5) + 0.020)
    assert bound_by(phase) == "memory"


def test_image_cost_counts_macs_and_every_layers_output():
    macs, activations = image_cost(lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()), (3, 8, 8))
    assert macs == 8 * 3 * 9 * 64 and activations == 2 * 8 * 64


def test_the_t4_figures_say_where_they_come_from():
    assert T4.float16_flops == 65e12 and T4.bandwidth == 320e9 and "ResNet-50" in T4.source


@pytest.mark.parametrize("number", ["01", "02", "05"])
def test_every_full_gpu_recipe_trains_within_one_colab_t4_session(bench, number):
    # The bug it names: 01's 60 epochs of UNet-64 (104-157 min), 02's 100 epochs of two models (204-310)
    # and 05's 150 + 150 + 15 epochs (142-214) could not finish in one free Colab session. 02 may take
    # one session per model (resume continues the second), never more.
    phases = [spec.phase() for spec in bench.recipe_phases(number, bench.notebook_recipe(number))]
    sessions = len(phases) if number == "02" else 1
    fast, slow = estimate_minutes(phases)
    assert slow <= sessions * COLAB_SESSION_MINUTES, f"notebook {number}: {fast:.0f}-{slow:.0f} estimated T4 minutes"
    for phase in phases:
        assert estimate_minutes([phase])[1] <= COLAB_SESSION_MINUTES, f"notebook {number}: {phase.name}"


def test_the_recipes_are_the_gpu_columns_of_the_labs_recipe_tables(bench):
    from labkit import recipes
    assert bench.notebook_recipe("01") == recipes.pick("01", smoke=False, device="cuda")
    recipe = bench.notebook_recipe("05")
    assert recipe["image_size"] == (256, 512) and {"task1_epochs", "task2_epochs", "qat_epochs"} <= set(recipe)
    assert [spec.precision for spec in bench.recipe_phases("05", recipe)] == ["float16", "float16", "float32"]


def test_measuring_a_phase_times_a_training_and_a_validation_step_on_the_cpu(bench):
    spec = bench.PhaseSpec("tiny", lambda: nn.Conv2d(3, 1, 3, padding=1), nn.BCEWithLogitsLoss, (3, 16, 16), 1,
                           (10, 2), 1, 2)
    row = bench.measure(spec, batch=2, steps=1)
    assert row["phase"] == "tiny" and row["train_s_per_image"] > 0 and row["valid_s_per_image"] > 0
    assert row["threads"] == torch.get_num_threads()


def test_the_readme_recipe_table_is_the_one_the_script_writes_from_its_rows(bench):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start, end = (readme.index(marker) for marker in bench.MARKERS)
    written = readme[start + len(bench.MARKERS[0]):end].strip()
    assert written == bench.table(bench.read_rows(bench.RESULTS)).strip(), (
        "README's GPU recipe table is stale: python benchmarks/bench_gpu_budget.py --table-only --readme README.md")
    assert "not measured" not in written  # every phase of every recipe has its CPU speed measured
