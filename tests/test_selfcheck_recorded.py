"""The self-checks' recorded values are the solution's: recording again from this kit gives the same data.

When a TODO's solution or a case changes, ``python -m labkit record-selfcheck`` must be run; this
test fails until it has. It also proves the recorded mistakes differ from the answer (else a
mistake could never be told apart) and that nothing in the data needs pickle.
"""
import json

import numpy as np
import pytest
import torch

from labkit.selfcheck.recorded import RECORDED_DIR, load_case
from labkit.tools.record_selfcheck import all_cases, course_layouts

RECORDED_NOW = all_cases()


@pytest.mark.parametrize("name", sorted(RECORDED_NOW))
def test_the_recorded_case_is_what_the_solution_gives_today(name):
    stored, now = load_case(name), RECORDED_NOW[name]
    for part in ("inputs", "state", "expected", "mistakes"):
        assert sorted(getattr(stored, part)) == sorted(getattr(now, part)), (name, part)
    for key, value in now.expected.items():
        assert torch.allclose(stored.expected[key].double(), torch.as_tensor(value).double(), atol=1e-6), (name, key)
    for key, value in now.inputs.items():
        assert torch.equal(stored.inputs[key], torch.as_tensor(value)), (name, key)


@pytest.mark.parametrize("name", sorted(RECORDED_NOW))
def test_each_recorded_mistake_differs_from_the_answer(name):
    case = load_case(name)
    for mistake, outputs in case.mistakes.items():
        if mistake == "local":  # per-layer counts, compared as counts
            continue
        assert any((value.double() - case.expected[key].double()).abs().max() > 1e-4 for key, value in outputs.items()), \
            (name, mistake)


def test_the_course_layouts_are_the_models_the_checks_build_today():
    assert json.loads((RECORDED_DIR / "layouts.json").read_text()) == json.loads(json.dumps(course_layouts()))


def test_every_recorded_file_loads_without_pickle():
    for path in sorted(RECORDED_DIR.glob("*.npz")):
        with np.load(path, allow_pickle=False) as archive:
            assert all(archive[key].dtype != object for key in archive.files), path
