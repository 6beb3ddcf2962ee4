"""Pruning (Lab 03): unstructured by weight magnitude (magnitude: the lab's TODO file), gradually with
distillation (gradual), whole channels (channels), and the distillation loss and fine-tuning step the
last two share (distill)."""
