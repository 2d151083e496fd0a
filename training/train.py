"""Train the DeepPose-style ResNet-50 regressor on WFLW with one of the two published recipes.

One process:   python -m training.train --wflw-root data/wflw --work-dir work/res50 [--recipe mmpose-0.x]
Eight GPUs:    torchrun --nproc_per_node 8 -m training.train --wflw-root data/wflw --work-dir work/res50
Fine-tune:     python -m training.train --wflw-root ROOT --pretrained official --lr 1e-4 --epochs 20 ...

The recipes (``training.recipes``) share mmpose's optimisation: Adam lr 5e-4, total batch 512 (64
per GPU x 8 GPUs), mmcv's linear warm-up over 500 iterations from 0.001 x lr, lr x 0.1 at epochs
170 and 200, 210 epochs, best.pth kept by test NME under the recipe's flip convention. They
differ in augmentation, head initialisation, evaluation interval and flip test.

``--batch-size`` is the total over all processes; when it does not fit in memory,
``--max-images-per-step`` splits each process's share into accumulated micro-batches, so the
optimisation is the same. BatchNorm statistics are taken over groups of ``--bn-group`` images
(64, as on each of the 8 GPUs) whatever the process count (``training.layers.GhostBatchNorm2d``).

Speed (none of these changes the recipe): loader workers persist across epochs; the loop reads the
loss back only when it logs; on CUDA Adam is fused and the network runs channels-last;
``--compile`` compiles the training forward and backward (``torch.compile``); ``--gpu-data`` cuts
the augmented crops on the device (``training.gpu_data``). ``--amp`` trains under bf16 autocast
on CUDA: faster, but the published run trained in fp32.

Files (rank 0 only) in ``--work-dir``: ``log.txt`` (loss, lr, images/s, eval NME), ``tb/``
(TensorBoard scalars), ``checkpoint.pth`` (latest, written at every evaluation, resumable) and
``best.pth`` (best test NME); ``training.checkpoints`` describes their contents.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import random
import sys
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from model.backends import torch_forward
from model.cli import add_model_arguments, device_arg
from model.codec import FLIP_CONVENTIONS, check_flip_convention, predict_crops
from model.constants import INPUT_SIZE
from model.network import LandmarkRegressor, imagenet_initialised, load_regressor, normalize
from model.pipeline import pick_device
from training.checkpoints import (BEST_NAME, CHECKPOINT_NAME, Progress, link_best, resume, rng_state,
                                  save_checkpoint)
from training.dataset import WFLWDataset
from training.layers import BN_GROUP, use_ghost_batchnorm
from training.loss import SoftWingLoss
from training.metrics import nme, subset_table, summarize
from training.prepare import open_wflw_root
from training.recipes import DEFAULT_RECIPE, RECIPES, Recipe, get_recipe, init_head, warmup_factor
from model.formats.wflw import BOX_MODES, attribute_matrix, find_wflw_root, load_wflw_txt

PROG = "python -m training.train"
LOG_NAME = "log.txt"
# Micro-batches each loader worker prepares ahead.
PREFETCH_FACTOR = 4
# --pretrained values that are not a file.
PRETRAINED_CHOICES = ("imagenet", "none", "official")

__all__ = ["BEST_NAME", "BN_GROUP", "CHECKPOINT_NAME", "RECIPES", "Recipe", "TrainConfig", "build_loaders",
           "evaluate", "get_recipe", "lr_factor", "main", "parse_args", "resolve_config", "save_checkpoint",
           "train_one_epoch"]


@dataclass
class TrainConfig:
    """Every setting of a run; the defaults reproduce the published checkpoint.

    Fields left at ``None`` take the recipe's value (``resolve_config``: ``RECIPE_FIELDS``), or the
    device's (``channels_last``: on for CUDA). A field's ``metadata`` holds its flag's ``help``, and
    ``choices``, ``required`` or ``default_text`` (the default in words) where it needs them.
    """

    # data
    wflw_root: str = field(default="", metadata={"help": "WFLW root (WFLW_images/, WFLW_annotations/)",
                                                 "required": True})
    work_dir: str = field(default="work_dirs/res50_wflw_256", metadata={"help": "output folder"})
    input_size: int = field(default=INPUT_SIZE, metadata={"help": "crop side in pixels (256 = published)"})
    workers: int = field(default=4, metadata={
        "help": "data loading processes per training process (kept alive across epochs)"})
    recipe: str = field(default=DEFAULT_RECIPE, metadata={
        "help": "published recipe: mmpose-0.x (made the published file) or mmpose-1.x", "choices": tuple(RECIPES)})
    gpu_data: bool = field(default=False, metadata={
        "help": "cut every training face once with margin, keep it on the device and augment there "
                "(training.gpu_data; for machines with few CPU cores)"})
    # optimisation
    epochs: int = field(default=210, metadata={"help": "number of epochs"})
    batch_size: int = field(default=512, metadata={"help": "total batch over all processes (64 x 8 GPUs)"})
    max_images_per_step: int = field(default=0, metadata={
        "help": "largest micro-batch per process; smaller than the per-process batch means gradient "
                "accumulation (0 = the whole per-process batch at once)"})
    bn_group: int = field(default=BN_GROUP, metadata={
        "help": "BatchNorm statistics over groups of this many images in training, as on each of the "
                "published run's 8 GPUs (0 = over the whole micro-batch)"})
    lr: float = field(default=5e-4, metadata={"help": "Adam learning rate (no weight decay)"})
    warmup_iters: int | None = field(default=None, metadata={
        "help": "linear warm-up length in optimiser steps"})
    warmup_ratio: float | None = field(default=None, metadata={
        "help": "warm-up starts at this x lr"})
    milestones: list[int] = field(default_factory=lambda: [170, 200], metadata={
        "help": "epochs after which lr is multiplied by --gamma"})
    gamma: float = field(default=0.1, metadata={"help": "lr decay factor at each milestone"})
    pretrained: str = field(default="imagenet", metadata={
        "help": "initial weights: 'imagenet' (torchvision IMAGENET1K_V1 trunk, new head), 'none' (random), "
                "'official' (the published mmpose file, head included) or a checkpoint path (mmpose "
                "0.x/1.x or this project's, head included) to fine-tune"})
    amp: bool = field(default=False, metadata={
        "help": "bf16 autocast on CUDA (the published run trained in fp32)"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the training forward and backward"})
    channels_last: bool | None = field(default=None, metadata={
        "help": "run the network in channels-last memory format", "default_text": "on with CUDA, off on CPU"})
    seed: int = field(default=0, metadata={"help": "seed of the sampler, augmentation and init"})
    # evaluation, checkpoints, logging
    eval_interval: int | None = field(default=None, metadata={
        "help": "evaluate and save every N epochs and at the end"})
    eval_box: str = field(default="landmarks", metadata={"help": "evaluation crop box", "choices": BOX_MODES})
    flip_test: bool = field(default=True, metadata={"help": "average with the mirrored crop at evaluation"})
    flip_convention: str | None = field(default=None, metadata={
        "help": "flip-back formula at evaluation, which picks best.pth",
        "choices": FLIP_CONVENTIONS})
    resume: bool = field(default=False, metadata={"help": "continue from WORK_DIR/checkpoint.pth"})
    print_freq: int = field(default=10, metadata={"help": "log a progress line every N optimiser steps"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when present), cpu, cuda or cuda:N"})


# TrainConfig fields whose None means "the recipe's value" (training.recipes.Recipe attributes).
RECIPE_FIELDS = ("warmup_iters", "warmup_ratio", "eval_interval", "flip_convention")


def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """A copy of ``cfg`` with every recipe-dependent ``None`` field set from its recipe."""
    recipe = get_recipe(cfg.recipe)
    fill = {name: getattr(recipe, name) for name in RECIPE_FIELDS if getattr(cfg, name) is None}
    return dataclasses.replace(cfg, **fill)


def lr_factor(iteration: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Multiplier of ``cfg.lr`` at an optimiser step (0-based): warm-up times the step decay.

    ``cfg`` is resolved (``resolve_config``). As in mmcv, the warm-up scales the decayed lr.
    """
    epoch = iteration // steps_per_epoch
    decay = cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    return warmup_factor(iteration, cfg.warmup_iters, cfg.warmup_ratio) * decay


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def log_line(work_dir: Path, text: str) -> None:
    """Print and append to the run's log file (callers check the rank)."""
    tqdm.write(text)
    with open(work_dir / LOG_NAME, "a", encoding="utf-8") as f:
        f.write(text + "\n")


