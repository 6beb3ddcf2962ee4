"""Issue 7's folder test: >= 20 generated pruning submissions, every one graded by the real check
(except that student "hang"'s file blocks forever), one row each with the right exit code."""
import time

import torch
from torch.nn.utils import prune as torch_prune

from labkit.grading.batch import EXIT_TIMEOUT, grade_folder
from labkit.io import save_state_dict
from labkit.models.unet import UNet
from tests.helpers import CAT, CreatesMarkerWhenUnpickled, constant_model, hanging_checks_dir

DOG = CAT + 2


def write_submissions(folder, marker):
    """Each student id says what is wrong with the file; the value is the exit code it must get."""
    expected = {}

    def add(student, code, state=None, raw=None):
        path = folder / f"{student}_pruning.pt"
        if raw is not None:
            path.write_bytes(raw)
        elif state is not None:
            save_state_dict(state, path)
        expected[student] = code
        return path

    good = constant_model(CAT, target_sparsity=0.6).state_dict()
    for index in range(3):
        add(f"good{index}", 0, good)
    add("lowaccuracy", 1, constant_model(DOG, target_sparsity=0.6).state_dict())
    add("lowsparsity", 1, constant_model(CAT, target_sparsity=None).state_dict())
    add("wrongarch", 2, UNet(base_channels=4, depth=2).state_dict())
    pre_remove = constant_model(CAT, target_sparsity=None)
    torch_prune.l1_unstructured(pre_remove.conv1, "weight", amount=0.5)
    add("preremove", 2, pre_remove.state_dict())
    missing = dict(good)
    missing.pop("fc.bias")
    add("missingkey", 2, missing)
    wrong_shape = dict(good, **{"fc.weight": torch.zeros(5, 64), "fc.bias": torch.zeros(5)})
    add("wrongshape", 2, wrong_shape)
    nan = {k: v.clone() for k, v in good.items()}
    nan["fc.weight"][0, 0] = float("nan")
    add("nan", 2, nan)
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in good.items()}
    add("half", 0, half)  # converted to float32 with a note, then graded
    good_bytes = (folder / "good0_pruning.pt").read_bytes()
    add("truncated", 2, raw=good_bytes[: len(good_bytes) // 2])
    add("empty", 2, raw=b"")
    add("text", 2, raw=b"this is my model, promise")
    torch.save(constant_model(CAT, target_sparsity=0.6), folder / "wholemodel_pruning.pt")
    expected["wholemodel"] = 2
    torch.save({"model": good, "optimizer": {}}, folder / "checkpoint_pruning.pt")
    expected["checkpoint"] = 2
    torch.save({"fc.weight": CreatesMarkerWhenUnpickled(marker)}, folder / "malicious_pruning.pt")
    expected["malicious"] = 2
    torch.save([1, 2, 3], folder / "alist_pruning.pt")
    expected["alist"] = 2
    with open(folder / "oversized_pruning.pt", "wb") as handle:
        handle.truncate(600 * 2**20)  # sparse file: 600 MiB by its size
    expected["oversized"] = 2
    add("hang", EXIT_TIMEOUT, good)
    return expected


def test_a_folder_of_twenty_submissions_is_graded_safely(tmp_path, cat_only_data):
    folder = tmp_path / "submissions"
    folder.mkdir()
    marker = tmp_path / "marker-created-by-unpickling"
    expected = write_submissions(folder, marker)
    assert len(expected) >= 20

    # One check takes about 3 s here (2-core Xeon, alone), so 20 s leaves room on a slower machine
    # while the hang costs 20 s, not a minute; three workers grade the rest beside it.
    timeout = 20
    started = time.perf_counter()
    rows = grade_folder(folder, "pruning", jobs=3, timeout=timeout, progress=False,
                        check_arguments=["--data", str(cat_only_data), "--device", "cpu"],
                        checks_dir=hanging_checks_dir(tmp_path, "check_pruning.py"))
    elapsed = time.perf_counter() - started

    assert {row["id"]: row["exit_code"] for row in rows} == expected
    assert [row["id"] for row in rows] == sorted(expected)
    assert not marker.exists()
    by_id = {row["id"]: row for row in rows}
    assert "Congratulations" in by_id["good0"]["message"]
    assert "prune.remove" in by_id["preremove"]["message"]
    assert "which is too low" in by_id["lowaccuracy"]["message"]
    assert by_id["hang"]["status"] == "timeout"
    # Everything but the hang runs in parallel with it: the whole folder stays within a small
    # multiple of the per-file timeout, not 21 of them.
    assert elapsed < 4 * timeout, f"grading took {elapsed:.0f} s"
    print(f"graded {len(rows)} submissions in {elapsed:.1f} s")
