"""The checks' exit codes and the grading machine's exception: the floor beneath ``contract`` and ``limits``.

Exit codes (design.md, checks contract); every check, the batch grader and the hand-in tool read them:

    ``EXIT_PASSED`` 0       the submission was evaluated and achieves every goal;
    ``EXIT_BELOW_GOAL`` 1   it was evaluated, and a metric is below its goal (still a valid hand-in);
    ``EXIT_INVALID`` 2      invalid submission: it cannot be read, is refused (a pickled object, a
                            memory bomb), has wrong keys/shapes, NaN weights, or a student's
                            network.py fails; raised as ``labkit.io.SubmissionError`` or its
                            ``labkit.torch_file.FileRefused`` (core: io raises them, so they live
                            there), the message is for the student;
    ``EXIT_ENVIRONMENT`` 3  the grading machine's fault, not the student's: dataset missing or
                            unreadable, out of memory under the cap, a device that fails, a sandbox
                            that cannot start; raised as :class:`EnvironmentProblem` (or
                            ``DatasetNotFoundError``, ``DeviceUnusable``), the message is for the TA.

``labkit.grading.contract`` re-exports the codes (``from labkit.grading.contract import EXIT_INVALID``
keeps working); ``limits`` re-exports :class:`EnvironmentProblem`.

Example:
    >>> EXIT_PASSED, EXIT_BELOW_GOAL, EXIT_INVALID, EXIT_ENVIRONMENT
    (0, 1, 2, 3)
"""
from __future__ import annotations

EXIT_PASSED, EXIT_BELOW_GOAL, EXIT_INVALID, EXIT_ENVIRONMENT = 0, 1, 2, 3


class EnvironmentProblem(RuntimeError):
    """The grading machine, not the student, has a problem (exit 3); the message is for the TA."""
    exit_code = EXIT_ENVIRONMENT