def train_step(model, criterion, batches, step_images: int, device: torch.device, use_amp: bool,
               channels_last: bool) -> torch.Tensor:
    """Forward and backward over one optimiser step's micro-batches (gradients averaged over its images).

    Returns the step's loss summed over its images, a detached scalar on ``device`` (no host sync).
    """
    seen, total = 0, torch.zeros((), device=device)
    no_sync = getattr(model, "no_sync", None)  # DistributedDataParallel (also through torch.compile)
    while seen < step_images:
        batch = next(batches)
        n = len(batch["index"])
        seen += n
        images = normalize(batch["image"].to(device, non_blocking=True))
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        target = batch["target"].to(device, non_blocking=True)
        weight = batch["weight"].to(device, non_blocking=True)
        # DDP averages gradients over processes at the last micro-batch of the step only.
        with no_sync() if no_sync is not None and seen < step_images else contextlib.nullcontext():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                pred = model(images)
            loss = criterion(pred.float(), target, weight)
            (loss * (n / step_images)).backward()  # mean over the step's images
        total += loss.detach() * n
    return total


def train_one_epoch(model, criterion, optimizer, scheduler, loader, device, epoch: int, cfg: TrainConfig,
                    steps_per_epoch: int, per_rank_batch: int, work_dir: Path, writer=None,
                    channels_last: bool = False) -> dict:
    """One pass over the training set; returns mean loss, last lr and images/s (all processes).

    The loss stays on the device: it is read back (a host sync) only at the log lines, every
    ``cfg.print_freq`` steps, which report the mean loss and the images/s since the previous one.
    """
    model.train()
    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = _rank()
    use_amp = cfg.amp and device.type == "cuda"
    epoch_loss, window_loss = torch.zeros((), device=device), torch.zeros((), device=device)
    total_images, window_images, start = 0, 0, time.perf_counter()
    window_start = start
    batches, remaining = iter(loader), len(loader.sampler)
    bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}", disable=rank != 0, leave=False, dynamic_ncols=True)
    for step in bar:
        step_images = min(per_rank_batch, remaining)
        remaining -= step_images
        optimizer.zero_grad(set_to_none=True)
        step_loss = train_step(model, criterion, batches, step_images, device, use_amp, channels_last)
        optimizer.step()
        scheduler.step()
        epoch_loss += step_loss
        window_loss += step_loss
        total_images += step_images
        window_images += step_images
        if (step + 1) % cfg.print_freq == 0 or step + 1 == steps_per_epoch:
            if rank == 0:
                loss, now = window_loss.item() / window_images, time.perf_counter()
                rate = window_images * world / max(now - window_start, 1e-9)
                iteration, lr = epoch * steps_per_epoch + step + 1, optimizer.param_groups[0]["lr"]
                eta = (now - start) / (step + 1) * (steps_per_epoch - step - 1)
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", img_s=f"{rate:.1f}")
                if writer is not None:
                    writer.add_scalar("train/loss_step", loss, iteration)
                log_line(work_dir, f"epoch {epoch} step {step + 1}/{steps_per_epoch} iter {iteration} "
                                   f"loss {loss:.4f} lr {lr:.6e} images/s {rate:.1f} eta {eta:.0f}s")
            window_loss.zero_()
            window_images, window_start = 0, time.perf_counter()
    elapsed = time.perf_counter() - start
    return {"loss": epoch_loss.item() / max(total_images, 1), "lr": optimizer.param_groups[0]["lr"],
            "images_per_s": total_images * world / max(elapsed, 1e-9), "time": elapsed}


