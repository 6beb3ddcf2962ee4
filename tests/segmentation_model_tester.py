"""What every labkit segmentation model must do, tested once (as segmentation_models_pytorch's
``tests/models/base.py``): each model's test file subclasses :class:`SegmentationModelTester`, fills in
``make_model`` and its sizes, and keeps only the tests of what is its own.

The shared behaviours, each run for every subclass:

- ``test_logits_have_the_input_size``: a batch of ONE image gives ``(1, classes, H, W)`` logits for
  every size in ``sizes`` (odd ones included: they are handled, not refused) and every configuration
  in ``configs``;
- ``test_multiclass_logits_feed_cross_entropy``: built with ``classes=8``, a batch of two gives
  ``(2, 8, H, W)`` and a finite ``CrossEntropyLoss``;
- ``test_every_parameter_receives_a_finite_gradient``: train mode, a real loss, every parameter's
  ``.grad`` set and finite;
- ``test_eval_mode_is_deterministic``: two forwards in eval mode give equal outputs and change nothing;
- ``test_state_dict_round_trip_with_weights_only``: ``torch.save`` of the ``state_dict``, loaded with
  ``weights_only=True`` and ``strict=True`` into a model built (from another seed) with the same
  arguments: the same keys in the same order, identical outputs;
- ``test_wrong_channel_count_names_the_expected_shape`` / ``test_channels_last_input_gets_a_permute_hint``:
  the input check's messages name the fix;
- ``test_input_below_the_minimum_size_is_refused``: ``H < min_size`` is refused naming the minimum;
  ``min_size`` itself works.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn


class SegmentationModelTester:
    """Subclass as ``class TestUNet(SegmentationModelTester)`` and set what differs per model."""

    in_channels = 3
    classes = 1                                   # output channels of make_model()
    sizes: tuple[tuple[int, int], ...] = ((64, 64),)
    configs: tuple[dict, ...] = ({},)             # make_model kwargs the size test runs for each size
    gradient_kwargs: dict = {}                    # make_model kwargs of the gradient test
    gradient_input = (2, 64, 64)                  # (N, H, W) of the gradient test
    multiclass_input = (2, 64, 128)               # (N, H, W) of the 8-class test
    min_size = 32                                 # smallest H, W the default make_model() accepts

    def make_model(self, seed: int = 0, **kwargs) -> nn.Module:
        """A small model of this kind, its weights drawn from ``seed``, in eval mode; ``kwargs`` override
        its default arguments."""
        raise NotImplementedError

    def pytest_generate_tests(self, metafunc):
        if "size" in metafunc.fixturenames:
            metafunc.parametrize("size", self.sizes, ids=[f"{h}x{w}" for h, w in self.sizes])
        if "config" in metafunc.fixturenames:
            metafunc.parametrize("config", self.configs,
                                 ids=[",".join(f"{k}={v}" for k, v in c.items()) or "default" for c in self.configs])

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls) -> nn.Module:
        """``make_model()``, built once per class (the tests that use it do not change it)."""
        return cls().make_model()

    def images(self, batch: int, height: int, width: int, *, seed: int = 0) -> torch.Tensor:
        return torch.randn(batch, self.in_channels, height, width, generator=torch.Generator().manual_seed(seed))

    # ------------------------------------------------------------------------- shapes
    def test_logits_have_the_input_size(self, size, config):
        model = self.make_model(**config)
        with torch.no_grad():
            logits = model(self.images(1, *size))
        assert logits.shape == (1, config.get("classes", self.classes), *size)

    def test_multiclass_logits_feed_cross_entropy(self):
        batch, height, width = self.multiclass_input
        with torch.no_grad():
            logits = self.make_model(classes=8)(self.images(batch, height, width))
        assert logits.shape == (batch, 8, height, width)
        loss = nn.CrossEntropyLoss()(logits, torch.randint(0, 8, (batch, height, width)))
        assert torch.isfinite(loss)

    # ------------------------------------------------------------------------- training and inference
    def test_every_parameter_receives_a_finite_gradient(self):
        model = self.make_model(**self.gradient_kwargs).train()
        batch, height, width = self.gradient_input
        logits = model(self.images(batch, height, width))
        classes = logits.shape[1]
        if classes == 1:
            loss = F.binary_cross_entropy_with_logits(logits, (torch.rand_like(logits) > 0.5).float())
        else:
            loss = F.cross_entropy(logits, torch.randint(0, classes, (batch, height, width)))
        loss.backward()
        missing = [name for name, p in model.named_parameters() if p.grad is None]
        assert missing == []
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())

    def test_eval_mode_is_deterministic(self, model):
        before = {key: value.clone() for key, value in model.state_dict().items()}
        x = self.images(2, self.min_size * 2, self.min_size * 2)
        with torch.no_grad():
            assert torch.equal(model(x), model(x))
        assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())

    def test_state_dict_round_trip_with_weights_only(self, model, tmp_path):
        path = tmp_path / "model.pth"
        torch.save(model.state_dict(), path)
        fresh = self.make_model(seed=1)                            # other weights than `model`
        assert list(fresh.state_dict()) == list(model.state_dict())
        x = self.images(1, self.min_size + 16, self.min_size + 8, seed=1)
        with torch.no_grad():
            assert not torch.equal(model(x), fresh(x))
            fresh.load_state_dict(torch.load(path, weights_only=True), strict=True)
            assert torch.equal(model(x), fresh.eval()(x))

    # ------------------------------------------------------------------------- the input check
    def test_wrong_channel_count_names_the_expected_shape(self, model):
        c = self.in_channels
        with pytest.raises(ValueError, match=rf"expected \(N, {c}, H, W\) input, got \(2, 1, 64, 64\)"):
            model(torch.randn(2, 1, 64, 64))
        with pytest.raises(ValueError, match=rf"expected \(N, {c}, H, W\) input, got \(1, {c + 1}, 64, 64\)"):
            model(torch.randn(1, c + 1, 64, 64))

    def test_channels_last_input_gets_a_permute_hint(self, model):
        with pytest.raises(ValueError, match="permute"):
            model(torch.randn(2, 64, 64, self.in_channels))

    def test_input_below_the_minimum_size_is_refused(self, model):
        with pytest.raises(ValueError, match=rf"H, W >= {self.min_size}"):
            model(self.images(1, self.min_size // 2, 64))
        with torch.no_grad():
            assert model(self.images(1, self.min_size, self.min_size)).shape[-2:] == (self.min_size, self.min_size)
