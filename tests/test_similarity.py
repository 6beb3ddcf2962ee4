"""labkit.grading.similarity / source_similarity: likely copies among submissions (a lead, never a grade).

Small synthetic state_dicts shaped like a slice of ResNet-20 (conv1, one block conv, bn1, fc), an
"honest" student = the reference plus an independent update of 14 % of its norm (what 60 SGD steps
moved the real ResNet-20: benchmarks/bench_similarity_threshold.py), a "copy" = a student's file plus
gaussian noise of 1e-3 x each tensor's std. A briefer fine-tuning (2 %) keeps raw weights >= 0.999 alike.
"""
from __future__ import annotations

import pytest
import torch

from labkit.grading.similarity import _magnitude_mask, find_similar, write_similarity_csv
from labkit.grading.source_similarity import default_boilerplate, similar_sources
from tests.helpers import SHARED, CreatesMarkerWhenUnpickled

REAL_RESNET20 = SHARED / "models" / "resnet20_cifar10_45k.pt"
SHAPES = {"conv1.weight": (16, 3, 3, 3), "bn1.weight": (16,), "bn1.bias": (16,), "bn1.running_mean": (16,),
          "bn1.running_var": (16,), "layer1.0.conv1.weight": (32, 16, 3, 3), "fc.weight": (10, 32), "fc.bias": (10,)}


def reference_state(seed=0):
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(s, generator=g) * 0.1 for k, s in SHAPES.items()}
    state["bn1.running_var"] = state["bn1.running_var"].abs() + 0.5
    state["bn1.num_batches_tracked"] = torch.tensor(100)
    return state