@torch.inference_mode()
def evaluate(model: torch.nn.Module, loader: DataLoader, device: torch.device, flip_test: bool = True,
             attributes: np.ndarray | None = None, flip_convention: str = "1.x") -> dict:
    """Test-set NME of the model on the loader's un-augmented crops.

    NME is computed in crop coordinates: the crop is a similarity transform of the image, and NME
    (an error divided by a distance) is unchanged by it. The flip test is ``model.codec``'s.

    Returns:
        {"nme", "fr", "auc", "num_faces"} fractions for the whole set, "per_image" np.ndarray[N],
        "pred" np.ndarray[N, 98, 2] crop coordinates / input size, and "subsets" when
        ``attributes`` (N, 6) is given.
    """
    model.eval()
    preds, gts = [], []
    for batch in loader:
        images = batch["image"].to(device)
        preds.append(predict_crops(lambda crops: torch_forward(model, crops), images, images.shape[1],
                                   flip_test, flip_convention)[0])
        gts.append(batch["target"].numpy())
    pred, gt = np.concatenate(preds), np.concatenate(gts)
    per_image = nme(pred, gt)
    result = summarize(per_image)
    result.update(per_image=per_image, pred=pred)
    if attributes is not None:
        result["subsets"] = subset_table(per_image, attributes)
    return result


