"""WFLW browser tab callbacks (``app.tabs.browser`` lays the tab out; ``app.compare`` and
``app.stored_predictions`` hold its comparison and computed predictions): the overview (status, a
note on the metrics' split and what each panel needs, summary table, CED curve, per-landmark error),
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
from model.layout import check_landmark_index
from app.wflw_data import RANKINGS
from app.wflw_faces import describe_face, face_view, selected_row
from model.layout import ATTRIBUTES, POINT_REGION
from training import metrics
from model.text import counted

# Most faces shown in the gallery at once (each is a crop of a full image, read from disk).
GALLERY_MAX = 60
THUMB_SIZE = 160
SUBSET_CHOICES = ["all", *ATTRIBUTES]
# Faces listed for one landmark.
WORST_FACES = 20
LANDMARK_HINT = "Type a landmark index to list the faces where that point is worst."
LANDMARK_NEEDS = "Listing a landmark's worst faces needs predictions (see the metrics above)."
LANDMARK_COLUMNS = ["rank", "face", "point error (%)", "face NME (%)", "image"]


def _provenance(ts) -> str:
    """" (checkpoint X, flip test on (1.x), landmarks boxes)" from the predictions' meta, or ""."""
    meta = ts.meta
    if not meta.get("checkpoint"):
        return ""
    flip = f"on ({meta.get('flip_convention', '?')})" if meta.get("flip_test") else "off"
    return f" (checkpoint {meta['checkpoint']}, flip test {flip}, {meta.get('box_mode', '?')} boxes)"


def _how_to_predict(ctx: AppContext) -> str:
    """Where predictions for the held split come from: the Compute button, or a file of training.evaluate."""
    ts = ctx.testset
    option = "" if ts.split == "test" else f" --split {ts.split}"
    from_file = f"start with `--predictions predictions.json` (`python -m training.evaluate{option}`)"
    if ctx.predictor is None:
        return f"{from_file}, or load weights to compute them here"
    return f"press **Compute predictions** to run the loaded model on every face, or {from_file}"


def status(ctx: AppContext) -> str:
    """One paragraph: how many faces of which split, where their predictions came from, the NME."""
    ts = ctx.testset
    if ts is None:
        return "### No WFLW data\n" + ctx.wflw_message
    if ts.kind == "annotate":
        return annotated_status(ts)
    faces = f"**{counted(len(ts), 'face')}, the {ts.split} split** of {ts.tree.root}"
    if ts.nme is None:
        return f"{faces}; no predictions yet: {_how_to_predict(ctx)}."
    return (f"{faces}, predictions: {ts.source}{_provenance(ts)}. "
            f"NME {100 * float(np.mean(ts.nme)):.2f} % (inter-ocular).")


def annotated_status(ts) -> str:
    """The status of a dataset written by ``python -m model.annotate``: its faces and splits, who
    annotated them, why the gallery ranks by flip error or detector score instead of NME, and
    what an NME means here once there are predictions."""
    human = sum(source == "human" for source in ts.sources)
    head = (f"**{counted(len(ts), 'face')}** ({ts.num_test} test, {len(ts) - ts.num_test} train: the "
            f"{ts.split} split) pre-annotated by python -m model.annotate in {ts.tree.root}: **{human} human**, "
            f"**{len(ts) - human} model** annotated. ")
    if ts.nme is None:
        return head + ("There is no human ground truth here, so there is **no NME to rank by**: the gallery ranks "
                       "faces by flip error (least consistent first) or by detector score (lowest first). The "
                       "green rings are the dataset's own points (model or human).")
    return head + (f"Predictions: {ts.source}{_provenance(ts)}. The gallery still ranks by flip error or detector "
                   "score: the NME in the metrics below measures the predictions against the dataset's own points "
                   "(model or human made), not against an independent ground truth.")


def metric_columns(ts) -> dict[str, np.ndarray]:
    """The face sets the table and the CED curve show, as index arrays, empty ones left out: the
    held split then each WFLW attribute subset, or for an annotate dataset (no attribute flags)
    its splits all, test and train."""
    if ts.kind == "annotate":
        columns = {split: ts.split_indices(split) for split in ("all", "test", "train")}
    else:
        columns = {ts.split: ts.split_indices(ts.split)}
        columns.update({name: np.flatnonzero(ts.flags[:, j]) for j, name in enumerate(ATTRIBUTES)})
    return {name: faces for name, faces in columns.items() if faces.size}


