"""Structured vs unstructured pruning of lab 03's ResNet-20: accuracy, MACs and measured CPU latency.

Models, all from the same pretrained ResNet-20 (``--pretrained``), all trained here, in this run:

- ``dense``: the starting model;
- ``unstructured 90% (gradual+kd)``: notebook 03's graded pruning, lab 03's CPU recipe (``labkit.recipes``:
  ``labkit.prune.gradual.gradual_prune`` to 90 % with distillation from the dense model, ``--unstructured-epochs``,
  default the recipe's 28); its zeros sit in dense tensors, so its MACs and latency are the dense ones;
  ``--unstructured-epochs 0`` leaves it out;
- ``channels R``: ``labkit.prune.channels.prune_channels_gradually`` removing the fraction ``R``
  of every prunable group's channels, or ``R1/R2/R3`` per stage (``--ratios``), ranked by ``--importance``,
  fine-tuned ``--epochs`` epochs with distillation.

Every pruned model trains on the training split minus the 5,000 validation images, or on every training image with
``--valid-size 0``, in the batch order and augmentation of ``--seed`` (default 0); nothing is chosen on validation,
it is only reported.

Accuracy is measured once, on the test split, at the end; the drop is against the dense model on the
same split. Latency: ``labkit.profile.compare_latency`` times every model in turn, round after round
(``--rounds``), batch 1 and batch 128, ``torch.get_num_threads()`` threads; each latency is the lowest
round median, each speed-up the median over the rounds of dense's time over the model's in that round;
every model in the same memory layout (``--layout``, default channels_last, oneDNN's fast layout on the CPU),
with freed memory kept in the process (``--memory kept``, ``labkit.profile.keep_freed_memory``: otherwise glibc
hands each batch-128 call's activations back to the OS and the next call page-faults them in again, a cost that
follows the activations and the machine's load, not the network's arithmetic).

``--latency-only`` trains nothing: a forward pass costs the same whatever the weights' values, so it times the
pruned shapes (the 90 % one pruned in one shot) and appends to ``--latency-results``.
Every run appends its rows to ``--results`` (JSON lines; committed in ``benchmarks/rows/``); ``--readme`` rewrites
both tables between their markers in benchmarks/README.md from every row of the two files. The defaults took 19 minutes
for the unstructured model and 6 for the channel recipe on 2 CPU cores (benchmarks/README.md); time it alone.

Run:
    python benchmarks/bench_structured_prune.py --readme benchmarks/README.md   # notebook 03's two recipes
    python benchmarks/bench_structured_prune.py --ratios 0.5/0.375/0 --epochs 28 --valid-size 0 --unstructured-epochs 0 --readme benchmarks/README.md
    python benchmarks/bench_structured_prune.py --latency-only --all-settings --ratios 0.25,0.5/0/0 --readme benchmarks/README.md
    python benchmarks/bench_structured_prune.py --table-only --readme benchmarks/README.md   # the tables from the rows
    python benchmarks/bench_structured_prune.py --fixture --epochs 1 --unstructured-epochs 1 --results /tmp/rows.jsonl   # smoke test
"""
from __future__ import annotations

import argparse
import copy
import os
import time
from pathlib import Path

import torch

from labkit.data import cifar10
from labkit.evaluate import evaluate_classification
from labkit.models.resnet20 import load_pretrained
from labkit.profile import compare_latency, count_macs
from labkit import recipes
from labkit.prune.channels import IMPORTANCE, channel_prune, prune_channels_gradually, ratio_from_list, ratio_label
from labkit.prune.magnitude import course_sparsity, make_permanent, prune_to
from labkit.tables import format_table
from labkit.tools.readme_table import replace_marked_section
from lab03_start import (CPU_GRADUAL, add_common_arguments, append_rows, data_and_start_model, machine_name,
                         prune_gradually, read_rows)

LAYOUTS = {"channels_last": torch.channels_last, "nchw": torch.contiguous_format}
# Notebook 03's structured recipe on a CPU (labkit.recipes, lab 03's "structured" part), without its latency rounds.
CPU_STRUCTURED = {key: value for key, value in recipes.table("03").recipe("CPU", "structured").items()
                  if key != "latency_rounds"}