def build_loaders(cfg: TrainConfig, rank: int, world: int, micro_batch: int, device: torch.device | None = None):
    """Training loader (DistributedSampler over ``world`` processes) and test loader (rank 0 uses it).

    Loader workers persist across epochs and prefetch ``PREFETCH_FACTOR`` micro-batches each. With
    ``cfg.gpu_data`` the training loader is a ``training.gpu_data.GPUBatches`` on ``device``
    (default: ``cfg.device``'s). Returns the two loaders and the test faces' (N, 6) attributes.
    """
    tree = find_wflw_root(cfg.wflw_root)
    train_set = WFLWDataset(load_wflw_txt(tree.annotations("train")), tree.images, input_size=cfg.input_size,
                            augment=get_recipe(cfg.recipe).augment, seed=cfg.seed)
    test_samples = load_wflw_txt(tree.annotations("test"))
    test_set = WFLWDataset(test_samples, tree.images, input_size=cfg.input_size, box_mode=cfg.eval_box)
    # The sampler shuffles with (seed, epoch): a resumed run sees the same order as an unbroken one.
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed,
                                 drop_last=False)
    workers = dict(num_workers=cfg.workers, persistent_workers=cfg.workers > 0,
                   prefetch_factor=PREFETCH_FACTOR if cfg.workers > 0 else None)
    pin = torch.cuda.is_available()
    if cfg.gpu_data:
        from training.gpu_data import GPUBatches, GPUFaceBank

        bank = GPUFaceBank(train_set, device if device is not None else pick_device(cfg.device))
        train_loader = GPUBatches(bank, micro_batch, sampler)
    else:
        train_loader = DataLoader(train_set, batch_size=micro_batch, sampler=sampler, drop_last=False,
                                  pin_memory=pin, **workers)
    test_loader = DataLoader(test_set, batch_size=micro_batch, shuffle=False, pin_memory=pin, **workers)
    return train_loader, test_loader, attribute_matrix(test_samples)


