"""environment.yml (conda users), pyproject.toml (ranges) and constraints.txt (pins) must agree.

conda cannot be reached here, so this test is what keeps the conda file honest.
"""
import re
import tomllib

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from labkit.paths import REPO_ROOT


def pyproject_requirements() -> dict:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["dev"]
    return {canonicalize_name(Requirement(line).name): Requirement(line) for line in requirements}


def pins(lines) -> dict:
    found = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if match := re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line):
            found[canonicalize_name(match[1])] = match[2]
    return found


def test_conda_pip_section_pins_exactly_the_constraints():
    environment = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict))
    constraints = pins((REPO_ROOT / "constraints.txt").read_text().splitlines())
    assert pins(pip_section) == constraints
    assert "-e ." in pip_section


def test_every_declared_dependency_is_pinned_within_its_range():
    constraints = pins((REPO_ROOT / "constraints.txt").read_text().splitlines())
    for name, requirement in pyproject_requirements().items():
        assert name in constraints, f"{name} is in pyproject.toml but not pinned in constraints.txt"
        assert requirement.specifier.contains(constraints[name]), \
            f"{name}=={constraints[name]} is outside pyproject's range {requirement.specifier}"


def test_constraints_pin_the_course_torch_pair():
    constraints = pins((REPO_ROOT / "constraints.txt").read_text().splitlines())
    assert constraints["torch"] == "2.14.1" and constraints["torchvision"] == "0.29.1"
