"""Grading: the check contract, the one table of course tasks, the batch grader, running a check.

Layer 2 of labkit (core <- grading <- tools): modules here may import labkit's core (data, models,
evaluate, io, profile, ...) but never ``labkit.tools``; core never imports from here. Import the
module you need, e.g. ``from labkit.grading.contract import CheckResult``; this file stays empty of
imports so ``import labkit.grading`` is instant.
"""