def _build_model(cfg: TrainConfig) -> LandmarkRegressor:
    """The model a run starts from; a new head (``imagenet``, ``none``) goes through ``init_head``,
    pretrained weights (``official``, a checkpoint path) keep their own head."""
    if cfg.pretrained == "imagenet":
        return init_head(imagenet_initialised(), get_recipe(cfg.recipe))
    if cfg.pretrained == "none":
        return init_head(LandmarkRegressor(), get_recipe(cfg.recipe))
    if cfg.pretrained == "official":
        from model.weights import official_weights

        return load_regressor(official_weights())
    if Path(cfg.pretrained).is_file():
        return load_regressor(cfg.pretrained)
    raise ValueError(f"--pretrained {cfg.pretrained!r} is not supported: use one of {PRETRAINED_CHOICES} "
                     f"or the path of an existing checkpoint")


def _check_config(cfg: TrainConfig, world: int) -> tuple[int, int]:
    """Per-process batch and micro-batch, after checking the settings that can be wrong.

    Every bad setting raises ``ValueError`` naming the flag and the value; a folder that is not a
    WFLW root, ``FileNotFoundError`` (``training.prepare.open_wflw_root``).
    """
    get_recipe(cfg.recipe)
    if not cfg.wflw_root:
        raise ValueError("wflw_root is required (--wflw-root)")
    if cfg.eval_box not in BOX_MODES:
        raise ValueError(f"--eval-box {cfg.eval_box!r} is not supported: use one of {BOX_MODES}")
    check_flip_convention(cfg.flip_convention)
    try:
        device_arg(cfg.device)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"--device: {exc}") from None
    if cfg.pretrained not in PRETRAINED_CHOICES and not Path(cfg.pretrained).is_file():
        raise ValueError(f"--pretrained {cfg.pretrained!r} is not supported: use one of {PRETRAINED_CHOICES} "
                         f"or the path of an existing checkpoint")
    if cfg.epochs < 1 or cfg.eval_interval < 1 or cfg.print_freq < 1:
        raise ValueError(f"epochs, eval_interval and print_freq must be at least 1, got "
                         f"{cfg.epochs}, {cfg.eval_interval}, {cfg.print_freq}")
    if cfg.batch_size < world or cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} must be a multiple of the {world} processes")
    per_rank = cfg.batch_size // world
    micro = per_rank if cfg.max_images_per_step <= 0 else min(per_rank, cfg.max_images_per_step)
    if per_rank % micro:
        raise ValueError(f"the per-process batch {per_rank} must be a multiple of max_images_per_step "
                         f"{cfg.max_images_per_step}")
    if cfg.bn_group < 0 or (cfg.bn_group and micro > cfg.bn_group and micro % cfg.bn_group):
        raise ValueError(f"the micro-batch {micro} must be a multiple of bn_group {cfg.bn_group} "
                         f"(or at most bn_group; 0 turns groups off)")
    open_wflw_root(cfg.wflw_root)
    return per_rank, micro


