"""Train the DeepPose-style ResNet-50 regressor on WFLW with the published recipe.

One process:   python -m training.train --wflw-root data/wflw --work-dir work/res50
Eight GPUs:    torchrun --nproc_per_node 8 -m training.train --wflw-root data/wflw --work-dir work/res50

The defaults are mmpose's td-reg_res50_softwingloss_8xb64-210e_wflw-256x256: Adam lr 5e-4, total
batch 512, linear warm-up over 500 iterations from 0.001 x lr, lr x 0.1 at epochs 170 and 200,
210 epochs, evaluation every 10 epochs. ``--batch-size`` is the total over all processes; when it
does not fit in memory, ``--max-images-per-step`` splits each process's share into accumulated
micro-batches, so the optimisation is the same.

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
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from model.constants import INPUT_SIZE
from model.layout import FLIP_INDICES
from model.network import LandmarkRegressor, imagenet_initialised, load_regressor, normalize, read_checkpoint
from training.augment import AugmentParams
from training.loss import SoftWingLoss
from training.metrics import nme, subset_table, summarize
from training.wflw import BOX_MODES, WFLWDataset, attribute_matrix, find_wflw_root, load_wflw_txt

CHECKPOINT_NAME = "checkpoint.pth"
BEST_NAME = "best.pth"
LOG_NAME = "log.txt"
HEAD_INIT_STD = 0.001  # new fc.weight ~ Normal(0, std); mmpose's DeepPose 0.01 starts ~0.7 crop off here
HEAD_INIT_BIAS = 0.5  # a new fc.bias: the crop centre (crop pixels / input size), where faces sit


@dataclass
class TrainConfig:
    """Every setting of a run; the defaults reproduce the published checkpoint."""

    # data
    wflw_root: str = field(default="", metadata={"help": "WFLW root (WFLW_images/, WFLW_annotations/)"})
    work_dir: str = field(default="work_dirs/res50_wflw_256", metadata={"help": "output folder"})
    input_size: int = field(default=INPUT_SIZE, metadata={"help": "crop side in pixels (256 = published)"})
    workers: int = field(default=4, metadata={"help": "data loading processes per training process"})
    # optimisation
    epochs: int = field(default=210, metadata={"help": "number of epochs"})
    batch_size: int = field(default=512, metadata={"help": "total batch over all processes (64 x 8 GPUs)"})
    max_images_per_step: int = field(default=0, metadata={
        "help": "largest micro-batch per process; smaller than the per-process batch means gradient "
                "accumulation (0 = the whole per-process batch at once)"})
    lr: float = field(default=5e-4, metadata={"help": "Adam learning rate (no weight decay)"})
    warmup_iters: int = field(default=500, metadata={"help": "linear warm-up length in optimiser steps"})
    warmup_ratio: float = field(default=0.001, metadata={"help": "warm-up starts at this x lr"})
    milestones: list[int] = field(default_factory=lambda: [170, 200], metadata={
        "help": "epochs after which lr is multiplied by --gamma"})
    gamma: float = field(default=0.1, metadata={"help": "lr decay factor at each milestone"})
    pretrained: str = field(default="imagenet", metadata={
        "help": "initial weights: 'imagenet' (torchvision IMAGENET1K_V1 trunk), 'none', or a checkpoint path"})
    amp: bool = field(default=False, metadata={"help": "bf16 autocast on CUDA"})
    seed: int = field(default=0, metadata={"help": "seed of the sampler, augmentation and init"})
    # evaluation, checkpoints, logging
    eval_interval: int = field(default=10, metadata={"help": "evaluate and save every N epochs (and at the end)"})
    eval_box: str = field(default="landmarks", metadata={"help": f"evaluation crop box: {' | '.join(BOX_MODES)}"})
    flip_test: bool = field(default=True, metadata={"help": "average with the mirrored crop at evaluation"})
    resume: bool = field(default=False, metadata={"help": "continue from WORK_DIR/checkpoint.pth"})
    print_freq: int = field(default=10, metadata={"help": "log a progress line every N optimiser steps"})
    device: str = field(default="auto", metadata={"help": "'auto' (CUDA when present), 'cuda' or 'cpu'"})


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def log_line(work_dir: Path, text: str) -> None:
    """Print and append to the run's log file (callers check the rank)."""
    tqdm.write(text)
    with open(work_dir / LOG_NAME, "a", encoding="utf-8") as f:
        f.write(text + "\n")


