"""Structured vs unstructured pruning of lab 03's ResNet-20: accuracy, MACs and measured CPU latency.

Models, all from the same pretrained ResNet-20 (``--pretrained``):

- ``dense``: the starting model;
- ``unstructured``: a 90%-sparse file written by notebook 03 (``--unstructured``, default what
  ``make real`` wrote); its zeros sit in dense tensors, so its MACs and latency are the dense ones;
- ``channels R``: ``labkit.prune.channels.prune_channels_gradually`` removing the fraction ``R``
  of every prunable group's channels, or ``R1/R2/R3`` per stage (``--ratios``), ranked by ``--importance``,
  fine-tuned ``--epochs`` epochs with distillation on the training split minus the 5,000 validation images
  (``--seed``, default 0), or on every training image with ``--valid-size 0`` (the fine-tuning chooses
  nothing on validation, it only reports it).

Accuracy is measured once, on the test split, at the end; the drop is against the dense model on the
same split. Latency: ``labkit.profile.compare_latency`` times every model in turn, round after round
(``--rounds``), batch 1 and batch 128, ``torch.get_num_threads()`` threads; each latency is the lowest
round median, each speed-up the median over the rounds of dense's time over the model's in that round;
every model in the same memory layout (``--layout``, default channels_last, oneDNN's fast layout on the CPU),
with freed memory kept in the process (``--memory kept``, ``labkit.profile.keep_freed_memory``: otherwise glibc
hands each batch-128 call's activations back to the OS and the next call page-faults them in again, a cost that
follows the activations and the machine's load, not the network's arithmetic).
Every run appends its rows to ``--results`` (JSON lines); ``--readme`` rewrites the table between its
markers in benchmarks/README.md from the rows of the last run. Time it alone.

Run:
    python benchmarks/bench_structured_prune.py --ratios 0.25,0.375 --readme benchmarks/README.md
    python benchmarks/bench_structured_prune.py --latency-only --all-settings --ratios 0.25,0.5/0/0 --readme benchmarks/README.md
    python benchmarks/bench_structured_prune.py --table-only --runs 3 --readme benchmarks/README.md  # the last 3 runs' rows
    python benchmarks/bench_structured_prune.py --fixture --epochs 4 --results /tmp/rows.jsonl   # smoke test
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
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
from lab03_start import add_common_arguments, data_and_start_model

LAYOUTS = {"channels_last": torch.channels_last, "nchw": torch.contiguous_format}
# Notebook 03's structured recipe on a CPU (labkit.recipes, lab 03's "structured" part), without its latency rounds.
CPU_STRUCTURED = {key: value for key, value in recipes.table("03").recipe("CPU", "structured").items()
                  if key != "latency_rounds"}
MARKERS = ("<!-- structured-prune:begin -->", "<!-- structured-prune:end -->")
LATENCY_MARKERS = ("<!-- structured-latency:begin -->", "<!-- structured-latency:end -->")
COLUMNS = ("model", "epochs", "seed", "fine_tune_images", "importance", "minutes", "zeros", "macs_m", "params",
           "test_accuracy", "drop", "latency_b1_ms", "speedup_b1", "latency_b128_ms", "speedup_b128", "layout", "memory", "machine", "load", "date")
LATENCY_COLUMNS = ("model", "macs_m", "latency_b1_ms", "speedup_b1", "latency_b128_ms", "speedup_b128",
                   "page_faults_b128", "layout", "memory", "threads", "rounds", "load", "date")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, results="runs/bench_structured_prune/rows.jsonl")
    parser.add_argument("--unstructured", default="runs/real/03_pruning_cifar10/123_pruning.pt",
                        help="a pruned state_dict from notebook 03; if missing, a one-shot 90%% prune (not fine-tuned)")
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
                        help="train and time nothing: print (and with --readme write) the last run's rows of --results")
    parser.add_argument("--runs", type=int, default=1, help="with --table-only: how many of the last runs")
    parser.add_argument("--latency-only", action="store_true",
                        help="no fine-tuning: time the pruned shapes only (latency does not depend on the weights' values)")
    return parser


def parse_ratio(spec: str):
    """``"0.25"`` -> 0.25 for every stage; ``"0.5/0/0"`` -> per stage (:func:`ratio_from_list`)."""
    try:
        return ratio_from_list([float(part) for part in spec.split("/")])
    except ValueError as error:
        raise SystemExit(f"--ratios {spec!r}: {error}") from error


def unstructured_model(start_model, path: Path) -> tuple[torch.nn.Module, str]:
    """The 90%-sparse model: notebook 03's file if there is one, else a one-shot prune of the start."""
    model = copy.deepcopy(start_model)
    if path.is_file():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model, "unstructured 90% (notebook 03)"
    prune_to(model, 0.9)
    make_permanent(model)
    return model, "unstructured 90% (one-shot, not fine-tuned)"


