"""Predictions made in the app for the faces it holds (WFLW's test split, or every face of an own-photo
dataset: split "all"): computed with the loaded model (at background priority), kept beside the review
database, found again at the next start, and their provenance (which checkpoint, split, flip test,
box mode) for the browser's status line, Compare and the review export.
"""
from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr
from PIL import Image

from app.context import AppContext
from app.wflw_faces import require_testset
from training.evaluate import (DEFAULT_SPLIT, EvaluationCancelled, predict_samples, prediction_meta,
                               write_predictions)
from model.formats.wflw import resolve_image

log = logging.getLogger(__name__)

# Crop box the app's own predictions use: mmpose's test boxes from the landmarks (how 4.44 was measured).
BOX_MODE = "landmarks"
# Computed predictions are written beside the review database under its stem plus this suffix.
PREDICTIONS_SUFFIX = ".predictions.json"


def predictions_path(ctx: AppContext) -> Path | None:
    """Where computed predictions are kept: beside the review database, ``<db stem>.predictions.json``."""
    if ctx.store is None:
        return None
    path = Path(ctx.store.path)
    return path.with_name(path.stem + PREDICTIONS_SUFFIX)


def restore_predictions(ctx: AppContext) -> str | None:
    """At start-up: load the predictions an earlier run computed, when there are none yet.

    Returns a line for the log, or ``None`` when there was nothing to load.
    """
    ts, path = ctx.testset, predictions_path(ctx)
    if ts is None or ts.pred is not None or path is None or not path.is_file():
        return None
    try:
        ts.load_predictions(path)
    except (ValueError, FileNotFoundError) as exc:
        log.warning("saved predictions not loaded: %s", exc)
        return f"saved predictions not loaded: {exc}"
    return f"predictions loaded from {path}"


def _weights_path(ctx: AppContext) -> Path | None:
    path = getattr(ctx.predictor, "weights_path", None)
    return Path(path) if path and Path(path).is_file() else None


def model_meta(ctx: AppContext, unknown: str | None) -> dict:
    """Provenance of predictions the loaded model makes here for the split the app holds
    (``training.evaluate.prediction_meta``); ``unknown`` stands for the checkpoint name and sha256
    when the weights are not a file."""
    p = ctx.predictor
    settings = dict(flip_test=bool(p.flip_test), flip_convention=p.flip_convention, box_mode=BOX_MODE,
                    input_size=int(p.input_size), split=DEFAULT_SPLIT if ctx.testset is None else ctx.testset.split)
    weights = _weights_path(ctx)
    if weights is not None:
        return prediction_meta(weights, **settings)
    return {"checkpoint": unknown, "sha256": None if unknown is None else "", **settings}


def provenance(ctx: AppContext) -> dict:
    """What produced the predictions under review: checkpoint file name and sha256, flip test,
    flip convention, box mode, and the predictions' source."""
    ts, out = ctx.testset, {}
    if ts is not None and ts.meta:
        out.update(ts.meta)
    elif ctx.predictor is not None:
        out.update(model_meta(ctx, unknown=None))
    if ts is not None:
        out["predictions"] = ts.source or None
    return out


def compute(ctx: AppContext, progress=gr.Progress()) -> None:
    """Run the loaded model on every face the app holds (its split: WFLW's test split, or "all" of an
    own-photo dataset; progress bar, cancellable) at background priority (``ctx.batch_predictor``
    when the context has one), keep the predictions beside the review database, labelled with the
    split, and hand them to the face set."""
    ts = require_testset(ctx)
    if ctx.predictor is None:
        raise gr.Error("The 98-point model is not loaded, so predictions cannot be computed. " + (ctx.banner or ""),
                       print_exception=False)
    ts.cancel.clear()
    try:
        pred = predict_samples(getattr(ctx, "batch_predictor", ctx.predictor), ts.samples, ts.tree.images, BOX_MODE,
                               progress=lambda done, total: progress((done, total), unit="image",
                                                                     desc=f"Predicting the {ts.split} split"),
                               cancel=ts.cancel.is_set)
    except EvaluationCancelled as exc:
        raise gr.Error(f"Computation stopped ({exc}); the previous predictions are kept.",
                       print_exception=False) from None
    except (ValueError, FileNotFoundError) as exc:
        raise gr.Error(str(exc), print_exception=False) from None
    meta = {**model_meta(ctx, unknown="unknown"), "made_by": "app"}
    path = predictions_path(ctx)
    if path is not None:
        write_predictions(path, ts.samples, pred, meta)
    ts.set_predictions(pred, path.name if path is not None else "computed", meta)


def cancel_compute(ctx: AppContext) -> None:
    """Ask a running ``compute`` to stop before its next image."""
    if ctx.testset is not None:
        ctx.testset.cancel.set()
        gr.Info("Stopping the computation after the current image.")


def image_sizes(ctx: AppContext) -> dict[str, tuple[int, int]]:
    """``{image: (width, height)}`` of the test images that can be read (headers only)."""
    ts = require_testset(ctx)
    sizes = {}
    for name in {s.image for s in ts.samples}:
        try:
            with Image.open(resolve_image(ts.tree.images, name)) as im:
                sizes[name] = im.size
        except (OSError, ValueError):
            continue
    return sizes
