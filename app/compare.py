"""The WFLW browser's comparison of two prediction files on one split: per-face NME of a baseline A
and a candidate B, largest regression first, whether A and B were scored alike (flip test and
convention, box mode, input size, split made for), and both drawn on a face when its row is clicked."""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd

from app.context import AppContext
from app.wflw_faces import describe_face, face_view, require_testset, selected_row
from training import metrics
from training.evaluate import DEFAULT_SPLIT, read_predictions, read_predictions_meta
from model.text import counted

# Rows of the comparison table.
COMPARE_ROWS = 100
COMPARE_COLUMNS = ["rank", "face", "NME A (%)", "NME B (%)", "delta (pp)", "image"]
# The settings of predictions.json's meta that change the points, as the summary names them.
SCORING_SETTINGS = {"flip_test": "flip test", "flip_convention": "flip convention", "box_mode": "box mode",
                    "input_size": "input size"}
# The Split control's help: an own-photo dataset offers its three splits, WFLW its test split only.
SPLIT_INFO = "test: the held-out photos (python -m training.evaluate's default); train; all: both"
SPLIT_INFO_WFLW = "the browser holds WFLW's test split (evaluate others with python -m training.evaluate --split)"
# What each split is, for the summary.
SPLIT_WORDS = {"test": "the held-out faces, what `python -m training.evaluate` scores by default",
               "train": "the faces training learns from", "all": "test and train together"}


def _split_indices(ts, split: str) -> np.ndarray:
    try:
        return ts.split_indices(split)
    except ValueError as exc:
        raise gr.Error(f"Split: {exc}.", print_exception=False) from None


def _read_side(ctx: AppContext, path: str | None, what: str, split: str):
    """(pred (n, 98, 2) for the split's faces, label, meta) of one side: an uploaded predictions
    file, or the loaded predictions when ``path`` is empty.

    A file made for the split is read for it; one made for "all" (test then train) is read whole
    and its rows for the split are taken; any other is refused with ``read_predictions``' message.
    """
    ts = require_testset(ctx)
    rows = _split_indices(ts, split)
    if not path:
        if ts.pred is None:
            raise gr.Error(f"{what}: choose a predictions file (no predictions are loaded).", print_exception=False)
        return ts.pred[rows], ts.source or "loaded predictions", {**ts.meta, "split": ts.split}
    try:
        meta = read_predictions_meta(path)
        if meta["split"] == "all" and split != "all" and "all" in ts.splits:
            pred = read_predictions(path, ts.samples, "all")[rows]
        else:
            pred = read_predictions(path, [ts.samples[i] for i in rows], split)
    except (ValueError, FileNotFoundError) as exc:
        raise gr.Error(f"{what}: {exc}", print_exception=False) from None
    return pred, f"{Path(path).name} ({meta.get('checkpoint', 'checkpoint unknown')})", meta


def _setting(meta: dict, key: str) -> str:
    value = meta.get(key)
    if value is None:
        return "unknown"
    return ("on" if value else "off") if isinstance(value, bool) else str(value)


def scoring_note(meta_a: dict, meta_b: dict, split: str, faces: int) -> str:
    """Markdown: whether A and B were made under the same settings (flip test, flip convention when
    both flip, box mode, input size), named plainly when they were not, and the split each was made
    for when they differ."""
    differ = [f"{name} (A {_setting(meta_a, key)}, B {_setting(meta_b, key)})"
              for key, name in SCORING_SETTINGS.items()
              if _setting(meta_a, key) != _setting(meta_b, key)
              and (key != "flip_convention" or (meta_a.get("flip_test") and meta_b.get("flip_test")))]
    if differ:
        text = ("⚠ **Not scored the same way**: A and B differ in " + "; ".join(differ) + ". Part of the NME "
                "difference comes from these settings, not from the models.")
    else:
        flip = _setting(meta_a, "flip_test")
        if meta_a.get("flip_test"):
            flip += f" ({_setting(meta_a, 'flip_convention')})"
        text = (f"A and B were scored alike: flip test {flip}, {_setting(meta_a, 'box_mode')} boxes, "
                f"input size {_setting(meta_a, 'input_size')}.")
    made_a, made_b = meta_a.get("split", DEFAULT_SPLIT), meta_b.get("split", DEFAULT_SPLIT)
    if made_a != made_b:
        text += (f"\n\n⚠ **The splits differ**: A was made for the {made_a} split, B for the {made_b} split; both "
                 f"are compared on the {split} split's {counted(faces, 'face')}.")
    return text


def compare(ctx: AppContext, path_a: str | None, path_b: str | None, split: str | None = DEFAULT_SPLIT):
    """Per-face NME of two prediction files on one split (A: baseline, the loaded predictions when
    empty; B: candidate), sorted by the largest regression of B (NME B - NME A) first.

    Args:
        split: "test", "train" or "all": the faces compared (``WFLWTestSet.split_indices``).

    Returns:
        (summary Markdown, table, state {"order": face indices, "a", "b": their predictions}).
    """
    ts = require_testset(ctx)
    split = split or DEFAULT_SPLIT
    if not path_b:
        raise gr.Error("Choose the predictions file B to compare.", print_exception=False)
    faces = _split_indices(ts, split)
    pred_a, label_a, meta_a = _read_side(ctx, path_a, "A", split)
    pred_b, label_b, meta_b = _read_side(ctx, path_b, "B", split)
    gt = ts.gt[faces]
    nme_a, nme_b = metrics.nme(pred_a, gt), metrics.nme(pred_b, gt)
    delta = nme_b - nme_a
    order = np.argsort(-delta, kind="stable")[:COMPARE_ROWS]
    rows = [[rank, int(faces[i]), round(100 * nme_a[i], 2), round(100 * nme_b[i], 2), round(100 * delta[i], 2),
             ts.samples[faces[i]].image] for rank, i in enumerate(order, start=1)]
    worse, better = int(np.sum(delta > 0)), int(np.sum(delta < 0))
    summary = (f"**Split: {split}**, {counted(len(faces), 'face')} of {len(ts)} ({SPLIT_WORDS[split]}).\n\n"
               f"**A** {label_a}: NME {100 * nme_a.mean():.2f} % · **B** {label_b}: NME {100 * nme_b.mean():.2f} %. "
               f"B is worse on {counted(worse, 'face')} and better on {better}; largest regression first "
               f"(delta = NME B - NME A, percentage points). Click a row to see both on the face.\n\n"
               + scoring_note(meta_a, meta_b, split, len(faces)))
    if ts.kind == "annotate":
        summary += ("\n\nNME is measured against this dataset's own annotations (model or human made), "
                    "not an independent ground truth.")
    return summary, pd.DataFrame(rows, columns=COMPARE_COLUMNS), {
        "order": [int(faces[i]) for i in order], "a": pred_a[order], "b": pred_b[order]}


def compare_open(ctx: AppContext, state: dict | None, evt: gr.SelectData):
    """A comparison row clicked: (face with A's prediction, face with B's prediction, description)."""
    if not state:
        raise gr.Error("Run a comparison first.", print_exception=False)
    row = selected_row(evt, len(state["order"]), "comparison table")
    index = state["order"][row]
    return (face_view(ctx, index, pred=np.asarray(state["a"][row])),
            face_view(ctx, index, pred=np.asarray(state["b"][row])), describe_face(ctx, index))
