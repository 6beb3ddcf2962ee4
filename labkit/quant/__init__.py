"""Quantization: the affine formula (affine), range observers (calibration), hand-made post-training
(manual), FX post-training (fx), quantization-aware training (qat).

Imports point one way inside: affine <- calibration <- manual (the formula knows no observer, the
observers know no model).
"""