SPARSE = f"unstructured {CPU_GRADUAL['final_sparsity']:.0%}"  # the graded file's sparsity, trained or one-shot
UNSTRUCTURED = f"{SPARSE} (gradual+kd)"
ROWS = Path(__file__).resolve().parent / "rows"
MARKERS = ("<!-- structured-prune:begin -->", "<!-- structured-prune:end -->")
LATENCY_MARKERS = ("<!-- structured-latency:begin -->", "<!-- structured-latency:end -->")
COLUMNS = ("model", "epochs", "seed", "fine_tune_images", "importance", "minutes", "zeros", "macs_m", "params",
           "test_accuracy", "drop", "latency_b1_ms", "speedup_b1", "latency_b128_ms", "speedup_b128", "layout", "memory", "machine", "load", "date")
LATENCY_COLUMNS = ("model", "macs_m", "latency_b1_ms", "speedup_b1", "latency_b128_ms", "speedup_b128",
                   "page_faults_b128", "layout", "memory", "machine", "rounds", "load", "date")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, results=str(ROWS / "structured_prune.jsonl"))
    parser.add_argument("--latency-results", default=str(ROWS / "structured_latency.jsonl"),
                        help="JSON lines of the --latency-only runs, appended")
    parser.add_argument("--unstructured-epochs", type=float, default=CPU_GRADUAL["epochs"],
                        help="epochs of notebook 03's gradual pruning to 90%% (lab 03's CPU recipe); 0: leave it out")
    parser.add_argument("--ratios", default=ratio_label(CPU_STRUCTURED["ratio"]),
                        help="comma-separated channel fractions: one for every stage (0.25) or one per stage, "
                             "stem with stage 1 (0.5/0/0)")
    parser.add_argument("--epochs", type=float, default=CPU_STRUCTURED["epochs"])
    parser.add_argument("--importance", choices=sorted(IMPORTANCE), default=CPU_STRUCTURED["importance"],
                        help="how each group's channels are ranked before the weakest go")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fine-tuning's batch order and augmentation")
    parser.add_argument("--valid-size", type=int, default=None,
                        help="validation images held out of fine-tuning (default: cifar10_loaders' 5,000, a fifth of a "
                             "smaller set); 0: fine-tune on all of them")
    parser.add_argument("--rounds", type=int, default=15, help="latency rounds (every model once per round)")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="channels_last",
                        help="memory layout every model is timed in (channels_last: oneDNN's fast one on the CPU)")
    parser.add_argument("--memory", choices=("kept", "returned"), default="kept",
                        help="kept: freed memory stays in the process while timing (labkit.profile.keep_freed_memory); "
                             "returned: glibc's default, every batch-128 call page-faults its activations back in")
    parser.add_argument("--all-settings", action="store_true",
                        help="with --latency-only: time the models three times: channels_last and NCHW with memory "
                             "kept, channels_last with memory returned")
    parser.add_argument("--table-only", action="store_true",
                        help="train and time nothing: print (and with --readme write) both tables from their rows")
    parser.add_argument("--latency-only", action="store_true",
                        help="no fine-tuning: time the pruned shapes only (latency does not depend on the weights' values)")
    return parser


def parse_ratio(spec: str):
    """``"0.25"`` -> 0.25 for every stage; ``"0.5/0/0"`` -> per stage (:func:`ratio_from_list`)."""
    try:
        return ratio_from_list([float(part) for part in spec.split("/")])
    except ValueError as error:
        raise SystemExit(f"--ratios {spec!r}: {error}") from error


def unstructured_model(start_model, train_dataset, valid_loader, *, epochs: float, seed: int
                       ) -> tuple[torch.nn.Module, float]:
    """Notebook 03's graded pruning of a copy of ``start_model`` (lab 03's CPU recipe, ``epochs`` epochs),
    zeros made permanent; returns the model and its minutes."""
    model = copy.deepcopy(start_model)
    torch.manual_seed(seed)
    minutes = prune_gradually(model, train_dataset, valid_loader, settings={**CPU_GRADUAL, "epochs": epochs},
                              seed=seed)
    return make_permanent(model).eval(), minutes


