"""The two published training recipes and what they fix: augmentation, head start, evaluation, flip test.

Both share mmpose's optimisation (Adam lr 5e-4, total batch 512 = 64 per GPU x 8 GPUs, mmcv's
linear warm-up over 500 iterations from 0.001 x lr, lr x 0.1 at epochs 170 and 200, 210 epochs,
best.pth kept by test NME); those settings are ``training.train.TrainConfig``'s defaults.
``mmpose-0.x`` (the default) is the config that produced the published checkpoint, ``mmpose-1.x``
its later conversion.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from model.network import LandmarkRegressor
from training.augment import MMPOSE_0X_AUGMENT, MMPOSE_1X_AUGMENT, AugmentParams


@dataclass(frozen=True)
class Recipe:
    """What one published mmpose config fixes beyond the shared optimisation settings.

    Attributes:
        name: the ``--recipe`` choice.
        augment: the random flip / shift / scale / rotation draws (``training.augment``).
        head_init_std, head_init_bias: a new head's ``fc.weight ~ Normal(0, std)`` and constant
            ``fc.bias`` (a checkpoint keeps its own head).
        eval_interval: epochs between test evaluations (best.pth is kept by test NME in both).
        flip_convention: the flip-back formula of the test-time flip (``model.codec``); best.pth is
            chosen by the NME under it, and it is stored in every checkpoint's ``config``.
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


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; ``ValueError`` naming it and the choices otherwise."""
    if name not in RECIPES:
        raise ValueError(f"recipe {name!r} is not supported: use one of {tuple(RECIPES)}")
    return RECIPES[name]


def warmup_factor(iteration: int, warmup_iters: int, ratio: float) -> float:
    """mmcv's linear warm-up: 1 - (1 - ratio) x (1 - iteration / warmup_iters), then 1."""
    if iteration >= warmup_iters:
        return 1.0
    return 1.0 - (1.0 - ratio) * (1.0 - iteration / warmup_iters)


def init_head(model: LandmarkRegressor, recipe: Recipe) -> LandmarkRegressor:
    """Start a new head as the recipe does: ``fc.weight ~ Normal(0, std)``, constant ``fc.bias``."""
    torch.nn.init.normal_(model.fc.weight, mean=0.0, std=recipe.head_init_std)
    torch.nn.init.constant_(model.fc.bias, recipe.head_init_bias)
    return model
