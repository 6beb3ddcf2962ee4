"""The parts of ``benchmarks/gpu_check.py`` that run in processes of their own (each step has a timeout
and a crash there is that step's failure): describing the device, timing the FULL GPU recipes, and a
resume after a kill.

    python benchmarks/gpu_check_lib.py env --device cuda --json OUT/env.json
    python benchmarks/gpu_check_lib.py recipe 05 --data gpu_subset --device cuda --epochs 3 --out WORK/recipes/05
    python benchmarks/gpu_check_lib.py resume --data gpu_subset --device cuda --out WORK/resume

The recipes are the GPU columns of the labs' recipe tables (``labkit.recipes``, the tables the
notebooks pick from), so a recipe changed there is the recipe timed here. ``--smoke`` shrinks them
(``SMOKE_SIZES``) so the same code runs on a CPU in seconds.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = {"01": "01_unet_oxford_pet", "02": "02_resnet34_unet", "05": "05_efficient_unet_cityscapes"}
SMOKE_SIZES = {"01": dict(image_size=64, batch_size=4, base_channels=8, workers=0),
               "02": dict(image_size=32, batch_size=4, unet_base_channels=8, unet_depth=3, workers=0),
               "05": dict(image_size=(64, 128), batch_size=4, task1_width=8, task1_depth=3, task2_width=8,
                          task2_depth=3, workers=0)}
MIN_EPOCH_IMAGES = 1024  # on a GPU the subset is repeated to this many images per epoch (nearer steady state)
RESUME_EPOCHS = 6
PRUNING_MODEL = "models/resnet20_cifar10_45k.pt"  # in the subset: the pretrained dense ResNet-20
# Dense (no sparsity) FP16 tensor-core peaks from NVIDIA's datasheets, TFLOP/s; first match of the
# device name wins. The T4 estimate is this device's time x (its peak / the T4's 65): a ratio of
# datasheet peaks, not a measurement on a T4.
T4_TFLOPS = 65.0  # NVIDIA T4 datasheet: "Mixed Precision (FP16/FP32) 65 TFLOPS"
PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4),  # H100 datasheet, 1/2 of "with sparsity"
               ("H200", 989.4), ("A100", 312.0), ("L4", 121.0), ("T4", T4_TFLOPS))  # likewise
# Full training-set sizes the minutes are extrapolated to (the notebooks' FULL splits).
FULL_IMAGES = {"pets": 3312,         # Oxford-IIIT Pet trainval 3680 minus every 10th line (labkit.data.pets)
               "cityscapes": 2529}   # Cityscapes train 2975 frames minus 15 % held out (VALID_FRACTION 0.15)


# ----------------------------------------------------------------------------- the device

def describe(device: str) -> dict:
    """Versions, the device, its FP16 peak (datasheet by name, else a measured matmul) and the T4 ratio."""
    import torch
    import torchvision
    from labkit.device import probe_device
    from labkit.tools.runner import cpu_model
    probe_device(device)  # a broken GPU fails here, with labkit's cause and fix
    info = {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "cuda": torch.version.cuda, "cpu": cpu_model(), "cpu_cores": os.cpu_count(), "device": device}
    if device == "cuda":
        memory = torch.cuda.get_device_properties(0).total_memory
        info |= {"gpu": torch.cuda.get_device_name(0), "gpu_memory_gb": round(memory / 2**30, 1)}
    name, dtype = info.get("gpu") or "", torch.float16 if device == "cuda" else torch.float32
    info["matmul_tflops"] = round(matmul_tflops(device, dtype), 2)
    peak = next((value for key, value in PEAK_TFLOPS if key in name), None)
    info["peak_tflops"], info["peak_source"] = (
        (peak, f"datasheet: {name} dense FP16 tensor") if peak else
        (info["matmul_tflops"], f"measured {dtype} matmul (no datasheet figure)"))
    info["t4_ratio"] = info["peak_tflops"] / T4_TFLOPS
    return info


def matmul_tflops(device: str, dtype, seconds: float = 0.5) -> float:
    import torch
    n = 4096 if device == "cuda" else 512
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    (a @ b).sum().item()
    started, count = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        for _ in range(10):
            a @ b
        (a @ b).sum().item()
        count += 11
    return 2 * n**3 * count / (time.perf_counter() - started) / 1e12


# ----------------------------------------------------------------------------- the recipes

def read_recipe(notebook: str, column: str = "GPU") -> dict:
    """Recipe ``column`` of notebook ``notebook``'s lab (``"01_unet_oxford_pet"`` -> lab 01), a fresh dict."""
    from labkit import recipes
    return recipes.table(notebook[:2]).recipe(column)