def lr_factor(iteration: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Multiplier of ``cfg.lr`` at an optimiser step: linear warm-up times the step decay."""
    epoch = iteration // steps_per_epoch
    decay = cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    if iteration < cfg.warmup_iters:
        warm = cfg.warmup_ratio + (1.0 - cfg.warmup_ratio) * iteration / cfg.warmup_iters
        return warm * decay
    return decay


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
             attributes: np.ndarray | None = None) -> dict:
    """Test-set NME of the model on the loader's un-augmented crops.

    NME is computed in crop coordinates: the crop is a similarity transform of the image, and NME
    (an error divided by a distance) is unchanged by it.

    Returns:
        {"nme", "fr", "auc", "num_faces"} fractions for the whole set, "per_image" np.ndarray[N],
        "pred" np.ndarray[N, 98, 2] crop coordinates / input size, and "subsets" when
        ``attributes`` (N, 6) is given.
    """
    model.eval()
    preds, gts = [], []
    for batch in loader:
        images = batch["image"].to(device)
        size = images.shape[1]
        out = model(normalize(images)).float()
        if flip_test:
            mirrored = model(normalize(torch.flip(images, dims=[2]))).float()[:, FLIP_INDICES]
            mirrored[..., 0] = 1.0 - mirrored[..., 0] - 1.0 / size  # crop pixel x -> size - 1 - x
            out = (out + mirrored) / 2.0
        preds.append(out.cpu().numpy())
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
    train_set = WFLWDataset(load_wflw_txt(tree.annotations("train")), tree.images,
                            input_size=cfg.input_size, augment=AugmentParams(), seed=cfg.seed)
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
    """Write to a temporary name in the same folder, then rename over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _link_best(work_dir: Path) -> None:
    # best.pth shares the bytes of the checkpoint just written (a hard link; copied where links fail).
    tmp = work_dir / f".{BEST_NAME}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        os.link(work_dir / CHECKPOINT_NAME, tmp)
    except OSError:
        import shutil

        shutil.copyfile(work_dir / CHECKPOINT_NAME, tmp)
    os.replace(tmp, work_dir / BEST_NAME)


def init_head(model: LandmarkRegressor) -> LandmarkRegressor:
    """Start a new head near the crop centre: small random weights, bias ``HEAD_INIT_BIAS``.

    The default ``Linear`` init puts the first predictions about one crop width off, and Adam
    spends most of a short run removing that offset (docs/notes/training.md, "Learning proof").
    """
    torch.nn.init.normal_(model.fc.weight, mean=0.0, std=HEAD_INIT_STD)
    torch.nn.init.constant_(model.fc.bias, HEAD_INIT_BIAS)
    return model


def _build_model(cfg: TrainConfig) -> LandmarkRegressor:
    """The model a run starts from; a new head (``imagenet``, ``none``) goes through ``init_head``."""
    if cfg.pretrained == "imagenet":
        return init_head(imagenet_initialised())
    if cfg.pretrained == "none":
        return init_head(LandmarkRegressor())
    if Path(cfg.pretrained).is_file():
        return load_regressor(cfg.pretrained)
    raise RuntimeError(f"--pretrained {cfg.pretrained!r} is not supported: use 'imagenet', 'none' "
                       f"or the path of an existing checkpoint")


def _check_config(cfg: TrainConfig, world: int) -> tuple[int, int]:
    """Per-process batch and micro-batch, after checking the settings that can be wrong."""
    if not cfg.wflw_root:
        raise ValueError("wflw_root is required (--wflw-root)")
    if cfg.eval_box not in BOX_MODES:
        raise RuntimeError(f"--eval-box {cfg.eval_box!r} is not supported: use one of {BOX_MODES}")
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
    return per_rank, micro


def main(cfg: TrainConfig) -> dict:
    """Run (or resume) training; returns the last evaluation and the best NME (rank 0)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    per_rank, micro = _check_config(cfg, world)
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if world > 1:
        if use_cuda:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    work_dir = Path(cfg.work_dir)
    if rank == 0:
        work_dir.mkdir(parents=True, exist_ok=True)
        log_line(work_dir, f"config: {dataclasses.asdict(cfg)}")
        log_line(work_dir, f"processes {world}, per-process batch {per_rank} = {per_rank // micro} x {micro}")
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)

    train_loader, test_loader, test_attributes = build_loaders(cfg, rank, world, micro)
    steps_per_epoch = math.ceil(len(train_loader.sampler) / per_rank)
    model = _build_model(cfg).to(device)
    criterion = SoftWingLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: lr_factor(it, steps_per_epoch, cfg))

    start_epoch, best_nme, best_epoch, result = 0, math.inf, -1, {}
    if cfg.resume:
        ckpt = read_checkpoint(work_dir / CHECKPOINT_NAME)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        _set_rng_state(ckpt["rng"])
        start_epoch, best_nme, best_epoch = ckpt["epoch"] + 1, ckpt["best_nme"], ckpt["best_epoch"]
        if rank == 0:
            log_line(work_dir, f"resumed from {work_dir / CHECKPOINT_NAME} at epoch {start_epoch}, "
                               f"iteration {scheduler.last_epoch}, lr {optimizer.param_groups[0]['lr']:.6e}")
    net = DistributedDataParallel(model, device_ids=[local_rank] if use_cuda else None) if world > 1 else model
    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(work_dir / "tb"))
        log_line(work_dir, f"{len(train_loader.dataset)} train faces, {steps_per_epoch} steps per epoch, "
                           f"{len(test_loader.dataset)} test faces")

    for epoch in range(start_epoch, cfg.epochs):
        train_loader.sampler.set_epoch(epoch)
        train_loader.dataset.set_epoch(epoch)
        stats = train_one_epoch(net, criterion, optimizer, scheduler, train_loader, device, epoch, cfg,
                                steps_per_epoch, per_rank, work_dir, writer)
        if rank == 0:
            log_line(work_dir, f"epoch {epoch} done: loss {stats['loss']:.4f} lr {stats['lr']:.6e} "
                               f"images/s {stats['images_per_s']:.1f} time {stats['time']:.1f}s")
            for key in ("loss", "lr", "images_per_s"):
                writer.add_scalar(f"train/{key}", stats[key], epoch)
        if (epoch + 1) % cfg.eval_interval == 0 or epoch + 1 == cfg.epochs:
            if rank == 0:
                result = evaluate(model, test_loader, device, cfg.flip_test, test_attributes)
                improved = result["nme"] < best_nme
                if improved:
                    best_nme, best_epoch = result["nme"], epoch
                log_line(work_dir, f"epoch {epoch} eval: nme {100 * result['nme']:.3f}% "
                                   f"fr@0.1 {100 * result['fr']:.2f}% auc@0.1 {result['auc']:.4f} "
                                   f"(best {100 * best_nme:.3f}% at epoch {best_epoch})")
                for key in ("nme", "fr", "auc"):
                    writer.add_scalar(f"eval/{key}", result[key], epoch)
                save_checkpoint({
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "epoch": epoch, "iteration": scheduler.last_epoch,
                    "rng": _rng_state(), "config": dataclasses.asdict(cfg),
                    "nme": float(result["nme"]), "best_nme": float(best_nme), "best_epoch": best_epoch,
                }, work_dir / CHECKPOINT_NAME)
                if improved:
                    _link_best(work_dir)
                log_line(work_dir, f"saved {work_dir / CHECKPOINT_NAME}" + (f" and {BEST_NAME}" if improved else ""))
            if world > 1:
                dist.barrier()
    if writer is not None:
        writer.close()
    if world > 1:
        dist.destroy_process_group()
    return {"last": result, "best_nme": best_nme, "best_epoch": best_epoch, "steps_per_epoch": steps_per_epoch}


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """One dashed flag per ``TrainConfig`` field (booleans: ``--amp`` / ``--no-amp``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        kwargs = {"default": default, "help": f.metadata["help"], "dest": f.name}
        if f.type in ("bool", bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif f.name == "milestones":
            kwargs.update(type=int, nargs="*")
        else:
            kwargs["type"] = {"int": int, "float": float, "str": str}[f.type]
        if f.name == "wflw_root":
            kwargs["required"] = True
        parser.add_argument(flag, **kwargs)
    return TrainConfig(**vars(parser.parse_args(argv)))


if __name__ == "__main__":
    main(parse_args(sys.argv[1:]))
