"""Channel pruning: whole channels leave every coupled layer, the network really shrinks and still trains."""
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from labkit.models.resnet20 import resnet20
from labkit import profile
from labkit.profile import compare_latency, count_macs
from labkit.prune.channels import (channel_prune, channel_widths, prune_channels_gradually, ratio_from_list,
                                   resnet20_stage_ratios)


def _tiny_loader(count=48):
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(count, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 10, (count,), generator=generator)
    return DataLoader(TensorDataset(images, labels), batch_size=16, shuffle=True)


def test_channel_prune_shrinks_every_stage_keeps_the_classes_and_the_residual_shapes():
    model = resnet20().eval()
    dense_macs = count_macs(model, input_size=(1, 3, 32, 32))
    channel_prune(model, ratio=0.5)
    widths = channel_widths(model)
    assert widths["conv1"] == 8 and widths["layer1.2.conv2"] == 8  # the residual stream of stage 1, coupled
    assert widths["layer2.0.conv1"] == 16 and widths["layer3.2.conv2"] == 32
    assert model.fc.out_features == 10 and model.fc.in_features == 32
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert count_macs(model, input_size=(1, 3, 32, 32)) < 0.3 * dense_macs  # about a quarter: channels squared


def test_channel_prune_keeps_the_strongest_channels_by_weight_norm():
    torch.manual_seed(0)
    model = resnet20().eval()
    strong = [1, 2, 5, 7, 8, 11, 12, 14]
    with torch.no_grad():  # make 8 of the 16 channels of stage 1's residual stream the strongest by far
        for name, module in model.named_modules():
            if name == "conv1" or (name.startswith("layer1") and name.endswith("conv2")):
                module.weight[strong] *= 100
    strong_filters = model.conv1.weight[strong].clone()
    channel_prune(model, ratio=0.5)
    assert torch.equal(model.conv1.weight, strong_filters)  # exactly the strong ones, in their order


def test_gradual_channel_pruning_trains_the_thinner_network():
    torch.manual_seed(0)
    start = resnet20()
    untrained = copy.deepcopy(start).eval()
    channel_prune(untrained, ratio=0.25)
    model = copy.deepcopy(start)
    history = prune_channels_gradually(model, _tiny_loader(), _tiny_loader(16), ratio=0.25, epochs=2,
                                       prune_fraction=0.5, prune_steps=1, lr=0.05, evaluations=2, log=None)
    assert channel_widths(model) == channel_widths(untrained)
    assert [row["epoch"] for row in history] == [1.0, 2.0] and history[-1]["macs"] == count_macs(
        untrained, input_size=(1, 3, 32, 32))
    # one pruning step at step 0 keeps the same channels as channel_prune; the optimizer must follow the
    # new, thinner parameters (pruning replaces them), so the weights moved from there
    assert not torch.allclose(model.layer3[2].conv2.weight, untrained.layer3[2].conv2.weight)
    assert not model.training


def test_gradual_taylor_pruning_takes_a_gradient_before_each_step_and_shrinks_like_l2():
    torch.manual_seed(0)
    by_norm = resnet20().eval()
    channel_prune(by_norm, ratio=0.25)
    model = resnet20()  # Taylor ranking reads every weight's .grad: without a backward pass first it fails
    prune_channels_gradually(model, _tiny_loader(), ratio=0.25, epochs=1, prune_fraction=1.0, prune_steps=2,
                             importance="taylor", log=None)
    assert channel_widths(model) == channel_widths(by_norm)


def test_channel_pruner_refuses_an_unknown_importance_and_names_the_known_ones():
    with pytest.raises(ValueError, match=r"importance is one of \['bn_scale', 'l2', 'taylor'\], got 'l1'"):
        channel_prune(resnet20(), ratio=0.25, importance="l1")


def test_gradual_channel_pruning_refuses_more_pruning_steps_than_sgd_steps():
    with pytest.raises(ValueError, match="pruning steps do not fit"):
        prune_channels_gradually(resnet20(), _tiny_loader(), ratio=0.25, epochs=1, prune_fraction=0.5,
                                 prune_steps=5, log=None)
    with pytest.raises(ValueError, match="fraction of channels"):
        channel_prune(resnet20(), ratio=1.0)


def test_stage_ratios_thin_only_the_named_stages_and_the_layers_reading_them():
    model = resnet20().eval()
    channel_prune(model, ratio=resnet20_stage_ratios(0.5, 0.0, 0.0))
    widths = channel_widths(model)
    assert widths["conv1"] == 8 and widths["layer1.0.conv1"] == 8 and widths["layer1.2.conv2"] == 8
    assert model.layer2[0].conv1.in_channels == 8 and model.layer2[0].downsample[0].in_channels == 8
    assert widths["layer2.0.conv1"] == 32 and widths["layer3.2.conv2"] == 64 and model.fc.in_features == 64
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_ratio_by_module_name_refuses_names_the_model_does_not_have_and_all_zero_ratios():
    with pytest.raises(ValueError, match="does not have: \\['stage1'\\]"):
        channel_prune(resnet20(), ratio={"stage1": 0.5})
    with pytest.raises(ValueError, match="nothing would be pruned"):
        channel_prune(resnet20(), ratio=resnet20_stage_ratios(0, 0, 0))
    with pytest.raises(ValueError, match="ratio\\['layer2'\\]"):
        channel_prune(resnet20(), ratio=resnet20_stage_ratios(0.5, 1.5, 0))


