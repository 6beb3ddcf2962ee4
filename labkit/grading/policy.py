"""A course's grading policy: points per goal, the Dice tiers, a late rule, a submission limit.

Every key of ``course.yaml`` is optional; what is left out is the course's default
(``labkit.grading.tasks``: ``GRADED_GOALS`` points, ``DICE_TIERS``)::

    points:                        # per task, per goal key (see GRADED_GOALS)
      pruning: {accuracy: 60, sparsity: 40}
    dice_tiers: [[0.90, 1.0], [0.85, 0.8], [0.80, 0.6]]   # [Dice at least, fraction of the points]
    late: {penalty_per_day: 0.1, max_days: 3}   # -10 % per started day late; nothing after 3 days
    max_submissions: 10            # graded submissions per student; later ones keep the last score
    timeout_s: 600                 # the whole run: Gradescope's autograder timeout (its default, 10 min)
    memory: 6G                     # each check's address-space cap (default: the checks' own, limits.py)
    sandbox: bubblewrap            # a student's network.py runs only under bubblewrap (or: limits-only)
    visibility: visible            # the tests' Gradescope visibility

A wrong key or value raises :class:`PolicyError` naming it (``late.penalty_per_day``). The batch
grader and the Gradescope autograder read the same policy, so a student's points do not depend on
where the file was graded.

Example:
    >>> policy = policy_from_dict({"points": {"pruning": {"accuracy": 60}}, "late": {"penalty_per_day": 0.1}})
    >>> policy.points_for("pruning")
    {'loads': 0.0, 'accuracy': 60.0, 'sparsity': 50.0}
    >>> days_late("2026-03-02T00:30:00+00:00", "2026-03-01T23:59:00+00:00"), policy.late_factor(1)
    (1, 0.9)
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from labkit.grading.tasks import DICE_TIERS, GRADED_GOALS

VISIBILITIES = ("visible", "after_due_date", "after_published", "hidden")  # Gradescope's words
SANDBOX_MODES = ("bubblewrap", "limits-only")
# Checks stop this long before timeout_s: the run then ends in an autograder error (no score) instead of
# Gradescope's own timeout, which records 0 points.
STOP_EARLY_S = 30.0
KEYS = ("points", "dice_tiers", "late", "max_submissions", "timeout_s", "memory", "sandbox", "visibility")


class PolicyError(ValueError):
    """A course.yaml that cannot be used; the message names the key."""


@dataclass(frozen=True)
class LateRule:
    """``penalty_per_day`` of the points per started day late, for at most ``max_days`` days (then 0)."""
    penalty_per_day: float = 0.0
    max_days: int | None = None


@dataclass(frozen=True)
class Policy:
    points: dict = field(default_factory=dict)     # {task: {goal key: points}}, only what differs
    dice_tiers: tuple = DICE_TIERS
    late: LateRule = LateRule()
    max_submissions: int | None = None
    timeout_s: float = 600.0                       # the run's; checks stop STOP_EARLY_S before it
    memory: str | None = None                      # None: the checks' default cap
    sandbox: str = "bubblewrap"
    visibility: str = "visible"

    def points_for(self, task: str) -> dict:
        """``{goal key: points}`` of every goal of ``task``, course.yaml's value where it gives one."""
        given = self.points.get(task, {})
        return {goal.key: float(given.get(goal.key, goal.points)) for goal in GRADED_GOALS[task]}

    def late_factor(self, days: int) -> float:
        """The fraction of the points kept ``days`` (started) days after the due date."""
        if days <= 0:
            return 1.0
        if self.late.max_days is not None and days > self.late.max_days:
            return 0.0
        return round(max(0.0, 1.0 - self.late.penalty_per_day * days), 10)

    def to_dict(self) -> dict:
        """Plain JSON types; :func:`policy_from_dict` reads it back."""
        data = asdict(self)
        data["dice_tiers"] = [[threshold, credit] for threshold, credit, _ in self.dice_tiers]
        return data


