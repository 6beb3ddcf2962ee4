"""Flag likely copies among a class's submitted state_dicts: a lead for a human, never a grade.

Every pair of *different* students who handed in the same artifact (``pruning``, ``quantization``,
``unet``, ``model_task2``, ...) is compared; a pair is reported when one kind of evidence holds:

``identical file``          the same SHA-256 (figure 1.0).
``near-identical weights``  cosine >= ``threshold`` (0.999) of the two files' weights, flattened to one
                            float32 vector over the same keys and shapes (other pairs are not
                            comparable). With ``reference`` (the handed-out ResNet-20 that pruning and
                            quantization start from) the vectors are the *differences* ``w - w_ref``:
                            two fine-tunings of one start share most of their weights (raw cosine
                            ~0.99), but not the direction they moved in.
``identical pruning mask``  (pruning) the zeros of every Conv/Linear weight are the same positions
                            (Jaccard >= ``mask_jaccard``, 0.999: the honest pruned pair above
                            reaches 0.988) at >= 10 % sparsity, and the files differ.

Why 0.999 (``benchmarks/bench_similarity_threshold.py``: the TA's real ResNet-20 ``resnet20_cifar10_45k.pt``,
real CIFAR-10 images, SGD lr 0.01 momentum 0.9, batch 32, 60 steps per student, torch 2.14 CPU, 206 s):

    pair                                              delta cosine   raw cosine   mask Jaccard
    honest, fine-tuned from the reference                 0.577        0.9916          -
    honest, prune_to 50 % -> FT -> 90 % -> FT             0.962        0.9833        0.9881
    copy + gaussian noise, std 1e-3 x the tensor's std    0.99998      1.000000        -
    pruned copy + the same noise (zeros kept)             0.999998     1.000000      1.0000

so 0.999 sits between honest pairs (<= 0.962) and noisy copies (>= 0.99998). The differences from the
reference matter: honest raw cosines are 0.98-0.99 after 60 steps and pass 0.999 after a briefer
fine-tuning (the tests' 2 %-of-std update: raw 0.9996, delta ~0). The limit: noise larger than ~4 % of
a student's own change (1e-3 of the weights against a 14 % change above) hides a copy from 0.999.
Pruned weights (``w == 0``) count 0 in the difference: which weights were zeroed is the mask's evidence.

Masks. One-shot magnitude pruning of the same start at the same sparsity gives *the same mask* to
every honest student, so a mask match alone proves nothing. With ``reference`` the match is not
reported when both masks are (Jaccard >= ``mask_jaccard``) a textbook mask of the reference at that
sparsity: global magnitude, or labkit's ``prune_to`` rule (``conv1``/``fc`` at 30 % each, the rest
global). Without the reference it is reported with that caveat in ``detail``.

INT8 files (the course's hand-quantized ResNet-20: ``weight_int8`` + per-channel ``weight_scale``/
``weight_zero_point``) are dequantized, ``(q - zp) * scale``, plus ``bias_fp32``; torch's quantized
tensors by ``.dequantize()``. The float reference does not apply (INT8 weights have BatchNorm fused
in), and weight quantization is a deterministic function of the start and the scheme: honest
students with the same scheme get *identical* INT8 weights. So an INT8 pair is flagged only when its
activation scales (``*.output_scale``, which depend on the calibration images) also agree within
``qparam_tolerance`` (relative); ``detail`` gives both figures.

Safety and memory. Files are untrusted: each is read only by :func:`~labkit.grading.isolated_load.
safe_load_state_dict` (inspected once, then loaded ``weights_only`` in a memory-capped child); a refused
file gets a ``not compared`` record with the reason. Each file is loaded once, turned into one unit
float32 vector written to a temporary file (4 bytes per weight: 1.1 MB for ResNet-20, 325 MB for 300
students, on disk) and a bit mask (34 KB); cosines come from block matrix products holding at most
two 32 MiB blocks in memory, so RAM stays ~100 MB + one state_dict whatever the class size.

Example:
    >>> import tempfile, torch
    >>> folder = Path(tempfile.mkdtemp())
    >>> torch.manual_seed(0) and None
    >>> torch.save(torch.nn.Linear(20, 20).state_dict(), folder / "a.pt")
    >>> torch.save(torch.nn.Linear(20, 20).state_dict(), folder / "c.pt")
    >>> copy = {k: v + 1e-4 * torch.randn(v.shape) for k, v in torch.load(folder / "a.pt").items()}
    >>> torch.save(copy, folder / "b.pt")
    >>> subs = [("1", "unet", folder / "a.pt"), ("2", "unet", folder / "b.pt"), ("3", "unet", folder / "c.pt")]
    >>> [(p["a_id"], p["b_id"], p["kind"]) for p in find_similar(subs, "segmentation", isolate=False)]
    [('1', '2', 'near-identical weights')]
"""
from __future__ import annotations

