"""The grading policy (course.yaml) and the points per goal: expected values from the course's tiers by hand."""
from __future__ import annotations

import pytest

from labkit.grading.policy import PolicyError, days_late, graded_before, load_policy, parse_time, policy_from_dict
from labkit.grading.tasks import GRADED_GOALS, TASKS, score_for


def goal(task: str, key: str):
    return next(g for g in GRADED_GOALS[task] if g.key == key)


def test_every_task_has_a_loads_goal_per_file_and_100_points_by_default():
    policy = load_policy()
    for task_name, task in TASKS.items():
        assert sum(policy.points_for(task_name).values()) == 100.0
        loads = [g.artifact for g in GRADED_GOALS[task_name] if g.metric is None]
        assert loads == list(task.artifacts)


@pytest.mark.parametrize("dice, earned, met", [
    (0.95, 50.0, True), (0.90, 50.0, True),      # >= 0.90: full marks
    (0.8999, 40.0, False), (0.85, 40.0, False),  # >= 0.85: 80 % of 50
    (0.8499, 30.0, False), (0.80, 30.0, False),  # >= 0.80: 60 % of 50
    (0.7999, 0.0, False),
])
def test_dice_earns_the_courses_tiers(dice, earned, met):
    assert score_for(goal("segmentation", "unet_dice"), {"dice": dice}, graded=True) == (earned, met)


@pytest.mark.parametrize("metrics, accuracy, sparsity", [
    ({"accuracy": 90.0, "sparsity": 50.0}, (50.0, True), (50.0, True)),      # ">=": exactly the goal passes
    ({"accuracy": 89.99, "sparsity": 91.66}, (0.0, False), (50.0, True)),
    ({"accuracy": 92.6, "sparsity": 49.99}, (50.0, True), (0.0, False)),
    ({"accuracy": float("nan"), "sparsity": 60.0}, (0.0, False), (50.0, True)),
])
def test_pass_fail_goals_compare_like_the_course(metrics, accuracy, sparsity):
    assert score_for(goal("pruning", "accuracy"), metrics, graded=True) == accuracy
    assert score_for(goal("pruning", "sparsity"), metrics, graded=True) == sparsity


def test_an_ungraded_file_earns_nothing_not_even_for_loading():
    metrics = {"accuracy": 95.0, "sparsity": 95.0}
    assert score_for(goal("pruning", "accuracy"), metrics, graded=False) == (0.0, False)
    assert score_for(goal("pruning", "loads"), metrics, graded=False, points=5) == (0.0, False)
    assert score_for(goal("pruning", "loads"), {}, graded=True, points=5) == (5.0, True)


def test_a_course_yaml_sets_points_tiers_and_a_late_rule(tmp_path):
    path = tmp_path / "course.yaml"
    path.write_text("points:\n  pruning: {loads: 10, accuracy: 45}\n"
                    "dice_tiers: [[0.9, 1.0], [0.7, 0.5]]\n"
                    "late: {penalty_per_day: 0.25, max_days: 2}\nmax_submissions: 5\nsandbox: limits-only\n")
    policy = load_policy(path)
    assert policy.points_for("pruning") == {"loads": 10.0, "accuracy": 45.0, "sparsity": 50.0}
    assert score_for(goal("segmentation", "unet_dice"), {"dice": 0.75}, graded=True,
                     tiers=policy.dice_tiers) == (25.0, False)          # 0.5 x 50
    assert [policy.late_factor(days) for days in (0, 1, 2, 3)] == [1.0, 0.75, 0.5, 0.0]
    assert policy.max_submissions == 5 and policy.sandbox == "limits-only"
    assert policy_from_dict(policy.to_dict()) == policy                 # what autograder.json carries
    assert policy_from_dict(load_policy().to_dict()) == load_policy()


def test_the_late_rule_without_a_limit_stops_at_zero():
    policy = policy_from_dict({"late": {"penalty_per_day": 0.3}})
    assert [policy.late_factor(days) for days in (1, 3, 4)] == [0.7, pytest.approx(0.1), 0.0]


@pytest.mark.parametrize("text, where", [
    ("grace: 2\n", "unknown key 'grace'"),
    ("points: {pruning: {acuracy: 50}}\n", "points.pruning: unknown key 'acuracy'"),
    ("points: {prunning: {accuracy: 50}}\n", "points: unknown key 'prunning'"),
    ("points: {pruning: {accuracy: -5}}\n", "points.pruning.accuracy: -5 must be at least 0"),
    ("late: {penalty_per_day: 1.5}\n", "late.penalty_per_day: 1.5 must be between 0 and 1"),
    ("late: {max_days: 1.5}\n", "late.max_days: expected a whole number"),
    ("dice_tiers: [[0.8, 0.6], [0.9, 1.0]]\n", "dice_tiers: list the tiers from the highest Dice down"),
    ("dice_tiers: [[0.9]]\n", "dice_tiers[0]: expected [Dice at least, fraction of the points]"),
    ("visibility: students\n", "visibility: 'students' is not one of"),
    ("memory: lots\n", "memory: memory must look like 4G"),
    ("max_submissions: 0\n", "max_submissions: 0 must be at least 1"),
    ("timeout_s: 30\n", "timeout_s: 30 must be at least 60"),       # the checks stop 30 s before it
    ("[1, 2]\n", "expected a mapping, got list"),
])
def test_a_bad_course_yaml_names_the_key(tmp_path, text, where):
    path = tmp_path / "course.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as error:
        load_policy(path)
    assert where in str(error.value) and str(path) in str(error.value)


@pytest.mark.parametrize("submitted, days", [
    ("2026-03-01T23:59:00-08:00", 0),            # at the due time
    ("2026-03-01T12:00:00-08:00", 0),            # early
    ("2026-03-01T23:59:01-08:00", 1),            # one second late: a started day
    ("2026-03-02T23:59:00-08:00", 1),            # exactly 24 h late
    ("2026-03-02T23:59:00.5-08:00", 2),
    ("2026-03-02T07:59:01Z", 1),                 # other time zone, 1 s late
])
def test_days_late_counts_started_days_in_any_time_zone(submitted, days):
    assert days_late(submitted, "2026-03-01T23:59:00.000000-08:00") == days


def test_gradescope_times_and_previous_submissions_are_read():
    assert parse_time("2018-07-01T14:22:32.365935-07:00").utcoffset().total_seconds() == -7 * 3600
    assert days_late("2026-03-05T00:00:00Z", None) == 0
    metadata = {"previous_submissions": [{"score": 1.0}, {"score": 0.0, "autograder_error": True},
                                         {"score": 2.0, "autograder_error": False}]}
    assert graded_before(metadata) == 2 and graded_before({}) == 0
