"""Train the DeepPose-style ResNet-50 regressor on WFLW with one of the two published recipes.

One process:   python -m training.train --wflw-root data/wflw --work-dir work/res50 [--recipe mmpose-0.x]
Eight GPUs:    torchrun --nproc_per_node 8 -m training.train --wflw-root data/wflw --work-dir work/res50

Both recipes (``RECIPES``) share mmpose's optimisation: Adam lr 5e-4, total batch 512 (64 per GPU
x 8 GPUs), mmcv's linear warm-up over 500 iterations from 0.001 x lr, lr x 0.1 at epochs 170 and
200, 210 epochs, best.pth kept by test NME. They differ in augmentation, head initialisation,
evaluation interval and flip test: ``mmpose-0.x`` (default) is the config that produced the
published checkpoint, ``mmpose-1.x`` its later conversion.

``--batch-size`` is the total over all processes; when it does not fit in memory,
``--max-images-per-step`` splits each process's share into accumulated micro-batches, so the
optimisation is the same. BatchNorm statistics are taken over groups of ``--bn-group`` images
(64, as on each of the 8 GPUs) whatever the process count (``GhostBatchNorm2d``).

Files (rank 0 only) in ``--work-dir``: ``log.txt`` (loss, lr, images/s, eval NME per epoch),
``tb/`` (TensorBoard scalars), ``checkpoint.pth`` (latest, written at every evaluation, resumable)
and ``best.pth`` (best test NME).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import random
import shutil
import sys
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from model.codec import FLIP_CONVENTIONS, check_flip_convention, predict_crops
from model.constants import INPUT_SIZE
from model.io import atomic_write
from model.network import LandmarkRegressor, imagenet_initialised, load_regressor, normalize, read_checkpoint
from training.augment import MMPOSE_0X_AUGMENT, MMPOSE_1X_AUGMENT, AugmentParams
from training.loss import SoftWingLoss
from training.metrics import nme, subset_table, summarize
from training.wflw import BOX_MODES, WFLWDataset, attribute_matrix, find_wflw_root, load_wflw_txt

CHECKPOINT_NAME = "checkpoint.pth"
BEST_NAME = "best.pth"
LOG_NAME = "log.txt"
# Images per BatchNorm batch in the published runs: 64 on each of 8 GPUs, plain (unsynchronised) BN.
BN_GROUP = 64


@dataclass(frozen=True)
class Recipe:
    """What one published mmpose config fixes beyond the shared optimisation settings.

    Attributes:
        name: the ``--recipe`` choice.
        augment: the random flip / shift / scale / rotation draws (``training.augment``).
        head_init_std, head_init_bias: a new head's ``fc.weight ~ Normal(0, std)`` and constant
            ``fc.bias`` (a checkpoint keeps its own head).
        eval_interval: epochs between test evaluations (best.pth is kept by test NME in both).
        flip_convention: the flip-back formula of the test-time flip (``model.codec``).
        warmup_iters, warmup_ratio: mmcv's linear warm-up, lr = base x (1 - (1 - ratio) x
            (1 - iter / warmup_iters)) for iter < warmup_iters (mmengine's ``LinearLR(start_factor=
            0.001, end=500)`` of the 1.x config gives the same numbers).
    """

    name: str
    augment: AugmentParams
    head_init_std: float
    head_init_bias: float
    eval_interval: int
    flip_convention: str
    warmup_iters: int = 500
    warmup_ratio: float = 0.001


RECIPES: dict[str, Recipe] = {
    # res50_wflw_256x256_softwingloss.py (mmpose 0.x), which produced the published file: evaluation
    # every epoch, DeepPose head Normal(0, 0.01) with bias 0, flip test x -> 1 - x (table: 4.41).
    "mmpose-0.x": Recipe("mmpose-0.x", MMPOSE_0X_AUGMENT, head_init_std=0.01, head_init_bias=0.0,
                         eval_interval=1, flip_convention="0.x"),
    # td-reg_res50_softwingloss_8xb64-210e_wflw-256x256 (mmpose 1.x): evaluation every 10 epochs,
    # flip test x -> 1 - x - 1/256 (table: 4.44). The head start is this project's, not mmpose's:
    # weights Normal(0, 0.001) and bias 0.5 put the first predictions at the crop centre, whereas
    # std 0.01 on a trunk without ImageNet weights starts them 0.7 crop widths off (3.6 in eval
    # mode), which short runs (the tests, docs/learning-proof.md) spend most of their steps undoing.
    "mmpose-1.x": Recipe("mmpose-1.x", MMPOSE_1X_AUGMENT, head_init_std=0.001, head_init_bias=0.5,
                         eval_interval=10, flip_convention="1.x"),
}
DEFAULT_RECIPE = "mmpose-0.x"


@dataclass
class TrainConfig:
    """Every setting of a run; the defaults reproduce the published checkpoint.

    Fields left at ``None`` take the recipe's value (``resolve_config``).
    """

    # data
    wflw_root: str = field(default="", metadata={"help": "WFLW root (WFLW_images/, WFLW_annotations/)"})
    work_dir: str = field(default="work_dirs/res50_wflw_256", metadata={"help": "output folder"})
    input_size: int = field(default=INPUT_SIZE, metadata={"help": "crop side in pixels (256 = published)"})
    workers: int = field(default=4, metadata={"help": "data loading processes per training process"})
    recipe: str = field(default=DEFAULT_RECIPE, metadata={
        "help": "published recipe: mmpose-0.x (made the published file) or mmpose-1.x", "choices": tuple(RECIPES)})
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
        "help": "linear warm-up length in optimiser steps (default: the recipe's, 500)"})
    warmup_ratio: float | None = field(default=None, metadata={
        "help": "warm-up starts at this x lr (default: the recipe's, 0.001)"})
    milestones: list[int] = field(default_factory=lambda: [170, 200], metadata={
        "help": "epochs after which lr is multiplied by --gamma"})
    gamma: float = field(default=0.1, metadata={"help": "lr decay factor at each milestone"})
    pretrained: str = field(default="imagenet", metadata={
        "help": "initial weights: 'imagenet' (torchvision IMAGENET1K_V1 trunk), 'none', or a checkpoint path"})
    amp: bool = field(default=False, metadata={"help": "bf16 autocast on CUDA"})
    seed: int = field(default=0, metadata={"help": "seed of the sampler, augmentation and init"})
    # evaluation, checkpoints, logging
    eval_interval: int | None = field(default=None, metadata={
        "help": "evaluate and save every N epochs and at the end (default: the recipe's, 1 for 0.x, 10 for 1.x)"})
    eval_box: str = field(default="landmarks", metadata={"help": "evaluation crop box", "choices": BOX_MODES})
    flip_test: bool = field(default=True, metadata={"help": "average with the mirrored crop at evaluation"})
    flip_convention: str | None = field(default=None, metadata={
        "help": "flip-back formula at evaluation (default: the recipe's)", "choices": FLIP_CONVENTIONS})
    resume: bool = field(default=False, metadata={"help": "continue from WORK_DIR/checkpoint.pth"})
    print_freq: int = field(default=10, metadata={"help": "log a progress line every N optimiser steps"})
    device: str = field(default="auto", metadata={"help": "'auto' (CUDA when present), 'cuda' or 'cpu'"})


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"recipe {name!r} is not supported: use one of {tuple(RECIPES)}")
    return RECIPES[name]


def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """A copy of ``cfg`` with every ``None`` field set from its recipe."""
    recipe = get_recipe(cfg.recipe)
    fill = {name: getattr(recipe, name) for name in ("warmup_iters", "warmup_ratio", "eval_interval",
                                                      "flip_convention") if getattr(cfg, name) is None}
    return dataclasses.replace(cfg, **fill)


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def log_line(work_dir: Path, text: str) -> None:
    """Print and append to the run's log file (callers check the rank)."""
    tqdm.write(text)
    with open(work_dir / LOG_NAME, "a", encoding="utf-8") as f:
        f.write(text + "\n")