def recipe_config(number: str, smoke: bool) -> dict:
    from labkit.params import as_workers
    config = read_recipe(NOTEBOOKS[number])
    if smoke:
        config.update({key: value for key, value in SMOKE_SIZES[number].items() if key in config})
    config["workers"] = as_workers(config.get("workers", 0))
    return config


def pet_sets(root: Path, config: dict, size: int):
    from labkit.data import pets
    train = pets.OxfordIIITPet(root, "train", image_size=size, cache=True, progress=False,
                               transform=pets.train_transform(size, seed=0, scale=config.get("scale", 0.0)))
    return train, pets.OxfordIIITPet(root, "valid", image_size=size, cache=True, progress=False)


def train_row(label: str, model, train_set, valid_set, *, config: dict, lr: float, epochs: int, device: str,
              loss_fn, evaluate, monitor: str, image_size, full: tuple[int, str], amp: bool = True,
              min_images: int = 0, worker_init_fn=None, macs: int | None = None, checkpoint_dir=None,
              resume=False, log=None) -> dict:
    """Train ``epochs`` epochs as the recipe does and return its row: images/s over the timed epochs."""
    import torch
    from torch.utils.data import ConcatDataset
    from labkit.data.loaders import split_loaders
    from labkit.profile import count_macs
    from labkit.train import fit
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    macs = macs or count_macs(model, input_size=(1, 3, height, width))  # before training: the float model
    repeat = max(1, math.ceil(min_images / len(train_set)))
    loader, valid_loader, _ = split_loaders(  # the notebooks' loaders: pinned on CUDA, train workers per epoch
        ConcatDataset([train_set] * repeat), valid_set, valid_set, batch_size=config["batch_size"],
        workers=config["workers"], device=device, worker_init_fn=worker_init_fn)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    result = fit(model, loader, loss_fn=loss_fn, epochs=epochs, optimizer=optimizer, valid_loader=valid_loader,
                 evaluate=evaluate, monitor=monitor, device=device, seed=0, amp=amp, ema_decay=config.get("ema"),
                 checkpoint_dir=checkpoint_dir, resume=resume, recipe="FULL-GPU", progress=False, log=log)
    history = result["history"]
    timed = history[1:] or history  # the first epoch pays for autotuning and worker start-up
    images = len(loader) * config["batch_size"]
    return {"recipe": label, "image_size": [height, width], "batch_size": config["batch_size"],
            "epoch_images": images, "epochs_timed": len(timed),
            "images_per_s": images * len(timed) / sum(row["seconds"] for row in timed),
            "peak_memory_mb": max(row.get("peak_memory_mb") or 0 for row in history),
            "train_gflop_per_image": 3 * 2 * macs / 1e9,  # forward 2 x MACs; backward ~2 x forward
            "full_epochs": full[0], "full_images": FULL_IMAGES[full[1]], "macs": macs, monitor: result["best_metric"],
            "history": history}