def _start_processes(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    """World size, rank and device of this process; joins the process group under torchrun.

    The device is ``model.pipeline.pick_device``'s; "auto" and "cuda" take the GPU of the local
    rank under torchrun (``cuda:N`` is used as given).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = pick_device(cfg.device)
    if device.type == "cuda" and cfg.device in ("auto", "cuda"):
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if world > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world, rank, device


def training_objects(cfg: TrainConfig, device: torch.device, world: int, steps_per_epoch: int,
                     channels_last: bool):
    """The model (ghost BN, on the device), the network the loop runs (compiled and / or DDP),
    fused Adam on CUDA and the lr schedule."""
    model = _build_model(cfg)
    model = (use_ghost_batchnorm(model, cfg.bn_group) if cfg.bn_group else model).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=0.0, fused=device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, steps_per_epoch, cfg))
    net = model
    if world > 1:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)
    return model, net, optimizer, scheduler


def _evaluate_and_save(cfg: TrainConfig, epoch: int, progress: Progress, model, optimizer, scheduler,
                       test_loader, test_attributes, device, work_dir: Path, writer) -> None:
    """Evaluate on the test set under ``cfg.flip_convention``, write checkpoint.pth (its config holds
    that convention) and, when the NME improved, best.pth (rank 0)."""
    result = evaluate(model, test_loader, device, cfg.flip_test, test_attributes, cfg.flip_convention)
    improved = result["nme"] < progress.best_nme
    if improved:
        progress.best_nme, progress.best_epoch = result["nme"], epoch
    progress.last = result
    log_line(work_dir, f"epoch {epoch} eval: nme {100 * result['nme']:.3f}% "
                       f"fr@0.1 {100 * result['fr']:.2f}% auc@0.1 {result['auc']:.4f} "
                       f"(best {100 * progress.best_nme:.3f}% at epoch {progress.best_epoch})")
    for key in ("nme", "fr", "auc"):
        writer.add_scalar(f"eval/{key}", result[key], epoch)
    save_checkpoint({
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "epoch": epoch, "iteration": scheduler.last_epoch,
        "rng": rng_state(), "config": dataclasses.asdict(cfg),
        "nme": float(result["nme"]), "best_nme": float(progress.best_nme), "best_epoch": progress.best_epoch,
    }, work_dir / CHECKPOINT_NAME)
    if improved:
        link_best(work_dir)
    log_line(work_dir, f"saved {work_dir / CHECKPOINT_NAME}" + (f" and {BEST_NAME}" if improved else ""))


def main(cfg: TrainConfig) -> dict:
    """Run (or resume) training; returns the last evaluation and the best NME (rank 0)."""
    cfg = resolve_config(cfg)
    per_rank, micro = _check_config(cfg, int(os.environ.get("WORLD_SIZE", "1")))
    world, rank, device = _start_processes(cfg)
    channels_last = device.type == "cuda" if cfg.channels_last is None else cfg.channels_last
    work_dir = Path(cfg.work_dir)
    if rank == 0:
        work_dir.mkdir(parents=True, exist_ok=True)
        log_line(work_dir, f"config: {dataclasses.asdict(cfg)}")
        log_line(work_dir, f"processes {world}, per-process batch {per_rank} = {per_rank // micro} x {micro}, "
                           f"BatchNorm over {min(micro, cfg.bn_group or micro)}-image groups; device {device}, "
                           f"channels-last {channels_last}, compile {cfg.compile}, gpu data {cfg.gpu_data}")
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    train_loader, test_loader, test_attributes = build_loaders(cfg, rank, world, micro, device)
    steps_per_epoch = math.ceil(len(train_loader.sampler) / per_rank)
    model, net, optimizer, scheduler = training_objects(cfg, device, world, steps_per_epoch, channels_last)
    progress = resume(work_dir, model, optimizer, scheduler) if cfg.resume else Progress()
    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(work_dir / "tb"))
        if cfg.resume:
            log_line(work_dir, f"resumed from {work_dir / CHECKPOINT_NAME} at epoch {progress.start_epoch}, "
                               f"iteration {scheduler.last_epoch}, lr {optimizer.param_groups[0]['lr']:.6e}")
        log_line(work_dir, f"{len(train_loader.dataset)} train faces, {steps_per_epoch} steps per epoch, "
                           f"{len(test_loader.dataset)} test faces")
    for epoch in range(progress.start_epoch, cfg.epochs):
        train_loader.sampler.set_epoch(epoch)
        train_loader.dataset.set_epoch(epoch)
        stats = train_one_epoch(net, SoftWingLoss(), optimizer, scheduler, train_loader, device, epoch, cfg,
                                steps_per_epoch, per_rank, work_dir, writer, channels_last)
        if rank == 0:
            log_line(work_dir, f"epoch {epoch} done: loss {stats['loss']:.4f} lr {stats['lr']:.6e} "
                               f"images/s {stats['images_per_s']:.1f} time {stats['time']:.1f}s")
            for key in ("loss", "lr", "images_per_s"):
                writer.add_scalar(f"train/{key}", stats[key], epoch)
        if (epoch + 1) % cfg.eval_interval == 0 or epoch + 1 == cfg.epochs:
            if rank == 0:
                _evaluate_and_save(cfg, epoch, progress, model, optimizer, scheduler, test_loader,
                                   test_attributes, device, work_dir, writer)
            if world > 1:
                dist.barrier()
    if writer is not None:
        writer.close()
    if world > 1:
        dist.destroy_process_group()
    return {"last": progress.last, "best_nme": progress.best_nme, "best_epoch": progress.best_epoch,
            "steps_per_epoch": steps_per_epoch, "config": cfg}


def _flag_type(annotation) -> type:
    """The scalar type of a field annotation (``int | None`` -> int, ``list[int]`` -> int)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args else annotation


# TrainConfig fields whose flags are the shared model vocabulary (model.cli): --device, --no-flip.
_SHARED_FLAGS = {"device": "device", "flip_test": "no_flip"}


def _default_text(f: dataclasses.Field) -> str:
    """A field's default as its flag's help states it: "(default: ...)" or "(required)".

    Recipe fields name each recipe's value (``RECIPES``), so the help cannot drift from the recipes.
    """
    if f.metadata.get("required"):
        return "(required)"
    if "default_text" in f.metadata:
        return f"(default: {f.metadata['default_text']})"
    if f.name in RECIPE_FIELDS:
        values = {name: getattr(recipe, f.name) for name, recipe in RECIPES.items()}
        if len(set(values.values())) == 1:
            return f"(default: the recipe's, {next(iter(values.values()))})"
        return "(default: the recipe's: " + ", ".join(f"{v} for {name}" for name, v in values.items()) + ")"
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if isinstance(default, bool):
        return f"(default: {'on' if default else 'off'})"
    if isinstance(default, list):
        return f"(default: {' '.join(str(v) for v in default)})"
    return f"(default: {default})"


class _HelpFormatter(argparse.HelpFormatter):
    """Help that states every flag's default once: the text a flag brings, else "(default: off)"
    for a switch (``--no-flip``) or "(default: VALUE)"."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default" in text or "(required)" in text or action.default is argparse.SUPPRESS:
            return text
        if action.nargs == 0:
            return f"{text} (default: {'on' if action.default else 'off'})"
        return f"{text} (default: %(default)s)"


def _parser() -> argparse.ArgumentParser:
    """One dashed flag per ``TrainConfig`` field, its help ending in the default (``_default_text``)."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0], formatter_class=_HelpFormatter)
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name in _SHARED_FLAGS:
            continue
        annotation = hints[f.name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        kwargs = {"default": default, "dest": f.name, "required": bool(f.metadata.get("required"))}
        if _flag_type(annotation) is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _flag_type(annotation)
            if typing.get_origin(annotation) is list:
                kwargs["nargs"] = "*"
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        action = parser.add_argument("--" + f.name.replace("_", "-"), **kwargs)
        # set after construction: BooleanOptionalAction appends a "(default: ...)" of its own
        action.help = f"{f.metadata['help']} {_default_text(f)}"
    add_model_arguments(parser, flags=tuple(_SHARED_FLAGS.values()))
    return parser


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """One dashed flag per ``TrainConfig`` field (booleans: ``--amp`` / ``--no-amp``).

    ``--device`` (auto|cpu|cuda|cuda:N, a bad value exits 2) and ``--no-flip`` (old spelling
    ``--no-flip-test`` kept as a hidden alias) come from ``model.cli.add_model_arguments``.
    """
    args = vars(_parser().parse_args(argv))
    args["flip_test"] = not args.pop("no_flip")
    return TrainConfig(**args)


def cli(argv: list[str] | None = None) -> int:
    """The command line: settings and the WFLW root are checked first, and a bad one is one line on
    stderr (exit status 2) instead of a traceback; then ``main``. Returns the exit status."""
    cfg = parse_args(argv)
    try:
        _check_config(resolve_config(cfg), int(os.environ.get("WORLD_SIZE", "1")))
    except (ValueError, FileNotFoundError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    main(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