def moved(state, seed, relative=0.14, keep_zeros=False):
    """Each float tensor plus independent gaussian noise of ``relative`` x its std."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in state.items():
        if value.is_floating_point():
            step = torch.randn(value.shape, generator=g) * relative * value.std()
            value = torch.where(value == 0, value, value + step) if keep_zeros else value + step
        out[key] = value
    return out


def save(folder, name, state):
    path = folder / name
    torch.save(state, path)
    return path


def kinds(pairs):
    return sorted((p["a_id"], p["b_id"], p["kind"]) for p in pairs)


@pytest.fixture
def course(tmp_path):
    """The reference file and three students: 1 and 2 honest, 3 a noisy copy of 1."""
    ref = reference_state()
    one, two = moved(ref, 1), moved(ref, 2)
    files = {"ref": save(tmp_path, "reference.pt", ref), "1": save(tmp_path, "1_pruning.pt", one),
             "2": save(tmp_path, "2_pruning.pt", two), "3": save(tmp_path, "3_pruning.pt", moved(one, 3, 1e-3))}
    return files


def test_exact_copy_is_flagged_as_identical_file(tmp_path, course):
    copy = tmp_path / "9_pruning.pt"
    copy.write_bytes(course["1"].read_bytes())
    pairs = find_similar([("1", "pruning", course["1"]), ("9", "pruning", copy)], "pruning",
                         reference=course["ref"], isolate=False)
    assert kinds(pairs) == [("1", "9", "identical file")] and pairs[0]["figure"] == 1.0


def test_copy_with_small_noise_is_flagged_but_honest_students_are_not(course):
    subs = [(sid, "pruning", course[sid]) for sid in ("1", "2", "3")]
    pairs = find_similar(subs, "pruning", reference=course["ref"], isolate=False)
    assert kinds(pairs) == [("1", "3", "near-identical weights")]
    assert pairs[0]["figure"] >= 0.999 and "differences from the reference" in pairs[0]["detail"]


def test_honest_brief_fine_tunings_are_flagged_without_the_reference(tmp_path, course):
    """Why the reference matters: two brief fine-tunings of one start share >= 99.9 % of their raw weights."""
    ref = reference_state()
    subs = [(sid, "pruning", save(tmp_path, f"{sid}_pruning.pt", moved(ref, int(sid), 0.02))) for sid in ("1", "2")]
    assert find_similar(subs, "pruning", reference=course["ref"], isolate=False) == []
    pairs = find_similar(subs, "pruning", reference=None, isolate=False)
    assert kinds(pairs) == [("1", "2", "near-identical weights")] and "raw weights" in pairs[0]["detail"]


def test_two_files_of_one_student_are_never_paired(tmp_path, course):
    again = tmp_path / "1_pruning_v2.pt"
    again.write_bytes(course["1"].read_bytes())
    subs = [("1", "pruning", course["1"]), ("1", "pruning", again), ("1", "pruning", course["3"])]
    assert find_similar(subs, "pruning", reference=course["ref"], isolate=False) == []


def test_files_of_different_artifacts_are_never_paired(tmp_path, course):
    other = tmp_path / "9_quantization.pt"
    other.write_bytes(course["1"].read_bytes())
    subs = [("1", "pruning", course["1"]), ("9", "unet", other), ("3", "quantization", course["3"])]  # 3, 9: copies of 1
    assert find_similar(subs, "pruning", reference=course["ref"], isolate=False) == []


def test_a_pickled_object_is_not_compared_and_never_unpickled(tmp_path, course):
    marker = tmp_path / "marker"
    hostile = tmp_path / "6_pruning.pt"
    torch.save({"conv1.weight": CreatesMarkerWhenUnpickled(marker)}, hostile)
    subs = [("6", "pruning", hostile), ("1", "pruning", course["1"]), ("3", "pruning", course["3"])]
    pairs = find_similar(subs, "pruning", reference=course["ref"])  # isolate=True: the grader's path
    assert not marker.exists()
    assert kinds(pairs) == [("1", "3", "near-identical weights"), ("6", "", "not compared")]
    assert pairs[-1]["detail"].startswith("not compared: 6_pruning.pt")


def pruned(state, mask):
    """``state`` with the Conv/Linear weights zeroed where ``mask`` (concatenated, key order) is True."""
    out, start = dict(state), 0
    for key in sorted(state):
        value = state[key]
        if key.endswith(".weight") and value.dim() in (2, 4):
            part = torch.from_numpy(mask[start:start + value.numel()]).view(value.shape)
            out[key], start = value.masked_fill(part, 0.0), start + value.numel()
    return out


def test_a_shared_mask_is_flagged_unless_it_is_the_textbook_mask_of_the_reference(tmp_path):
    ref = reference_state()
    zeros = int(0.8 * sum(v.numel() for k, v in ref.items() if k.endswith(".weight") and v.dim() in (2, 4)))
    textbook = _magnitude_mask(ref, zeros, {})
    odd = torch.randperm(len(textbook), generator=torch.Generator().manual_seed(5)).numpy() < zeros  # nobody's method
    files = {}
    for sid, mask, seed in (("1", textbook, 1), ("2", textbook, 2), ("3", odd, 3), ("4", odd, 4)):
        files[sid] = save(tmp_path, f"{sid}_pruning.pt", moved(pruned(ref, mask), seed, 0.3, keep_zeros=True))
    subs = [(sid, "pruning", path) for sid, path in files.items()]
    refpath = save(tmp_path, "reference.pt", ref)
    assert kinds(find_similar(subs, "pruning", reference=refpath, isolate=False)) == [("3", "4", "identical pruning mask")]
    weak = find_similar(subs, "pruning", isolate=False)
    assert kinds(weak) == [("1", "2", "identical pruning mask"), ("3", "4", "identical pruning mask")]
    assert all("weak evidence" in p["detail"] for p in weak)


def course_int8(seed_weights, seed_scales):
    g = torch.Generator().manual_seed(seed_weights)
    state = {"conv1.weight_int8": torch.randint(-127, 128, (16, 16, 3, 3), generator=g, dtype=torch.int8),
             "conv1.weight_scale": torch.rand(16, 1, 1, 1, generator=g) / 100,
             "conv1.weight_zero_point": torch.zeros(16, 1, 1, 1, dtype=torch.int32),
             "conv1.bias_fp32": torch.randn(16, generator=g)}
    g = torch.Generator().manual_seed(seed_scales)
    state |= {"quant.output_scale": torch.rand((), generator=g) / 50, "conv1.output_scale": torch.rand((), generator=g),
              "quant.output_zero_point": torch.tensor(128, dtype=torch.int32),
              "conv1.output_zero_point": torch.tensor(0, dtype=torch.int32)}
    return state


def test_int8_same_weights_from_another_calibration_are_not_flagged_but_a_copy_is(tmp_path):
    """One quantization scheme gives every student the same INT8 weights; calibration sets them apart."""
    one, two = course_int8(0, 1), course_int8(0, 2)
    copy = dict(one, **{"conv1.bias_fp32": one["conv1.bias_fp32"] + 1e-4})
    subs = [(sid, "quantization", save(tmp_path, f"{sid}_quantization.pt", s)) for sid, s in (("1", one), ("2", two), ("3", copy))]
    pairs = find_similar(subs, "quantization", reference=None, isolate=False)
    assert kinds(pairs) == [("1", "3", "near-identical weights")] and "activation scales agree" in pairs[0]["detail"]


def test_similarity_csv_escapes_formula_cells(tmp_path):
    out = write_similarity_csv([{"task": "pruning", "a_id": "=cmd()", "kind": "identical file", "figure": 1.0}],
                               tmp_path / "pairs.csv")
    assert "'=cmd()" in out.read_text() and out.read_text().startswith("task,artifact,a_id")


@pytest.mark.skipif(not REAL_RESNET20.is_file(), reason=f"the shared ResNet-20 ({REAL_RESNET20}) is not here")
def test_real_resnet20_noisy_copy_flagged_and_honest_pair_not(tmp_path):
    ref = torch.load(REAL_RESNET20, weights_only=True, map_location="cpu")
    one, two = moved(ref, 1), moved(ref, 2)
    subs = [(sid, "pruning", save(tmp_path, f"{sid}_pruning.pt", s))
            for sid, s in (("1", one), ("2", two), ("3", moved(one, 3, 1e-3)))]
    assert kinds(find_similar(subs, "pruning", reference=REAL_RESNET20, isolate=False)) == [("1", "3", "near-identical weights")]


# ----------------------------------------------------------------------------- network.py
RENAMES = {"TinySegNet": "MyNet", "block": "conv_bn_relu", "enc_a": "down1", "enc_b": "down2", "mid": "bottleneck",
           "lift": "upconv", "dec_a": "up1", "classifier": "outc", "width": "ch", "c_in": "inp", "c_out": "outp",
           "An honest student's": "My own", "state": "weights"}


@pytest.fixture
def networks(tmp_path):
    from pathlib import Path
    students = Path(__file__).parent / "students"
    text = (students / "tiny_unet" / "network.py").read_text()
    for old, new in RENAMES.items():
        text = text.replace(old, new)
    copy = tmp_path / "9" / "network"
    copy.mkdir(parents=True)
    (copy / "network.py").write_text(text.replace("\n\n\n", "\n\n# my model\n"))
    return [("1", students / "tiny_unet" / "network.py"), ("2", students / "task2_net" / "network.py"),
            ("9", copy / "network.py")]


@pytest.mark.parametrize("method", ["copydetect", "difflib"])
def test_network_copy_with_renamed_names_is_flagged_and_other_networks_are_not(networks, method):
    if method == "copydetect":
        pytest.importorskip("copydetect", reason="copydetect (optional grading dependency) is not installed")
    pairs = similar_sources(networks, method=method)
    assert kinds(pairs) == [("1", "9", "similar source")] and pairs[0]["detail"].startswith(method)


def test_two_labkit_generated_networks_are_template_not_copies(tmp_path):
    pytest.importorskip("copydetect", reason="copydetect (optional grading dependency) is not installed")
    paths = []
    for sid in ("1", "2"):
        (tmp_path / sid).mkdir()
        paths.append((sid, tmp_path / sid / "network.py"))
        paths[-1][1].write_text(default_boilerplate()[1])
    pairs = similar_sources(paths)
    assert [p["kind"] for p in pairs] == ["not compared", "not compared"] and "template" in pairs[0]["detail"]


@pytest.mark.parametrize("method", ["copydetect", "difflib"])
def test_labkit_generated_networks_of_other_widths_and_working_sizes_are_template_not_copies(tmp_path, method):
    if method == "copydetect":
        pytest.importorskip("copydetect", reason="copydetect (optional grading dependency) is not installed")
    from labkit.grading.network_template import write_network
    from labkit.models.efficient_unet import EfficientUNet
    from labkit.models.working_size import WorkingSize
    paths = []
    for sid, width, size in (("1", 4, (128, 256)), ("2", 6, (64, 128)), ("3", 4, None)):  # other settings
        model = EfficientUNet(base_channels=width, depth=2)
        paths.append((sid, write_network(tmp_path / sid, WorkingSize(model, size) if size else model)))
    pairs = similar_sources(paths, method=method)
    assert [p["kind"] for p in pairs] == ["not compared"] * 3 and all("template" in p["detail"] for p in pairs)