def test_ratio_from_list_takes_one_fraction_or_one_per_stage_and_names_the_parameter_otherwise():
    assert ratio_from_list([0.25]) == 0.25
    assert ratio_from_list([0.5, 0, 0]) == resnet20_stage_ratios(0.5, 0.0, 0.0)
    with pytest.raises(ValueError, match="STRUCTURED_RATIO is one fraction .* got 2 values"):
        ratio_from_list([0.5, 0.0], name="STRUCTURED_RATIO")


def test_compare_latency_gives_one_row_per_model_in_order_with_the_first_as_reference():
    models = {"wide": torch.nn.Conv2d(3, 32, 3), "thin": torch.nn.Conv2d(3, 4, 3)}
    rows = compare_latency(models, batch_sizes=(1, 8), rounds=2, repeats=2, warmup=1)
    assert [row["model"] for row in rows] == ["wide", "thin"]
    assert rows[0]["speedup_b1"] == 1.0 and rows[0]["speedup_b8"] == 1.0
    assert rows[1]["latency_b8_ms"] > 0 and rows[1]["speedup_b8"] > 0


class _SeesLayout(torch.nn.Conv2d):
    """A conv that remembers whether its input and weight came in channels_last."""
    seen = []

    def forward(self, batch):
        self.seen.append((batch.is_contiguous(memory_format=torch.channels_last),
                          self.weight.is_contiguous(memory_format=torch.channels_last)))
        return super().forward(batch)


def test_compare_latency_times_a_channels_last_copy_and_leaves_the_given_model_as_it_was():
    model = _SeesLayout(3, 8, 3)
    rows = compare_latency({"conv": model}, batch_sizes=(2,), rounds=1, repeats=1, warmup=0)
    assert _SeesLayout.seen[-1] == (True, True) and rows[0]["layout"] == "channels_last"
    assert not model.weight.is_contiguous(memory_format=torch.channels_last)
    rows = compare_latency({"conv": model}, batch_sizes=(2,), rounds=1, repeats=1, warmup=0,
                           memory_format=torch.contiguous_format)
    assert _SeesLayout.seen[-1] == (False, False) and rows[0]["layout"] == "nchw"


_PAGE_FAULTS_SCRIPT = """
import ctypes, json, torch
from labkit.profile import compare_latency

# glibc's default thresholds (128 KiB), fixed: glibc otherwise raises them as big blocks are freed, so
# whether the default gives the 8 MiB activations back depends on what the process did before (one
# fresh process inside the suite met no faults at all): fixed, every call gives them back
for parameter in (-1, -3):  # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD (man 3 mallopt)
    ctypes.CDLL(None).mallopt(parameter, 128 * 1024)

class FreshActivations(torch.nn.Module):  # like a forward pass at batch 128: six 8 MiB activations, then freed
    def forward(self, batch):
        held = [torch.ones(2 * 2**20) for _ in range(6)]
        return sum(tensor[0] for tensor in held)

settings = dict(input_shape=(1, 3, 4, 4), batch_sizes=(2,), rounds=5, repeats=3, warmup=2)
returned = compare_latency({"m": FreshActivations()}, steady_memory=False, **settings)[0]["page_faults_b2"]
kept = compare_latency({"m": FreshActivations()}, **settings)[0]["page_faults_b2"]
print(json.dumps([returned, kept]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and page-fault counts: Linux")
def test_compare_latency_keeps_freed_memory_so_calls_stop_page_faulting_it_back_in():
    # a fresh process, glibc's thresholds fixed at their defaults: without keep_freed_memory every call
    # faults its 48 MiB of activations in again (12,288 pages of 4 KiB); with it, the memory stays mapped.
    # Not "none": where the kernel balances memory across NUMA nodes (kernel.numa_balancing=1, CI's
    # host) it unmaps pages now and then to see who touches them, and those hinting faults count as minor
    # faults too (CI once met a median of 341 per call); the median over 5 rounds keeps a round that
    # met such a scan out, and a tenth is far from the 12,288 a call pays without the fix
    done = subprocess.run([sys.executable, "-c", _PAGE_FAULTS_SCRIPT], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1], check=True)
    returned, kept = json.loads(done.stdout.strip().splitlines()[-1])
    assert returned > 6 * 2**21 * 4 / 4096 / 2  # each call faulted (at least half of) its activations in again
    assert kept < returned / 10


def test_compare_latency_speedup_pairs_the_models_round_by_round(monkeypatch):
    # the reference is slow in rounds 2 and 3 (a busy machine), the other model in round 1 only:
    # its own rounds say 2x twice and 0.5x once; best times alone (10 vs 20 ms) would say 0.5x
    scripted = iter([10.0, 20.0, 40.0, 20.0, 40.0, 20.0])  # round by round: reference, other
    monkeypatch.setattr(profile, "latency", lambda model, batch, **_: {"median_ms": next(scripted),
                                                                    "page_faults": 0.0})
    rows = compare_latency({"reference": torch.nn.Identity(), "other": torch.nn.Identity()}, batch_sizes=(4,),
                           rounds=3)
    assert rows[1]["latency_b4_ms"] == 20.0 and rows[0]["latency_b4_ms"] == 10.0
    assert rows[1]["speedup_b4"] == 2.0