def _panels_need(ctx: AppContext) -> str:
    """Markdown, before there are predictions: what each panel shows and that it needs them."""
    ts = ctx.testset
    truth = "the dataset's own points (model or human made)" if ts.kind == "annotate" else "the ground truth"
    columns = ("each split (all, test, train)" if ts.kind == "annotate"
               else "the whole split and each WFLW attribute subset that has faces")
    gallery = ("ranks by flip error or detector score, which needs no predictions" if ts.kind == "annotate"
               else "ranks the faces worst NME first")
    return (f"#### Metrics of the {ts.split} split: they need predictions\n"
            f"Every panel below compares predictions for the {counted(len(ts), 'face')} with {truth}, and there "
            f"are no predictions yet: {_how_to_predict(ctx)}.\n\n"
            f"- **Table**: NME, `FR@0.1` and `AUC@0.1` of {columns}.\n"
            "- **CED curve**: the share of faces under each NME, one curve per column of the table.\n"
            "- **Per-landmark error**: each point's mean error, coloured by region.\n"
            "- **Landmark**: the faces worst at one point.\n"
            f"- **Gallery** (above): {gallery}.")


def metrics_note(ctx: AppContext) -> str:
    """Markdown above the metrics: which split and faces they are of and what the columns are, or,
    before there are predictions, what each panel needs (``_panels_need``)."""
    ts = ctx.testset
    if ts is None:
        return ""
    if ts.nme is None:
        return _panels_need(ctx)
    if ts.kind == "annotate":
        against = "the dataset's own points (model or human made), not an independent ground truth"
        columns = ("Columns: its splits (test is what `python -m training.evaluate` scores by default). The "
                   "dataset has no WFLW attribute flags, so there are no subset columns.")
    else:
        against = "the ground truth"
        empty = [name for name in ATTRIBUTES if name not in metric_columns(ts)]
        columns = ("Columns: the whole split, then the WFLW attribute subsets"
                   + (f" (not shown, no faces here: {', '.join(empty)})" if empty else "") + ".")
    return (f"#### Metrics of the {ts.split} split ({counted(len(ts), 'face')})\n"
            f"NME against {against}, normalised by the inter-ocular distance. {columns}")


def summary_table(ctx: AppContext) -> pd.DataFrame:
    """Rows NME (%), FR@0.1 (%), AUC@0.1, faces; columns the face sets of ``metric_columns``."""
    ts = ctx.testset
    if ts is None or ts.nme is None:
        return pd.DataFrame(columns=["metric"])
    columns = metric_columns(ts)
    table = {name: metrics.summarize(ts.nme[faces]) for name, faces in columns.items()}
    rows = [[label, *[round(scale * table[c][key], digits) for c in columns]]
            for label, key, scale, digits in (("NME (%)", "nme", 100, 2), ("FR@0.1 (%)", "fr", 100, 2),
                                              ("AUC@0.1", "auc", 1, 4))]
    rows.append(["faces", *[table[c]["num_faces"] for c in columns]])
    return pd.DataFrame(rows, columns=["metric", *columns])


def ced_plot(ctx: AppContext):
    """CED figure with one curve per column of the table (x axis fitted, 10 % marked)."""
    ts = ctx.testset
    if ts is None or ts.nme is None:
        return None
    return metrics.ced_figure({name: ts.nme[faces] for name, faces in metric_columns(ts).items()})


def landmark_plot(ctx: AppContext):
    """Each point's mean error, bars coloured by region with a legend (``metrics.landmark_figure``)."""
    ts = ctx.testset
    if ts is None or ts.nme is None:
        return None
    return metrics.landmark_figure(metrics.per_landmark_error(ts.pred, ts.gt))


def overview(ctx: AppContext):
    """(status, metrics note, summary table, CED figure, per-landmark figure, landmark line, landmark
    table): the panels are hidden until there are predictions (the note and the landmark line say
    what they need), the table's label names the split, and the landmark table starts closed."""
    ts = ctx.testset
    ready = ts is not None and ts.nme is not None
    label = "Metrics"
    if ts is not None:
        label = f"Metrics of the {ts.split} split" + (" by split" if ts.kind == "annotate" else " and its subsets")
    landmark_line = LANDMARK_NEEDS if ts is not None and not ready else LANDMARK_HINT
    return (status(ctx), metrics_note(ctx), gr.update(value=summary_table(ctx), visible=ready, label=label),
            gr.update(value=ced_plot(ctx), visible=ready), gr.update(value=landmark_plot(ctx), visible=ready),
            landmark_line, gr.update(value=None, visible=False))


def compute(ctx: AppContext, progress=gr.Progress()):
    """``stored_predictions.compute`` (every face held, kept beside the review database), then the
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
    count = (f"{counted(len(order), 'face')}, no ground truth to score: ranked by {RANKINGS[ranking]}"
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
    if ts is None:
        return [], [], status(ctx)
    if ts.nme is None:
        return [], [], f"The gallery ranks faces worst NME first and needs predictions: {_how_to_predict(ctx)}."
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
    count = (f"{counted(len(order), 'face')} {'matches' if len(order) == 1 else 'match'} ({subset}, NME from "
             f"{lo:g} % {upper}), worst first"
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
    if ts is not None and ts.nme is None:
        return gr.update(value=None, visible=False), [], LANDMARK_NEEDS
    if ts is None or landmark is None or str(landmark).strip() == "":
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