def warmup_factor(iteration: int, warmup_iters: int, ratio: float) -> float:
    """mmcv's linear warm-up: 1 - (1 - ratio) x (1 - iteration / warmup_iters), then 1."""
    if iteration >= warmup_iters:
        return 1.0
    return 1.0 - (1.0 - ratio) * (1.0 - iteration / warmup_iters)


def lr_factor(iteration: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Multiplier of ``cfg.lr`` at an optimiser step (0-based): warm-up times the step decay.

    ``cfg`` is resolved (``resolve_config``). As in mmcv, the warm-up scales the decayed lr.
    """
    epoch = iteration // steps_per_epoch
    decay = cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    return warmup_factor(iteration, cfg.warmup_iters, cfg.warmup_ratio) * decay


class GhostBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that, in training mode, normalises each group of ``group`` images on its own.

    Every group is normalised exactly as a separate BatchNorm batch: its own mean and variance. The
    running statistics (and ``num_batches_tracked``) are updated from the first group only, once per
    forward: on 8 GPUs each process keeps its own running statistics from its own 64 images, and the
    checkpoint is rank 0's. A 512-image batch on one GPU then trains as mmpose's 8 GPUs x 64 images
    with plain BN did. Evaluation mode uses the running statistics as usual. Parameters and buffers
    are BatchNorm2d's, so checkpoints are unchanged.

    Why ghost BN rather than gradient accumulation over 64-image micro-batches: both give the same
    statistics and gradients, but ghost BN leaves the micro-batch free. A large GPU runs the whole
    step in one forward (accumulation would force eight sequential 64-image passes), and
    ``--max-images-per-step`` stays a pure memory setting.
    """

    def __init__(self, num_features: int, group: int = BN_GROUP, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        if group < 1:
            raise ValueError(f"group must be at least 1 image, got {group}")
        self.group = int(group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.shape[0] <= self.group:
            return super().forward(x)
        first, *rest = x.split(self.group)
        out = [super().forward(first)]  # the running statistics: rank 0's images
        out += [F.batch_norm(part, None, None, self.weight, self.bias, True, 0.0, self.eps) for part in rest]
        return torch.cat(out)


def use_ghost_batchnorm(model: nn.Module, group: int) -> nn.Module:
    """Swap every ``nn.BatchNorm2d`` of ``model`` for a ``GhostBatchNorm2d`` holding the same
    parameters and statistics (in place; returns ``model``)."""
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            ghost = GhostBatchNorm2d(child.num_features, group, eps=child.eps, momentum=child.momentum,
                                     affine=child.affine, track_running_stats=child.track_running_stats)
            ghost.load_state_dict(child.state_dict())
            ghost.train(child.training)
            setattr(model, name, ghost)
        else:
            use_ghost_batchnorm(child, group)
    return model


def train_one_epoch(model, criterion, optimizer, scheduler, loader, device, epoch: int,
                    cfg: TrainConfig, steps_per_epoch: int, per_rank_batch: int, work_dir: Path,
                    writer=None) -> dict:
    """One pass over the training set; returns mean loss, last lr and images/s (all processes)."""
    model.train()
    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = _rank()
    use_amp = cfg.amp and device.type == "cuda"
    total_loss, total_images, start = 0.0, 0, time.perf_counter()
    batches = iter(loader)
    remaining = len(loader.sampler)
    bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}", disable=rank != 0, leave=False,
               dynamic_ncols=True)
    for step in bar:
        step_start = time.perf_counter()
        step_images = min(per_rank_batch, remaining)
        remaining -= step_images
        optimizer.zero_grad(set_to_none=True)
        seen, step_loss = 0, 0.0
        while seen < step_images:
            batch = next(batches)
            n = len(batch["index"])
            seen += n
            images = normalize(batch["image"].to(device, non_blocking=True))
            target = batch["target"].to(device, non_blocking=True)
            weight = batch["weight"].to(device, non_blocking=True)
            # DDP averages gradients over processes at the last micro-batch of the step only.
            sync = seen >= step_images or not isinstance(model, DistributedDataParallel)
            with model.no_sync() if not sync else contextlib.nullcontext():
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                    pred = model(images)
                loss = criterion(pred.float(), target, weight)
                (loss * (n / step_images)).backward()  # mean over the step's images
            step_loss += loss.item() * n
        optimizer.step()
        scheduler.step()
        iteration = epoch * steps_per_epoch + step + 1
        total_loss += step_loss
        total_images += step_images
        rate = step_images * world / max(time.perf_counter() - step_start, 1e-9)
        lr = optimizer.param_groups[0]["lr"]
        if rank == 0:
            bar.set_postfix(loss=f"{step_loss / step_images:.3f}", lr=f"{lr:.2e}", img_s=f"{rate:.1f}")
            if writer is not None:
                writer.add_scalar("train/loss_step", step_loss / step_images, iteration)
            if (step + 1) % cfg.print_freq == 0 or step + 1 == steps_per_epoch:
                eta = (time.perf_counter() - start) / (step + 1) * (steps_per_epoch - step - 1)
                log_line(work_dir, f"epoch {epoch} step {step + 1}/{steps_per_epoch} iter {iteration} "
                                   f"loss {step_loss / step_images:.4f} lr {lr:.6e} "
                                   f"images/s {rate:.1f} eta {eta:.0f}s")
    elapsed = time.perf_counter() - start
    return {"loss": total_loss / max(total_images, 1), "lr": optimizer.param_groups[0]["lr"],
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
        preds.append(predict_crops(lambda crops: model(normalize(crops)).float(), images, images.shape[1],
                                   flip_test, flip_convention))
        gts.append(batch["target"].numpy())
    pred, gt = np.concatenate(preds), np.concatenate(gts)
    per_image = nme(pred, gt)
    result = summarize(per_image)
    result.update(per_image=per_image, pred=pred)
    if attributes is not None:
        result["subsets"] = subset_table(per_image, attributes)
    return result


def build_loaders(cfg: TrainConfig, rank: int, world: int, micro_batch: int):
    """Training loader (DistributedSampler over ``world`` processes) and test loader (rank 0 uses it)."""
    tree = find_wflw_root(cfg.wflw_root)
    train_set = WFLWDataset(load_wflw_txt(tree.annotations("train")), tree.images, input_size=cfg.input_size,
                            augment=get_recipe(cfg.recipe).augment, seed=cfg.seed)
    test_samples = load_wflw_txt(tree.annotations("test"))
    test_set = WFLWDataset(test_samples, tree.images, input_size=cfg.input_size, box_mode=cfg.eval_box)
    # The sampler shuffles with (seed, epoch): a resumed run sees the same order as an unbroken one.
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed,
                                 drop_last=False)
    loader_args = dict(num_workers=cfg.workers, pin_memory=torch.cuda.is_available(),
                       persistent_workers=False)
    train_loader = DataLoader(train_set, batch_size=micro_batch, sampler=sampler, drop_last=False,
                              **loader_args)
    test_loader = DataLoader(test_set, batch_size=micro_batch, shuffle=False, **loader_args)
    return train_loader, test_loader, attribute_matrix(test_samples)


def _rng_state() -> dict:
    # Tensors, ints and lists only, so the checkpoint loads with torch.load(weights_only=True).
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict, path: Path) -> None:
    """``torch.save`` to ``path`` atomically (``model.io.atomic_write``: fsynced, then renamed)."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # file systems without hard links
        shutil.copyfile(source, target)


def _link_best(work_dir: Path) -> None:
    """best.pth becomes the checkpoint just written (a hard link, a copy where links fail), atomically."""
    atomic_write(work_dir / BEST_NAME, lambda tmp: _link_or_copy(work_dir / CHECKPOINT_NAME, tmp))


def init_head(model: LandmarkRegressor, recipe: Recipe) -> LandmarkRegressor:
    """Start a new head as the recipe does: ``fc.weight ~ Normal(0, std)``, constant ``fc.bias``."""
    torch.nn.init.normal_(model.fc.weight, mean=0.0, std=recipe.head_init_std)
    torch.nn.init.constant_(model.fc.bias, recipe.head_init_bias)
    return model


def _build_model(cfg: TrainConfig) -> LandmarkRegressor:
    """The model a run starts from; a new head (``imagenet``, ``none``) goes through ``init_head``."""
    recipe = get_recipe(cfg.recipe)
    if cfg.pretrained == "imagenet":
        return init_head(imagenet_initialised(), recipe)
    if cfg.pretrained == "none":
        return init_head(LandmarkRegressor(), recipe)
    if Path(cfg.pretrained).is_file():
        return load_regressor(cfg.pretrained)
    raise ValueError(f"--pretrained {cfg.pretrained!r} is not supported: use 'imagenet', 'none' "
                     f"or the path of an existing checkpoint")


def _check_config(cfg: TrainConfig, world: int) -> tuple[int, int]:
    """Per-process batch and micro-batch, after checking the settings that can be wrong.

    Every bad setting raises ``ValueError`` naming the flag and the value.
    """
    get_recipe(cfg.recipe)
    if not cfg.wflw_root:
        raise ValueError("wflw_root is required (--wflw-root)")
    if cfg.eval_box not in BOX_MODES:
        raise ValueError(f"--eval-box {cfg.eval_box!r} is not supported: use one of {BOX_MODES}")
    check_flip_convention(cfg.flip_convention)
    if cfg.pretrained not in ("imagenet", "none") and not Path(cfg.pretrained).is_file():
        raise ValueError(f"--pretrained {cfg.pretrained!r} is not supported: use 'imagenet', 'none' "
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
    return per_rank, micro


@dataclass
class Progress:
    """Where a run stands: the next epoch, the best evaluation so far and the last one."""

    start_epoch: int = 0
    best_nme: float = math.inf
    best_epoch: int = -1
    last: dict = field(default_factory=dict)


def _resume(work_dir: Path, model, optimizer, scheduler, rank: int) -> Progress:
    """Load model, optimiser, scheduler and RNG state from WORK_DIR/checkpoint.pth."""
    ckpt = read_checkpoint(work_dir / CHECKPOINT_NAME)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    _set_rng_state(ckpt["rng"])
    progress = Progress(ckpt["epoch"] + 1, ckpt["best_nme"], ckpt["best_epoch"])
    if rank == 0:
        log_line(work_dir, f"resumed from {work_dir / CHECKPOINT_NAME} at epoch {progress.start_epoch}, "
                           f"iteration {scheduler.last_epoch}, lr {optimizer.param_groups[0]['lr']:.6e}")
    return progress


def _evaluate_and_save(cfg: TrainConfig, epoch: int, progress: Progress, model, optimizer, scheduler,
                       test_loader, test_attributes, device, work_dir: Path, writer) -> None:
    """Evaluate on the test set, write checkpoint.pth and, when the NME improved, best.pth (rank 0)."""
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
        "rng": _rng_state(), "config": dataclasses.asdict(cfg),
        "nme": float(result["nme"]), "best_nme": float(progress.best_nme), "best_epoch": progress.best_epoch,
    }, work_dir / CHECKPOINT_NAME)
    if improved:
        _link_best(work_dir)
    log_line(work_dir, f"saved {work_dir / CHECKPOINT_NAME}" + (f" and {BEST_NAME}" if improved else ""))


def _start_processes(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    """World size, rank and device of this process; joins the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if world > 1:
        if use_cuda:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return world, rank, device


