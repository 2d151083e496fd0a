"""WFLW browser tab callbacks: the overview (status, summary table, CED curve, per-landmark error),
the worst-first gallery, the faces worst at one landmark, and a face opened large.

All numbers come from ``training.metrics`` on the ``app.wflw_data.WFLWTestSet`` of the context;
faces are drawn by ``app.wflw_faces``; predictions computed in the app and their provenance are
``app.stored_predictions``; the comparison of two prediction files is ``app.compare``.
"""
from __future__ import annotations

import gradio as gr
import numpy as np
import pandas as pd

from app import stored_predictions
from app.context import AppContext
from app.review_store import check_landmark_index
from app.wflw_data import RANKINGS
from app.wflw_faces import describe_face, face_view, selected_row
from model.layout import ATTRIBUTES, POINT_REGION
from training import metrics

# Most faces shown in the gallery at once (each is a crop of a full image, read from disk).
GALLERY_MAX = 60
THUMB_SIZE = 160
SUBSET_CHOICES = ["all", *ATTRIBUTES]
# Faces listed for one landmark.
WORST_FACES = 20
LANDMARK_HINT = "Type a landmark index to list the faces where that point is worst."
LANDMARK_COLUMNS = ["rank", "face", "point error (%)", "face NME (%)", "image"]


def status(ctx: AppContext) -> str:
    """One paragraph: how many test faces, where their predictions came from, the NME."""
    ts = ctx.testset
    if ts is None:
        return "### No WFLW data\n" + ctx.wflw_message
    if ts.kind == "annotate":
        return annotated_status(ts)
    if ts.nme is None:
        how = ("press **Compute predictions** to run the loaded model on every face"
               if ctx.predictor is not None else
               "pass --predictions predictions.json (from python -m training.evaluate) or load weights")
        return f"**{len(ts)} test faces** in {ts.tree.root}; no predictions yet: {how}."
    made = ""
    if ts.meta.get("checkpoint"):
        made = (f" (checkpoint {ts.meta['checkpoint']}, flip test {'on' if ts.meta.get('flip_test') else 'off'}, "
                f"{ts.meta.get('box_mode', '?')} boxes)")
    return (f"**{len(ts)} test faces** in {ts.tree.root}, predictions: {ts.source}{made}. "
            f"NME {100 * float(np.mean(ts.nme)):.2f} % (inter-ocular).")


def annotated_status(ts) -> str:
    """The status of a dataset written by ``python -m model.annotate``: its faces, who annotated
    them, and why faces are ranked by flip error or detector score instead of NME."""
    human = sum(source == "human" for source in ts.sources)
    return (f"**{len(ts)} faces** ({ts.num_test} test, {len(ts) - ts.num_test} train) pre-annotated by "
            f"python -m model.annotate in {ts.tree.root}: **{human} human**, **{len(ts) - human} model** annotated. "
            "There is no human ground truth here, so there is **no NME to rank by**: the gallery ranks faces by "
            "flip error (least consistent first) or by detector score (lowest first). The green rings are the "
            "dataset's own points (model or human). An NME from python -m training.evaluate on this dataset "
            "is measured against these annotations, not against an independent ground truth.")


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
    """CED figure of the full set and each non-empty subset (x axis fitted, 10 % marked)."""
    ts = ctx.testset
    if ts is None or ts.nme is None:
        return None
    curves = {"full": ts.nme}
    for j, name in enumerate(ATTRIBUTES):
        if ts.flags[:, j].any():
            curves[name] = ts.nme[ts.flags[:, j]]
    return metrics.ced_figure(curves)


def landmark_plot(ctx: AppContext):
    """Each point's mean error, bars coloured by region with a legend (``metrics.landmark_figure``)."""
    ts = ctx.testset
    if ts is None or ts.nme is None:
        return None
    return metrics.landmark_figure(metrics.per_landmark_error(ts.pred, ts.gt))


def overview(ctx: AppContext):
    """(status, summary table, CED figure, per-landmark figure)."""
    return status(ctx), summary_table(ctx), ced_plot(ctx), landmark_plot(ctx)


def compute(ctx: AppContext, progress=gr.Progress()):
    """``stored_predictions.compute`` (whole test set, kept beside the review database), then the
    refreshed overview."""
    stored_predictions.compute(ctx, progress)
    return overview(ctx)


def caption(rank: int, nme: float, index: int) -> str:
    """Gallery caption: rank, the whole NME (2 decimals) and the face index."""
    return f"#{rank} · NME {100 * nme:.2f}% · face {index}"


