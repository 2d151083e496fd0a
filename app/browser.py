"""WFLW browser tab callbacks: summary table, CED curve, per-landmark error, worst-first gallery.

All numbers come from ``training.metrics`` on the ``app.wflw_data.WFLWTestSet`` of the context;
this module only formats them and draws the faces.
"""
from __future__ import annotations

from functools import lru_cache

import gradio as gr
import numpy as np
import pandas as pd

from app.context import AppContext
from model.draw import draw_ground_truth, draw_landmarks
from model.geometry import landmark_box
from model.image import ImageError, read_image
from model.layout import ATTRIBUTES, POINT_REGION, REGION_COLORS
from model.pipeline import crop_faces
from training import metrics
from training.wflw import resolve_image

# Most faces shown in the gallery at once (each is a crop of a full image, read from disk).
GALLERY_MAX = 60
THUMB_SIZE = 160
VIEW_SIZE = 512
# The face view shows this much context around the landmarks (crop side / landmark extent).
VIEW_PADDING = 1.6
SUBSET_CHOICES = ["all", *ATTRIBUTES]


def _testset(ctx: AppContext):
    if ctx.testset is None:
        raise gr.Error("No WFLW root loaded. " + ctx.wflw_message)
    return ctx.testset


def status(ctx: AppContext) -> str:
    ts = ctx.testset
    if ts is None:
        return "### No WFLW data\n" + ctx.wflw_message
    if ts.nme is None:
        how = ("press **Compute predictions** to run the loaded model on every face"
               if ctx.predictor is not None else
               "pass `--predictions predictions.json` (from `python -m training.evaluate`) or load weights")
        return f"**{len(ts)} test faces** in `{ts.tree.root}`; no predictions yet: {how}."
    return (f"**{len(ts)} test faces** in `{ts.tree.root}`, predictions: {ts.source}. "
            f"NME {100 * float(np.mean(ts.nme)):.2f} % (inter-ocular).")


def summary_table(ctx: AppContext) -> pd.DataFrame:
    """Rows NME (%), FR@0.1 (%), AUC@0.1, faces; columns the full set and the six subsets."""
    ts = ctx.testset
    columns = ["metric", "full", *ATTRIBUTES]
    if ts is None or ts.nme is None:
        return pd.DataFrame(columns=columns)
    table = metrics.subset_table(ts.nme, ts.flags)
    rows = []
    for label, key, scale, digits in (("NME (%)", "nme", 100, 2), ("FR@0.1 (%)", "fr", 100, 2),
                                      ("AUC@0.1", "auc", 1, 4)):
        rows.append([label, *[None if table[c]["num_faces"] == 0 else round(scale * table[c][key], digits)
                              for c in columns[1:]]])
    rows.append(["faces", *[table[c]["num_faces"] for c in columns[1:]]])
    return pd.DataFrame(rows, columns=columns)


def ced_plot(ctx: AppContext):
    ts = ctx.testset
    if ts is None or ts.nme is None:
        return None
    curves = {"full": ts.nme}
    for j, name in enumerate(ATTRIBUTES):
        if ts.flags[:, j].any():
            curves[name] = ts.nme[ts.flags[:, j]]
    return metrics.ced_figure(curves)


