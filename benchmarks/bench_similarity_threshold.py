"""Measure the figures behind ``labkit.grading.similarity``'s thresholds on the real ResNet-20.

    .venv/bin/python benchmarks/bench_similarity_threshold.py [--steps 60] [--data ../shared/data/cifar10-real]

Two "honest" students start from the shared reference (``../shared/models/resnet20_cifar10_45k.pt``)
and fine-tune it on different shuffles of the real CIFAR-10 images (``--split``) (SGD momentum 0.9, lr 0.01,
batch 32, ``--steps`` steps each); two more prune it with labkit's ``prune_to`` to 50 %, fine-tune
(``--steps``/2), prune to 90 %, fine-tune again (the lab's iterative recipe, masks on). A "copy" is one student's file plus gaussian noise of std
1e-3 x each tensor's std (zeros kept zero for the pruned copy, so its mask survives). Prints the
cosine of the differences from the reference (what ``find_similar`` uses) and of the raw weights,
and the Jaccard of the pruned students' zero masks. CPU only .
"""
from __future__ import annotations

import argparse
import copy
import platform
import time

import torch

from labkit.data.cifar10 import load_split, normalize
from labkit.grading.similarity import _float_tensors, _zero_mask
from labkit.models.resnet20 import resnet20
from labkit.paths import REPO_ROOT
from labkit.prune import magnitude


def fine_tune(model, images, labels, *, steps, seed, batch=32, lr=0.01):
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    model.train()
    for _ in range(steps):
        index = torch.randint(0, len(images), (batch,), generator=generator)
        x = normalize(images[index])
        if torch.rand((), generator=generator) < 0.5:
            x = x.flip(-1)
        loss = torch.nn.functional.cross_entropy(model(x), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def noisy_copy(state, *, relative_std=1e-3, seed=99):
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in state.items():
        if value.is_floating_point():
            noise = torch.randn(value.shape, generator=generator) * relative_std * value.std().clamp_min(1e-12)
            value = torch.where(value == 0, value, value + noise)
        out[key] = value
    return out


def cosine(a, b, reference=None):
    va, vb = (torch.cat([t.flatten() for _, t in _float_tensors(s, reference)]) for s in (a, b))
    return float(torch.nn.functional.cosine_similarity(va.double(), vb.double(), dim=0))


def jaccard(a, b):
    ma, mb = _zero_mask(a), _zero_mask(b)
    return float((ma & mb).sum() / (ma | mb).sum())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--split", default="test", help="which folder of --data to fine-tune on (test: 5,000 PNGs decode fast; weights only, no accuracy is measured)")
    parser.add_argument("--data", default=str(REPO_ROOT.parent / "shared" / "data" / "cifar10-real"))
    parser.add_argument("--reference", default=str(REPO_ROOT.parent / "shared" / "models" / "resnet20_cifar10_45k.pt"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    start = time.time()
    reference = torch.load(args.reference, weights_only=True, map_location="cpu")
    images, labels = load_split(args.data, args.split)
    base = resnet20()
    base.load_state_dict(reference)
    honest = [fine_tune(copy.deepcopy(base), images, labels, steps=args.steps, seed=s) for s in (1, 2)]
    pruned = []
    for seed in (3, 4):
        model = copy.deepcopy(base)
        for target in (0.5, 0.9):  # the lab's iterative recipe, two rounds
            magnitude.prune_to(model, target)
            fine_tune(model, images, labels, steps=args.steps // 2, seed=seed * 10 + int(10 * target))
        pruned.append({k: v.detach().clone() for k, v in magnitude.make_permanent(model).state_dict().items()})
    rows = [("fine-tune: honest pair", honest[0], honest[1]), ("fine-tune: copy + noise", honest[0], noisy_copy(honest[0])),
            ("pruned 90%: honest pair", pruned[0], pruned[1]), ("pruned 90%: copy + noise", pruned[0], noisy_copy(pruned[0]))]
    print(f"# {args.steps} SGD steps per student, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"CPU, {time.time() - start:.0f} s")
    for name, state in (("fine-tuned", honest[0]), ("pruned", pruned[0])):
        delta = torch.cat([t.flatten() for _, t in _float_tensors(state, reference)])
        raw = torch.cat([t.flatten() for _, t in _float_tensors(reference)])
        print(f"# {name}: |surviving-weight change| / |reference| = {float(delta.norm() / raw.norm()):.4f}")
    print(f"{'pair':28s} {'delta cosine':>13s} {'raw cosine':>11s} {'mask Jaccard':>13s}")
    for name, a, b in rows:
        mask = f"{jaccard(a, b):.4f}" if "pruned" in name else "-"
        print(f"{name:28s} {cosine(a, b, reference):13.6f} {cosine(a, b):11.6f} {mask:>13s}")


if __name__ == "__main__":
    main()