def recipe_rows(number: str, *, data: Path, device: str, epochs: int, smoke: bool, out: Path) -> list[dict]:
    """Time notebook ``number``'s FULL GPU recipe on the subset; save its models for the checks."""
    from labkit.evaluate import evaluate_segmentation
    from labkit.io import save_state_dict
    from labkit.losses import BCEDiceLoss
    from labkit.models.unet import UNet
    from labkit.data import pets
    config, out = recipe_config(number, smoke), Path(out)
    common = dict(config=config, epochs=epochs, device=device, min_images=0 if smoke else MIN_EPOCH_IMAGES)
    if number in ("01", "02"):
        size = config["image_size"]
        train, valid = pet_sets(data / "oxford-iiit-pet", config, size)
        pet = dict(common, evaluate=evaluate_segmentation, monitor="dice", image_size=size,
                   worker_init_fn=pets.seed_augmentation_worker)
        if number == "01":
            model = UNet(classes=1, base_channels=config["base_channels"], depth=config.get("depth", 4))
            rows = [train_row(f"01 UNet-{config['base_channels']}", model, train, valid, lr=config["lr"],
                              loss_fn=BCEDiceLoss(lovasz_weight=config.get("lovasz", 0.0)),
                              full=(config["epochs"], "pets"), **pet)]
            save_state_dict(model, out / "unet.pth")
            return rows
        from labkit.models.resnet34_unet import ResNet34UNet
        resnet = ResNet34UNet(classes=1)
        unet = UNet(classes=1, base_channels=config["unet_base_channels"], depth=config["unet_depth"])
        rows = [train_row(label, model, train, valid, lr=config["lr"], loss_fn=BCEDiceLoss(),
                          full=(config["epochs"], "pets"), **pet)
                for label, model in (("02 ResNet34-UNet", resnet), (f"02 UNet-{config['unet_base_channels']}", unet))]
        save_state_dict(resnet, out / "resnet34_unet.pth")
        return rows
    return cityscapes_rows(config, common, data=data, smoke=smoke, out=out)


def cityscapes_rows(config: dict, common: dict, *, data: Path, smoke: bool, out: Path) -> list[dict]:
    """Notebook 05: Task 1 UNet, Task 2 EfficientUNet (float), its QAT epochs, INT8 on the CPU after."""
    from functools import partial
    from torch.utils.data import DataLoader
    from labkit.data.cityscapes import NUM_CLASSES, Cityscapes8
    from labkit.evaluate import evaluate_multiclass_segmentation
    from labkit.grading.network_template import write_network
    from labkit.io import save_state_dict
    from labkit.losses import SegmentationLoss
    from labkit.models.efficient_unet import EfficientUNet
    from labkit.models.unet import UNet
    from labkit.quant.qat import convert_to_int8, prepare_qat
    size = tuple(config["image_size"])
    split = dict(image_size=size, cache=True, valid_fraction=0.15, seed=0)
    train = Cityscapes8(data / "cityscapes", "train", augment=True, **split)
    valid = Cityscapes8(data / "cityscapes", "valid", **split)
    evaluate = partial(evaluate_multiclass_segmentation, num_classes=NUM_CLASSES)
    city = dict(common, evaluate=evaluate, monitor="mIoU", image_size=size,
                loss_fn=SegmentationLoss(ce_weight=1.0, dice_weight=1.0, lovasz_weight=0.5))
    unet = UNet(classes=NUM_CLASSES, base_channels=config["task1_width"], depth=config["task1_depth"])
    rows = [train_row(f"05 Task 1 UNet-{config['task1_width']}", unet, train, valid, lr=config["task1_lr"],
                      full=(config["task1_epochs"], "cityscapes"), **city)]
    save_state_dict(unet, out / "model_task1.pth")
    write_network(out / "network", unet, smoke_image_size=size if smoke else None)
    efficient = EfficientUNet(classes=NUM_CLASSES, base_channels=config["task2_width"], depth=config["task2_depth"])
    label = f"05 Task 2 EfficientUNet-{config['task2_width']}"
    rows.append(train_row(label, efficient, train, valid, lr=config["task2_lr"],
                          full=(config["task2_epochs"], "cityscapes"), **city))
    qat_model = prepare_qat(efficient)
    rows.append(train_row(f"{label} QAT", qat_model, train, valid, lr=config["qat_lr"], amp=False,
                          full=(config["qat_epochs"], "cityscapes"), macs=rows[-1]["macs"], **city))
    int8_model = convert_to_int8(qat_model)  # quantized on the CPU after training on the device
    rows[-1]["int8_mIoU_cpu"] = evaluate(int8_model, DataLoader(valid, batch_size=4), device="cpu")["mIoU"]
    save_state_dict(int8_model, out / "model_task2.pth")
    write_network(out / "network2", int8_model, smoke_image_size=size if smoke else None)
    return rows