def latency_only(args, ratios: list) -> None:
    """Time the dense, the 90%-sparse and each channel-pruned shape, without training anything."""
    start_model = load_pretrained(args.pretrained).eval()
    sparse, name = unstructured_model(start_model, Path(args.unstructured))
    models = {"dense": start_model, name: sparse.eval()}
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
                   load=f"{os.getloadavg()[1]:.1f}", date=time.strftime("%Y-%m-%d"))
    write_table(rows, args.readme, columns=LATENCY_COLUMNS, markers=LATENCY_MARKERS)


def last_run_rows(path: Path, runs: int = 1) -> list[dict]:
    """The rows of the last ``runs`` runs in a results file, oldest first: every run writes ``dense`` first."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    starts = [index for index, row in enumerate(rows) if row["model"] == "dense"]
    if not starts:
        raise SystemExit(f"{path}: no run in it (no 'dense' row); run the benchmark first")
    return rows[starts[-min(runs, len(starts))]:]


def write_table(rows: list[dict], readme: str | None, *, columns=COLUMNS, markers=MARKERS) -> None:
    """Print the table; with ``readme``, also rewrite it between ``markers`` there. Only the channel-pruned
    models were fine-tuned here, so only their rows show ``epochs``, ``seed`` and ``fine_tune_images`` (blank in runs
    before those columns: seed 0, 20,000 images)."""
    rows = [{**row, **{key: row.get(key) if row["model"].startswith("channels") else None
                       for key in ("epochs", "seed", "fine_tune_images")}} for row in rows]
    table = format_table(rows, columns=columns, digits=2)
    print(table, flush=True)
    if readme:
        path = Path(readme)
        path.write_text(replace_marked_section(path.read_text(), table, start=markers[0], end=markers[1]))
        print(f"wrote {len(rows)} rows into {readme}")


def main(argv=None) -> None:
    args = get_args_parser().parse_args(argv)
    if args.table_only:
        write_table(last_run_rows(Path(args.results), args.runs), args.readme)
        return
    ratios = [parse_ratio(value.strip()) for value in args.ratios.split(",") if value.strip()]
    torch.set_num_threads(args.threads)
    if args.latency_only:
        latency_only(args, ratios)
        return
    root, loaders, start_model = data_and_start_model(args, valid_size=args.valid_size)
    valid = loaders.valid if args.valid_size != 0 else None
    models, minutes = {"dense": start_model}, {"dense": 0.0}
    sparse, name = unstructured_model(start_model, Path(args.unstructured))
    models[name], minutes[name] = sparse, None
    for ratio in ratios:
        torch.manual_seed(args.seed)
        model = copy.deepcopy(start_model)
        train = cifar10.BatchedLoader(loaders.train.dataset, batch_size=128, shuffle=True, augment=True,
                                      seed=args.seed)
        started = time.perf_counter()
        settings = {**CPU_STRUCTURED, "ratio": ratio, "epochs": args.epochs, "importance": args.importance}
        prune_channels_gradually(model, train, valid, device="cpu", **settings)
        label = f"channels {ratio_label(ratio)}"
        models[label], minutes[label] = model, (time.perf_counter() - started) / 60

    print(f"timing {len(models)} models side by side, {args.rounds} rounds, {torch.get_num_threads()} threads, "
          f"{args.layout}, memory {args.memory}")
    timing = {row["model"]: row for row in compare_latency(models, rounds=args.rounds,
                                                                      memory_format=LAYOUTS[args.layout],
                                                                      steady_memory=args.memory == "kept")}
    start_accuracy = evaluate_classification(start_model, loaders.test, device="cpu")["accuracy"]
    machine = f"{platform.machine()}, {args.threads} threads" + (", fixture" if args.fixture else "")
    rows = []
    for label, model in models.items():
        accuracy = evaluate_classification(model, loaders.test, device="cpu")["accuracy"]
        row = {"model": label, "minutes": minutes[label], "zeros": course_sparsity(model),
               "macs_m": count_macs(model, input_size=(1, 3, 32, 32)) / 1e6,
               "params": sum(parameter.numel() for parameter in model.parameters()),
               "test_accuracy": accuracy, "drop": start_accuracy - accuracy, **timing[label],
               "machine": machine, "load": f"{os.getloadavg()[1]:.1f}", "date": time.strftime("%Y-%m-%d"),
               "epochs": args.epochs, "importance": args.importance if label.startswith("channels") else None,
               "memory": args.memory, "data": str(root), "fine_tune_images": len(loaders.train.dataset),
               "seed": args.seed}
        rows.append(row)
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    with results.open("a") as file:
        for row in rows:
            file.write(json.dumps(row) + "\n")
    write_table(rows, args.readme)


if __name__ == "__main__":
    main()
