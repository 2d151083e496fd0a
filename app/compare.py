"""The WFLW browser's comparison of two prediction files: per-face NME of a baseline A and a
candidate B, largest regression first, and both drawn on a face when its row is clicked."""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd

from app.context import AppContext
from app.wflw_faces import describe_face, face_view, require_testset, selected_row
from training import metrics
from training.evaluate import read_predictions, read_predictions_meta

# Rows of the comparison table.
COMPARE_ROWS = 100
COMPARE_COLUMNS = ["rank", "face", "NME A (%)", "NME B (%)", "delta (pp)", "image"]


def _read_other(ctx: AppContext, path: str | None, what: str):
    """(pred, label) of an uploaded predictions file, or of the loaded predictions when ``path`` is empty."""
    ts = require_testset(ctx)
    if not path:
        if ts.pred is None:
            raise gr.Error(f"{what}: choose a predictions file (no predictions are loaded).", print_exception=False)
        return ts.pred, ts.source or "loaded predictions"
    try:
        meta = read_predictions_meta(path)
        pred = read_predictions(path, ts.test_samples)
    except (ValueError, FileNotFoundError) as exc:
        raise gr.Error(f"{what}: {exc}", print_exception=False) from None
    return pred, f"{Path(path).name} ({meta.get('checkpoint', 'checkpoint unknown')})"


def compare(ctx: AppContext, path_a: str | None, path_b: str | None):
    """Per-face NME of two prediction files for the test split (A: baseline, the loaded predictions
    when empty; B: candidate), sorted by the largest regression of B (NME B - NME A) first.

    Returns:
        (summary Markdown, table, state {"order", "a", "b"} for opening a row).
    """
    ts = require_testset(ctx)
    if not path_b:
        raise gr.Error("Choose the predictions file B to compare.", print_exception=False)
    pred_a, label_a = _read_other(ctx, path_a, "A")
    pred_b, label_b = _read_other(ctx, path_b, "B")
    gt = ts.gt[: ts.num_test]
    nme_a, nme_b = metrics.nme(pred_a, gt), metrics.nme(pred_b, gt)
    delta = nme_b - nme_a
    order = np.argsort(-delta, kind="stable")
    rows = [[rank, int(i), round(100 * nme_a[i], 2), round(100 * nme_b[i], 2), round(100 * delta[i], 2),
             ts.samples[i].image] for rank, i in enumerate(order[:COMPARE_ROWS], start=1)]
    worse, better = int(np.sum(delta > 0)), int(np.sum(delta < 0))
    summary = (f"**A** {label_a}: NME {100 * nme_a.mean():.2f} % · **B** {label_b}: NME {100 * nme_b.mean():.2f} %. "
               f"B is worse on {worse} face(s) and better on {better}; largest regression first "
               f"(delta = NME B - NME A, percentage points). Click a row to see both on the face.")
    if ts.kind == "annotate":
        split = "The one face is" if ts.num_test == 1 else f"The {ts.num_test} faces are"
        summary += (f" {split} this dataset's test split, and NME is measured against its "
                    "own annotations (model or human made), not an independent ground truth.")
    return summary, pd.DataFrame(rows, columns=COMPARE_COLUMNS), {
        "order": [int(i) for i in order[:COMPARE_ROWS]], "a": pred_a, "b": pred_b}


def compare_open(ctx: AppContext, state: dict | None, evt: gr.SelectData):
    """A comparison row clicked: (face with A's prediction, face with B's prediction, description)."""
    if not state:
        raise gr.Error("Run a comparison first.", print_exception=False)
    index = state["order"][selected_row(evt, len(state["order"]), "comparison table")]
    return (face_view(ctx, index, pred=np.asarray(state["a"][index])),
            face_view(ctx, index, pred=np.asarray(state["b"][index])), describe_face(ctx, index))