def annotated_caption(ts, rank: int, index: int) -> str:
    """Gallery caption of an annotate dataset's face: rank, flip error, detector score, who
    annotated it, its split and index."""
    flip, score = float(ts.flip_errors[index]), float(ts.scores[index])
    flip_text = "flip n/a" if np.isnan(flip) else f"flip {flip:.2f}%"
    return f"#{rank} · {flip_text} · score {score:.3f} · {ts.sources[index]} · {ts.split_of(index)} · face {index}"


def annotated_gallery(ctx: AppContext, ranking: str | None):
    """An annotate dataset's faces ranked by ``ranking`` ("flip error" or "detector score"):
    ([(thumbnail, caption)], order, count line)."""
    ts = ctx.testset
    ranking = ranking or "flip error"
    try:
        order = ts.rank_by(ranking)
    except ValueError as exc:
        raise gr.Error(str(exc), print_exception=False) from None
    items = [(face_view(ctx, int(index), size=THUMB_SIZE), annotated_caption(ts, rank, int(index)))
             for rank, index in enumerate(order[:GALLERY_MAX], start=1)]
    count = (f"{len(order)} face(s), no ground truth to score: ranked by {RANKINGS[ranking]}"
             + (f"; showing the first {GALLERY_MAX}" if len(order) > GALLERY_MAX else "") + ".")
    return items, [int(i) for i in order], count


def parse_upper_bound(text: str | float | None) -> float:
    """The "NME to (%)" box: empty means no upper bound; anything else must be a number >= 0."""
    if text is None or str(text).strip() == "":
        return float("inf")
    try:
        value = float(str(text).strip().rstrip("%"))
    except ValueError:
        raise gr.Error(f"NME to (%) must be a number or empty (no bound), got {text!r}.", print_exception=False) from None
    if not value >= 0:
        raise gr.Error(f"NME to (%) must be at least 0, got {value:g}.", print_exception=False)
    return value


def gallery(ctx: AppContext, subset: str, nme_min: float | None, nme_max: str | None, ranking: str | None = None):
    """Faces worst first within the filter (no upper bound unless one is given):
    ([(thumbnail, caption)], order (list of indices), count line). An annotate dataset's faces are
    ranked by ``ranking`` instead (``annotated_gallery``; the NME filter does not apply)."""
    ts = ctx.testset
    if ts is not None and ts.kind == "annotate":
        return annotated_gallery(ctx, ranking)
    if ts is None or ts.nme is None:
        return [], [], status(ctx)
    lo = float(nme_min or 0.0)
    hi = parse_upper_bound(nme_max)
    lo, hi = min(lo, hi), max(lo, hi)
    try:
        order = ts.order(subset or "all", (lo / 100.0, hi / 100.0))
    except ValueError as exc:
        raise gr.Error(str(exc), print_exception=False) from None
    items = [(face_view(ctx, int(index), size=THUMB_SIZE), caption(rank, float(ts.nme[index]), int(index)))
             for rank, index in enumerate(order[:GALLERY_MAX], start=1)]
    upper = "no upper bound" if hi == float("inf") else f"to {hi:g} %"
    count = (f"{len(order)} face(s) match ({subset}, NME from {lo:g} % {upper}), worst first"
             + (f"; showing the first {GALLERY_MAX}" if len(order) > GALLERY_MAX else "") + ".")
    return items, [int(i) for i in order], count


def open_face(ctx: AppContext, order: list[int], evt: gr.SelectData):
    """Gallery or table click -> (large view, description, the face index for the review tab)."""
    index = int(order[selected_row(evt, len(order or []), "gallery")])
    return face_view(ctx, index), describe_face(ctx, index), index


def landmark_faces(ctx: AppContext, landmark):
    """The faces with the largest error at one landmark: (table update, order of their indices, heading).

    With no landmark chosen the table is hidden and the heading says what to type."""
    ts = ctx.testset
    if ts is None or ts.nme is None or landmark is None or str(landmark).strip() == "":
        return gr.update(value=None, visible=False), [], LANDMARK_HINT
    try:
        point = check_landmark_index(str(landmark).strip(), "Landmark")
    except ValueError as exc:
        raise gr.Error(f"{exc}.", print_exception=False) from None
    errors = metrics.point_errors(ts.pred, ts.gt)[:, point]
    worst = np.argsort(-errors, kind="stable")[:WORST_FACES]
    rows = [[rank, int(i), round(100 * float(errors[i]), 2), round(100 * float(ts.nme[i]), 2), ts.samples[i].image]
            for rank, i in enumerate(worst, start=1)]
    heading = (f"Landmark {point} ({POINT_REGION[point].replace('_', ' ')}): mean error "
               f"{100 * float(errors.mean()):.2f} %; the {len(rows)} worst faces (click a row to open it).")
    return gr.update(value=pd.DataFrame(rows, columns=LANDMARK_COLUMNS), visible=True), [int(i) for i in worst], heading