def landmark_plot(ctx: AppContext):
    """Bar chart of each point's mean normalised error, coloured by region."""
    ts = ctx.testset
    if ts is None or ts.nme is None:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    errors = metrics.per_landmark_error(ts.pred, ts.gt)
    fig = Figure(figsize=(6, 3), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colors = [np.array(REGION_COLORS[r]) / 255.0 for r in POINT_REGION]
    ax.bar(np.arange(len(errors)), 100 * errors, color=colors, width=0.9)
    ax.set_xlabel("landmark index")
    ax.set_ylabel("mean NME (%)")
    ax.set_title("Per-landmark error")
    ax.set_xlim(-1, len(errors))
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def overview(ctx: AppContext):
    """(status, summary table, CED figure, per-landmark figure)."""
    return status(ctx), summary_table(ctx), ced_plot(ctx), landmark_plot(ctx)


def compute(ctx: AppContext, progress=gr.Progress()):
    """Run the loaded model on the whole test set (progress bar), then refresh the overview."""
    ts = _testset(ctx)
    if ctx.predictor is None:
        raise gr.Error("The 98-point model is not loaded, so predictions cannot be computed. " + (ctx.banner or ""))
    try:
        ts.compute_predictions(ctx.predictor, progress=progress.tqdm)
    except (ValueError, FileNotFoundError) as exc:
        raise gr.Error(str(exc)) from None
    return overview(ctx)


@lru_cache(maxsize=16)
def _image(images_dir: str, image_path: str) -> np.ndarray:
    """Recently viewed dataset images (the gallery shows several faces per image)."""
    return read_image(resolve_image(images_dir, image_path), name=image_path)


def face_view(ctx: AppContext, index: int, size: int = VIEW_SIZE, corrections: dict | None = None,
              labels: bool = False):
    """Face ``index`` drawn with ground truth (green rings), prediction (region colours), error
    lines (magenta) and corrected points (white rings), cropped around its landmarks.

    Returns:
        (view (size, size, 3) uint8, (2, 3) image -> view matrix).
    """
    ts = _testset(ctx)
    sample = ts.samples[index]
    try:
        image = _image(str(ts.tree.images), sample.image)
    except (ImageError, ValueError) as exc:
        raise gr.Error(str(exc)) from None
    pred = ts.pred[index] if ts.pred is not None else None
    out = draw_ground_truth(image, sample.landmarks, pred)
    if pred is not None:
        out = draw_landmarks(out, pred, labels=labels)
    if corrections:
        fixed = np.array(sample.landmarks, dtype=np.float64, copy=True)
        for point, xy in corrections.items():
            fixed[int(point)] = xy
        out = draw_ground_truth(out, fixed[list(map(int, corrections))], None)
        out = draw_landmarks(out, fixed[list(map(int, corrections))], radius=2)
    views, matrices = crop_faces(out, landmark_box(sample.landmarks)[None], size=size, padding=VIEW_PADDING)
    return views[0], matrices[0]


def gallery(ctx: AppContext, subset: str, nme_min: float, nme_max: float):
    """Faces worst first within the filter: ([(thumbnail, caption)], order (list of indices), count)."""
    ts = ctx.testset
    if ts is None or ts.nme is None:
        return [], [], status(ctx)
    lo, hi = sorted((float(nme_min or 0.0), float(nme_max if nme_max is not None else 100.0)))
    try:
        order = ts.order(subset or "all", (lo / 100.0, hi / 100.0))
    except ValueError as exc:
        raise gr.Error(str(exc)) from None
    shown = order[:GALLERY_MAX]
    items = []
    for rank, index in enumerate(shown, start=1):
        thumb, _ = face_view(ctx, int(index), size=THUMB_SIZE)
        items.append((thumb, f"#{rank} · NME {100 * ts.nme[index]:.2f}% · face {index}"))
    count = (f"{len(order)} face(s) match ({subset}, NME {lo:g}–{hi:g} %), worst first"
             + (f"; showing the first {GALLERY_MAX}" if len(order) > GALLERY_MAX else "") + ".")
    return items, [int(i) for i in order], count


def describe_face(ctx: AppContext, index: int) -> str:
    ts = _testset(ctx)
    sample = ts.samples[index]
    attrs = [name for name, on in zip(ATTRIBUTES, ts.flags[index]) if on] or ["none"]
    text = f"**Face {index}** · `{sample.image}`\n\nAttributes: {', '.join(attrs)}"
    if ts.nme is not None:
        rank, total = ts.rank(float(ts.nme[index]))
        text += f"\n\nNME **{100 * ts.nme[index]:.2f} %** · rank {rank} of {total} (1 = worst)"
    return text


def open_face(ctx: AppContext, order: list[int], evt: gr.SelectData):
    """Gallery click -> (large view, description, the face index for the review tab)."""
    if not order or evt.index is None or evt.index >= len(order):
        raise gr.Error("Select a face in the gallery.")
    index = int(order[evt.index])
    view, _ = face_view(ctx, index)
    return view, describe_face(ctx, index), index