# ----------------------------------------------------------------------------- resume after a kill

def resume_after_kill(*, data: Path, device: str, smoke: bool, out: Path, epochs: int = RESUME_EPOCHS) -> dict:
    """Start notebook 01's GPU recipe in a child, SIGKILL it after its first checkpoint, resume it, and
    check that the resumed run continued from that checkpoint (raises AssertionError if not)."""
    import torch
    out = Path(out)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # this run's checkpoints only
    last = out / "checkpoints" / "last.pt"
    command = [sys.executable, __file__, "resume-child", "--data", str(data), "--device", device,
               "--epochs", str(epochs), "--out", str(out)] + (["--smoke"] if smoke else [])
    with open(out / "killed.log", "w") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        while not last.exists() and child.poll() is None:
            time.sleep(0.02)
        finished = child.poll() is not None
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    assert not finished, f"the run ended (exit {child.returncode}) before it was killed: {out / 'killed.log'}"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    killed_at = saved["epoch"]
    assert 1 <= killed_at < epochs, f"killed after epoch {killed_at} of {epochs}"
    subprocess.run(command, check=True, timeout=600)
    resumed = json.loads((out / "resumed.json").read_text())
    history = resumed["history"]
    assert [row["epoch"] for row in history] == list(range(1, epochs + 1)), history
    assert history[:killed_at] == saved["history"][:killed_at], "the epochs before the kill were not kept"
    assert any(f"after epoch {killed_at}" in line for line in resumed["log"]), resumed["log"]
    return {"killed_after_epoch": killed_at, "epochs": epochs, "trained_after_resume": epochs - killed_at,
            "checkpoint_device": (saved.get("recipe") or {}).get("device")}


def resume_child(*, data: Path, device: str, smoke: bool, out: Path, epochs: int) -> None:
    from labkit.losses import BCEDiceLoss
    from labkit.models.unet import UNet
    config = recipe_config("01", smoke)
    train, valid = pet_sets(data / "oxford-iiit-pet", config, config["image_size"])
    lines = []
    model = UNet(classes=1, base_channels=config["base_channels"], depth=config.get("depth", 4))
    row = train_row("resume", model, train, valid, config=config, lr=config["lr"], epochs=epochs, device=device,
                    loss_fn=BCEDiceLoss(), evaluate=None, monitor="dice", image_size=config["image_size"],
                    full=(epochs, "pets"), checkpoint_dir=out / "checkpoints", resume=True, log=lines.append)
    (out / "resumed.json").write_text(json.dumps({"history": row["history"], "log": lines}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("env", "recipe", "resume", "resume-child"))
    parser.add_argument("number", nargs="?", choices=sorted(NOTEBOOKS))
    parser.add_argument("--data", type=Path, default=REPO / "gpu_subset")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--json", type=Path, help="env: write the description here")
    args = parser.parse_args(argv)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    if args.command == "env":
        info = describe(args.device)
        print(json.dumps(info, indent=1))
        if args.json:
            args.json.write_text(json.dumps(info))
    elif args.command == "recipe":
        rows = recipe_rows(args.number, data=args.data, device=args.device, epochs=args.epochs,
                           smoke=args.smoke, out=args.out)
        for row in rows:
            print(f"{row['recipe']}: {row['images_per_s']:.1f} images/s over {row['epochs_timed']} epoch(s)")
        (args.out / "rows.json").write_text(json.dumps(rows, default=float))
    elif args.command == "resume":
        verdict = resume_after_kill(data=args.data, device=args.device, smoke=args.smoke, out=args.out)
        print(json.dumps(verdict))
        (args.out / "resume.json").write_text(json.dumps(verdict))
    else:
        resume_child(data=args.data, device=args.device, smoke=args.smoke, out=args.out, epochs=args.epochs)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # labkit from this checkout, wherever the script is started
    sys.exit(main())