import csv
import itertools
import math
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from labkit.download import sha256sum
from labkit.grading.batch import csv_cell
from labkit.grading.exits import EnvironmentProblem
from labkit.grading.isolated_load import safe_load_state_dict
from labkit.grading.limits import DEFAULT_MEMORY_BYTES
from labkit.torch_file import COURSE_INT8_DTYPES, QUANTIZED_DTYPES, FileRefused, Limits, MiB

FIELDS = ("task", "artifact", "a_id", "a_file", "b_id", "b_file", "kind", "figure", "detail")
KINDS = ("identical file", "near-identical weights", "identical pruning mask", "not compared")  # strongest first
MIN_MASK_SPARSITY = 0.10        # below this a zero pattern is mostly natural zeros, not a pruning mask
LIGHT_LAYERS = {"conv1.weight": 0.3, "fc.weight": 0.3}  # labkit.prune.magnitude.DEFAULT_LIGHT_LAYERS, by state-dict key
BLOCK_BYTES = 32 * MiB          # one block of vectors in a matrix product
_SKIPPED_SUFFIXES = ("num_batches_tracked", "zero_point", "output_scale", "weight_scale")


def _float_tensors(state: dict, reference: dict | None = None) -> list[tuple[str, torch.Tensor]]:
    """``(key, float32 tensor)`` of every weight compared, sorted by key; with ``reference``, ``w - w_ref``
    where ``w != 0`` and 0 where the weight was pruned.

    Dequantizes INT8 (``weight_int8`` with its scale/zero point; torch quantized tensors); leaves out
    integer bookkeeping and quantization parameters (``*_scale``, ``*zero_point``).
    """
    out = []
    for key in sorted(state):
        value = state[key]
        if not isinstance(value, torch.Tensor) or key.endswith(_SKIPPED_SUFFIXES):
            continue
        if value.is_quantized:
            value = value.dequantize()
        elif key.endswith(".weight_int8"):
            prefix = key[: -len("weight_int8")]
            value = (value.float() - state[prefix + "weight_zero_point"].float()) * state[prefix + "weight_scale"].float()
        elif not value.is_floating_point():
            continue
        value = value.detach().float()
        if reference is not None:  # how the surviving weights moved; which were zeroed is the mask's evidence
            value = torch.where(value == 0, 0.0, value - reference[key].float())
        out.append((key, value))
    return out


def _zero_mask(state: dict) -> np.ndarray:
    """Zeros of every Conv/Linear weight (4-D and 2-D ``*.weight``), concatenated in key order, as bools."""
    weights = [state[k] for k in sorted(state) if k.endswith(".weight") and state[k].dim() in (2, 4)]
    return torch.cat([w.detach().flatten() == 0 for w in weights]).numpy() if weights else np.zeros(0, bool)


def _magnitude_mask(reference: dict, zeros: int, light: dict) -> np.ndarray:
    """The zero mask of magnitude pruning of ``reference`` to ``zeros`` zeros: layers in ``light`` on their
    own to their fraction, all other Conv/Linear weights ranked together by ``|w|`` (smallest first)."""
    keys = [k for k in sorted(reference) if k.endswith(".weight") and reference[k].dim() in (2, 4)]
    masks = {k: torch.zeros(reference[k].numel(), dtype=torch.bool) for k in keys}
    for key in (k for k in keys if k in light):
        count = math.ceil(light[key] * reference[key].numel())
        masks[key][reference[key].abs().flatten().argsort()[:count]] = True
        zeros -= count
    ranked = [k for k in keys if k not in light]
    flat = torch.cat([reference[k].abs().flatten() for k in ranked])
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    chosen[flat.argsort()[:max(zeros, 0)]] = True
    for key, part in zip(ranked, chosen.split([reference[k].numel() for k in ranked])):
        masks[key] = part
    return torch.cat([masks[k] for k in keys]).numpy()


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def _record(task, artifact, a, b, kind, figure, detail) -> dict:
    return {"task": task, "artifact": artifact, "a_id": a["id"], "a_file": a["file"], "b_id": b["id"] if b else "",
            "b_file": b["file"] if b else "", "kind": kind, "figure": figure, "detail": detail}


