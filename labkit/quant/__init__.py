"""Quantization: FX post-training (fx), hand-made post-training (manual), quantization-aware training (qat)."""