def latency_only(args, ratios: list) -> None:
    """Time the dense, the 90%-sparse and each channel-pruned shape, without training anything."""
    start_model = load_pretrained(args.pretrained).eval()
    sparse = copy.deepcopy(start_model)
    prune_to(sparse, CPU_GRADUAL["final_sparsity"])
    models = {"dense": start_model,
              f"{SPARSE} (one-shot)": make_permanent(sparse).eval()}
    for ratio in ratios:
        model = copy.deepcopy(start_model)
        channel_prune(model, ratio=ratio)
        models[f"channels {ratio_label(ratio)}"] = model.eval()
    settings = ([("channels_last", "kept"), ("nchw", "kept"), ("channels_last", "returned")] if args.all_settings
                else [(args.layout, args.memory)])
    rows = [{**row, "memory": memory} for layout, memory in settings
            for row in compare_latency(models, rounds=args.rounds, memory_format=LAYOUTS[layout],
                                       steady_memory=memory == "kept")]
    for row in rows:
        row.update(macs_m=count_macs(models[row["model"]], input_size=(1, 3, 32, 32)) / 1e6, rounds=args.rounds,
                   machine=machine_name(args), load=f"{os.getloadavg()[1]:.1f}", date=time.strftime("%Y-%m-%d"))
    append_rows(Path(args.latency_results), rows)
    write_table(read_rows(Path(args.latency_results)), args.readme, columns=LATENCY_COLUMNS, markers=LATENCY_MARKERS)


def write_table(rows: list[dict], readme: str | None, *, columns=COLUMNS, markers=MARKERS) -> None:
    """Print the table; with ``readme``, also rewrite it between ``markers`` there."""
    table = format_table(rows, columns=columns, digits=2)
    print(table, flush=True)
    if readme:
        path = Path(readme)
        path.write_text(replace_marked_section(path.read_text(), table, start=markers[0], end=markers[1]))
        print(f"wrote {len(rows)} rows into {readme}")


def main(argv=None) -> None:
    args = get_args_parser().parse_args(argv)
    if args.table_only:
        write_table(read_rows(Path(args.results)), args.readme)
        write_table(read_rows(Path(args.latency_results)), args.readme, columns=LATENCY_COLUMNS,
                    markers=LATENCY_MARKERS)
        return
    ratios = [parse_ratio(value.strip()) for value in args.ratios.split(",") if value.strip()]
    torch.set_num_threads(args.threads)
    if args.latency_only:
        latency_only(args, ratios)
        return
    root, loaders, start_model = data_and_start_model(args, valid_size=args.valid_size)
    valid = loaders.valid if args.valid_size != 0 else None
    models, minutes, epochs = {"dense": start_model}, {"dense": 0.0}, {"dense": None}
    if args.unstructured_epochs > 0:
        models[UNSTRUCTURED], minutes[UNSTRUCTURED] = unstructured_model(
            start_model, loaders.train.dataset, valid, epochs=args.unstructured_epochs, seed=args.seed)
        epochs[UNSTRUCTURED] = args.unstructured_epochs
    for ratio in ratios:
        torch.manual_seed(args.seed)
        model = copy.deepcopy(start_model)
        train = cifar10.BatchedLoader(loaders.train.dataset, batch_size=128, shuffle=True, augment=True,
                                      seed=args.seed)
        started = time.perf_counter()
        settings = {**CPU_STRUCTURED, "ratio": ratio, "epochs": args.epochs, "importance": args.importance}
        prune_channels_gradually(model, train, valid, device="cpu", **settings)
        label = f"channels {ratio_label(ratio)}"
        models[label], minutes[label], epochs[label] = model, (time.perf_counter() - started) / 60, args.epochs

    print(f"timing {len(models)} models side by side, {args.rounds} rounds, {torch.get_num_threads()} threads, "
          f"{args.layout}, memory {args.memory}")
    timing = {row["model"]: row for row in compare_latency(models, rounds=args.rounds,
                                                                      memory_format=LAYOUTS[args.layout],
                                                                      steady_memory=args.memory == "kept")}
    start_accuracy = evaluate_classification(start_model, loaders.test, device="cpu")["accuracy"]
    rows = []
    for label, model in models.items():
        accuracy = evaluate_classification(model, loaders.test, device="cpu")["accuracy"]
        trained = epochs[label] is not None
        rows.append({"model": label, "minutes": minutes[label], "zeros": course_sparsity(model),
                     "macs_m": count_macs(model, input_size=(1, 3, 32, 32)) / 1e6,
                     "params": sum(parameter.numel() for parameter in model.parameters()),
                     "test_accuracy": accuracy, "drop": start_accuracy - accuracy, **timing[label],
                     "machine": machine_name(args), "load": f"{os.getloadavg()[1]:.1f}",
                     "date": time.strftime("%Y-%m-%d"), "epochs": epochs[label],
                     "importance": args.importance if label.startswith("channels") else None,
                     "memory": args.memory, "data": str(root),
                     "fine_tune_images": len(loaders.train.dataset) if trained else None,
                     "seed": args.seed if trained else None})
    append_rows(Path(args.results), rows)
    write_table(read_rows(Path(args.results)), args.readme)


if __name__ == "__main__":
    main()