def _block_cosines(matrix: np.ndarray, threshold: float):
    """``(i, j, cosine)`` for ``i < j`` with cosine >= threshold, rows of ``matrix`` being unit vectors."""
    block = max(1, BLOCK_BYTES // max(1, matrix.shape[1] * 4))
    for start in range(0, len(matrix), block):
        rows = np.asarray(matrix[start:start + block])
        for other in range(start, len(matrix), block):
            sims = rows @ (rows if other == start else np.asarray(matrix[other:other + block])).T
            for i, j in zip(*np.nonzero(sims >= threshold)):
                if start + i < other + j:
                    yield start + i, other + j, min(float(sims[i, j]), 1.0)


def find_similar(submissions, task: str, *, reference=None, threshold: float = 0.999, mask_jaccard: float = 0.999,
                 qparam_tolerance: float = 1e-3, memory_bytes: int = DEFAULT_MEMORY_BYTES,
                 isolate: bool = True) -> list[dict]:
    """Pairs of different students' files of one artifact that look copied, strongest evidence first.

    Args:
        submissions: ``(student_id, artifact, path)`` triples; only files of the same artifact and of
            different students are paired.
        task: the task name written into every record (``"pruning"``, ...).
        reference: the state_dict file everyone started from (pruning, quantization), or None.
        threshold: cosine from which weights count as near-identical (see the module docstring).
        mask_jaccard: Jaccard of the zero positions from which two pruning masks count as identical.
        qparam_tolerance: INT8 only: the largest relative difference of activation scales of a copy.
        memory_bytes, isolate: passed to ``safe_load_state_dict`` (isolate=False: load in this process).

    Returns records ``{task, artifact, a_id, a_file, b_id, b_file, kind, figure, detail}``; a file that
    could not be read gets ``kind="not compared"`` (``b_*`` empty, the reason in ``detail``).
    """
    limits = Limits(allowed_dtypes=tuple(dict.fromkeys(QUANTIZED_DTYPES + COURSE_INT8_DTYPES)))
    ref = safe_load_state_dict(reference, limits, memory_bytes=memory_bytes, isolate=isolate) if reference else None
    files = [{"id": str(sid), "artifact": art, "path": Path(p), "file": Path(p).name} for sid, art, p in submissions]
    records, groups, textbook = [], {}, {}
    with tempfile.TemporaryDirectory(prefix="labkit-similarity-") as scratch:
        for index, f in enumerate(files):
            try:
                f["sha"] = sha256sum(f["path"])
                state = safe_load_state_dict(f["path"], limits, memory_bytes=memory_bytes, isolate=isolate)
            except (OSError, FileRefused, EnvironmentProblem) as error:
                records.append(_record(task, f["artifact"], f, None, "not compared", None, f"not compared: {error}"))
                continue
            tensors = _float_tensors(state)
            signature = tuple((k, tuple(t.shape)) for k, t in tensors)
            use_ref = ref is not None and all(k in ref and ref[k].shape == t.shape and ref[k].is_floating_point()
                                              for k, t in tensors)
            if use_ref:
                tensors = _float_tensors(state, ref)
            vector = torch.cat([t.flatten() for _, t in tensors]) if tensors else torch.zeros(0)
            norm = float(vector.double().norm())
            if norm == 0:
                why = "its non-zero weights equal the reference's" if use_ref else "it holds no non-zero float weights"
                records.append(_record(task, f["artifact"], f, None, "not compared", None, f"not compared: {why}"))
                continue
            f["int8"] = any(k.endswith(".weight_int8") for k in state) or any(t.is_quantized for t in state.values()
                                                                             if isinstance(t, torch.Tensor))
            f["qparams"] = torch.stack([state[k].float().flatten()[0] for k in sorted(state) if k.endswith("output_scale")]
                                       ).numpy() if any(k.endswith("output_scale") for k in state) else np.zeros(0)
            f["mask"] = _zero_mask(state)
            f["reference_used"] = use_ref
            group = groups.setdefault((f["artifact"], signature, use_ref), [])
            with open(Path(scratch) / f"group{list(groups).index((f['artifact'], signature, use_ref))}.f32", "ab") as out:
                out.write((vector / norm).numpy().astype(np.float32).tobytes())
            group.append(index)
            del state, tensors, vector

        by_sha = defaultdict(list)
        for f in files:
            if "sha" in f:
                by_sha[(f["artifact"], f["sha"])].append(f)
        for (artifact, sha), same in by_sha.items():
            for a, b in itertools.combinations(same, 2):
                if a["id"] != b["id"]:
                    records.append(_record(task, artifact, a, b, "identical file", 1.0, f"same SHA-256 {sha[:16]}…"))

        for number, ((artifact, signature, use_ref), members) in enumerate(groups.items()):
            name = Path(scratch) / f"group{number}.f32"
            matrix = np.memmap(name, dtype=np.float32, mode="r").reshape(len(members), -1)
            against = "differences from the reference" if use_ref else "raw weights (no reference applies)"
            for i, j, cosine in _block_cosines(matrix, threshold):
                a, b = files[members[i]], files[members[j]]
                if a["id"] == b["id"] or a["sha"] == b["sha"]:
                    continue
                detail = f"cosine {cosine:.6f} of the {against} over {matrix.shape[1]:,} weights (threshold {threshold})"
                if a["int8"] or b["int8"]:
                    qa, qb = a["qparams"], b["qparams"]
                    if qa.shape != qb.shape or qa.size == 0:
                        continue
                    spread = float(np.max(np.abs(qa - qb) / np.maximum(np.abs(qa), 1e-12)))
                    if spread > qparam_tolerance:
                        continue  # same weights, other calibration: what one quantization scheme gives everyone
                    detail += (f"; INT8: activation scales agree within {spread:.1e} (tolerance {qparam_tolerance}); "
                               "identical INT8 weights alone are expected from one scheme")
                records.append(_record(task, artifact, a, b, "near-identical weights", round(cosine, 6), detail))
            del matrix
            records += _mask_pairs(task, artifact, [files[m] for m in members], ref if use_ref else None,
                                   mask_jaccard, textbook)
    return sorted(records, key=lambda r: (KINDS.index(r["kind"]), -(r["figure"] or 0), r["a_id"], r["b_id"]))


def _mask_pairs(task, artifact, members, ref, mask_jaccard, textbook) -> list[dict]:
    """``identical pruning mask`` records among one comparable group (see the module docstring)."""
    if artifact != "pruning":
        return []
    candidates = sorted((f for f in members if f["mask"].size and f["mask"].mean() >= MIN_MASK_SPARSITY),
                        key=lambda f: int(f["mask"].sum()))
    out = []
    for i, a in enumerate(candidates):
        for b in candidates[i + 1:]:
            if b["mask"].sum() * mask_jaccard > a["mask"].sum():
                break  # sorted by zero count: a Jaccard >= mask_jaccard needs counts within that ratio
            if a["id"] == b["id"] or a["sha"] == b["sha"]:
                continue
            figure = _jaccard(a["mask"], b["mask"])
            if figure < mask_jaccard:
                continue
            sparsity = f"{100 * a['mask'].mean():.2f}% / {100 * b['mask'].mean():.2f}% sparsity"
            if ref is None:
                detail = (f"zero masks match (Jaccard {figure:.4f}) at {sparsity}; weak evidence: without the reference "
                          "it is unknown whether this is the mask magnitude pruning of the shared start gives everyone")
            else:
                names = []
                for name, light in (("global magnitude", {}), ("labkit prune_to", LIGHT_LAYERS)):
                    for f in (a, b):
                        key = (name, int(f["mask"].sum()))
                        if key not in textbook:
                            textbook[key] = _magnitude_mask(ref, key[1], light)
                    if all(_jaccard(f["mask"], textbook[(name, int(f["mask"].sum()))]) >= mask_jaccard for f in (a, b)):
                        names.append(name)
                if names:
                    continue  # both are the textbook mask of the shared start: expected from honest students
                detail = (f"zero masks match (Jaccard {figure:.4f}) at {sparsity}, and differ from the global-"
                          "magnitude and labkit prune_to masks of the reference at that sparsity")
            out.append(_record(task, artifact, a, b, "identical pruning mask", round(figure, 6), detail))
    return out


def write_similarity_csv(pairs, path) -> Path:
    """Write the records of :func:`find_similar` / ``similar_sources`` to a CSV (cells escaped, capped).

    Example:
        >>> import tempfile
        >>> out = write_similarity_csv([{"task": "pruning", "a_id": "=1", "kind": "identical file", "figure": 1.0}],
        ...                            tempfile.mkdtemp() + "/pairs.csv")
        >>> out.read_text().splitlines()[1]
        "pruning,,'=1,,,,identical file,1.0,"
    """
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        for pair in pairs:
            writer.writerow({key: csv_cell(pair.get(key, "")) for key in FIELDS})
    return path