def _number(value, where: str, *, low: float | None = None, high: float | None = None, integer=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and value != int(value)):
        raise PolicyError(f"{where}: expected {'a whole number' if integer else 'a number'}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise PolicyError(f"{where}: {value!r} must be {bounds}")
    return int(value) if integer else float(value)


def _mapping(value, where: str, known) -> dict:
    if not isinstance(value, dict):
        raise PolicyError(f"{where}: expected a mapping, got {type(value).__name__}")
    for key in value:
        if key not in known:
            raise PolicyError(f"{where}: unknown key {key!r}; known keys: {', '.join(map(str, known))}")
    return value


def _tiers(value, where: str) -> tuple:
    if not isinstance(value, list) or not value:
        raise PolicyError(f"{where}: expected a list of [Dice at least, fraction], e.g. [[0.9, 1.0], [0.85, 0.8]]")
    tiers = []
    for index, tier in enumerate(value):
        if not isinstance(tier, list) or len(tier) != 2:
            raise PolicyError(f"{where}[{index}]: expected [Dice at least, fraction of the points], got {tier!r}")
        threshold = _number(tier[0], f"{where}[{index}][0]", low=0, high=1)
        credit = _number(tier[1], f"{where}[{index}][1]", low=0, high=1)
        tiers.append((threshold, credit, f"{credit:.0%} of the marks"))
    if [t[0] for t in tiers] != sorted((t[0] for t in tiers), reverse=True):
        raise PolicyError(f"{where}: list the tiers from the highest Dice down")
    if [t[:2] for t in tiers] == [t[:2] for t in DICE_TIERS]:
        return DICE_TIERS  # the course's own, with its names ("full marks")
    return tuple(tiers)


def policy_from_dict(data: dict | None, *, source: str = "course.yaml") -> Policy:
    """Check every key of a parsed course.yaml and build the :class:`Policy`."""
    data = _mapping(data if data is not None else {}, source, KEYS)
    kwargs = {}
    if "points" in data:
        points = {}
        for task, goals in _mapping(data["points"], f"{source}: points", list(GRADED_GOALS)).items():
            keys = [goal.key for goal in GRADED_GOALS[task]]
            points[task] = {key: _number(value, f"{source}: points.{task}.{key}", low=0)
                            for key, value in _mapping(goals, f"{source}: points.{task}", keys).items()}
        kwargs["points"] = points
    if "dice_tiers" in data:
        kwargs["dice_tiers"] = _tiers(data["dice_tiers"], f"{source}: dice_tiers")
    if "late" in data:
        late = _mapping(data["late"], f"{source}: late", ("penalty_per_day", "max_days"))
        kwargs["late"] = LateRule(
            _number(late.get("penalty_per_day", 0.0), f"{source}: late.penalty_per_day", low=0, high=1),
            None if late.get("max_days") is None else _number(late["max_days"], f"{source}: late.max_days",
                                                              low=0, integer=True))
    if data.get("max_submissions") is not None:
        kwargs["max_submissions"] = _number(data["max_submissions"], f"{source}: max_submissions", low=1, integer=True)
    if "timeout_s" in data:
        kwargs["timeout_s"] = _number(data["timeout_s"], f"{source}: timeout_s", low=2 * STOP_EARLY_S)
    if data.get("memory") is not None:
        from labkit.grading.limits import parse_memory
        try:
            parse_memory(str(data["memory"]))
        except ValueError as error:
            raise PolicyError(f"{source}: memory: {error}") from None
        kwargs["memory"] = str(data["memory"])
    for key, allowed in (("sandbox", SANDBOX_MODES), ("visibility", VISIBILITIES)):
        if key in data:
            if data[key] not in allowed:
                raise PolicyError(f"{source}: {key}: {data[key]!r} is not one of {', '.join(allowed)}")
            kwargs[key] = data[key]
    return Policy(**kwargs)


def load_policy(path: str | Path | None = None) -> Policy:
    """The policy in the YAML file ``path``; the course's defaults when ``path`` is None.

    Example:
        >>> load_policy().points_for("quantization")
        {'loads': 0.0, 'accuracy': 100.0}
    """
    if path is None:
        return Policy()
    import yaml
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise PolicyError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    return policy_from_dict(data, source=str(path))


# ----------------------------------------------------------------------------- Gradescope's submission metadata

def parse_time(text: str) -> datetime:
    """An ISO 8601 time as Gradescope writes it (``2018-07-01T14:22:32.365935-07:00``), any digits of seconds.

    Example:
        >>> parse_time("2026-03-01T23:59:00.1Z").isoformat()
        '2026-03-01T23:59:00.100000+00:00'
    """
    text = str(text).strip().replace("Z", "+00:00")
    text = re.sub(r"\.(\d+)", lambda m: "." + (m.group(1) + "000000")[:6], text)  # Python 3.10 wants 6 digits
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no time zone")
    return moment


def days_late(submitted: str, due: str | None) -> int:
    """Started days between the due date and the submission (0 when on time or there is no due date)."""
    if not due:
        return 0
    seconds = (parse_time(submitted) - parse_time(due)).total_seconds()
    return max(0, math.ceil(seconds / 86400))


def graded_before(metadata: dict) -> int:
    """Previous submissions that were graded (an autograder failure is not the student's, so it is not counted)."""
    return sum(1 for previous in metadata.get("previous_submissions") or []
               if not previous.get("autograder_error"))