def main(cfg: TrainConfig) -> dict:
    """Run (or resume) training; returns the last evaluation and the best NME (rank 0)."""
    cfg = resolve_config(cfg)
    per_rank, micro = _check_config(cfg, int(os.environ.get("WORLD_SIZE", "1")))
    world, rank, device = _start_processes(cfg)
    work_dir = Path(cfg.work_dir)
    if rank == 0:
        work_dir.mkdir(parents=True, exist_ok=True)
        log_line(work_dir, f"config: {dataclasses.asdict(cfg)}")
        log_line(work_dir, f"processes {world}, per-process batch {per_rank} = {per_rank // micro} x {micro}, "
                           f"BatchNorm over {min(micro, cfg.bn_group or micro)}-image groups")
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    train_loader, test_loader, test_attributes = build_loaders(cfg, rank, world, micro)
    steps_per_epoch = math.ceil(len(train_loader.sampler) / per_rank)
    model = _build_model(cfg)
    model = (use_ghost_batchnorm(model, cfg.bn_group) if cfg.bn_group else model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, steps_per_epoch, cfg))
    progress = _resume(work_dir, model, optimizer, scheduler, rank) if cfg.resume else Progress()
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else model
    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(work_dir / "tb"))
        log_line(work_dir, f"{len(train_loader.dataset)} train faces, {steps_per_epoch} steps per epoch, "
                           f"{len(test_loader.dataset)} test faces")
    for epoch in range(progress.start_epoch, cfg.epochs):
        train_loader.sampler.set_epoch(epoch)
        train_loader.dataset.set_epoch(epoch)
        stats = train_one_epoch(net, SoftWingLoss(), optimizer, scheduler, train_loader, device, epoch, cfg,
                                steps_per_epoch, per_rank, work_dir, writer)
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


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """One dashed flag per ``TrainConfig`` field (booleans: ``--amp`` / ``--no-amp``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        annotation = hints[f.name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        kwargs = {"default": default, "help": f.metadata["help"], "dest": f.name}
        if annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _flag_type(annotation)
            if typing.get_origin(annotation) is list:
                kwargs["nargs"] = "*"
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        if f.name == "wflw_root":
            kwargs["required"] = True
        parser.add_argument("--" + f.name.replace("_", "-"), **kwargs)
    return TrainConfig(**vars(parser.parse_args(argv)))


if __name__ == "__main__":
    main(parse_args(sys.argv[1:]))
