"""Breaks CUDA in every Python process started with this folder on PYTHONPATH and
LABKIT_TEST_BROKEN_CUDA=<torch's error message> (tests.cuda_faults.broken_cuda_environment): the checks a
batch grader starts then meet a GPU that fails at first use. Without the variable it does nothing."""
import os

if os.environ.get("LABKIT_TEST_BROKEN_CUDA"):
    from tests.cuda_faults import break_cuda_in_this_process
    break_cuda_in_this_process(os.environ["LABKIT_TEST_BROKEN_CUDA"])
