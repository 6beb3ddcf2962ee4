"""Helpers shared by several test files (import: ``from tests.helpers import ...``)."""


def old_labkit_names(state: dict) -> dict:
    """The same tensors under labkit 0.1's first names (input_scale, conv1.weight, downsample.*)."""
    old = {}
    for key, value in state.items():
        key = key.replace("quant.output_", "input_").replace("downsample.0.", "downsample.")
        old[key.replace(".weight_int8", ".weight")] = value
    return old
