"""WFLW browser tab callbacks: summary table, CED curve, per-landmark error, worst-first gallery,
predictions computed and kept beside the review database, and the comparison of two prediction files.

All numbers come from ``training.metrics`` on the ``app.wflw_data.WFLWTestSet`` of the context;
this module only formats them and draws the faces.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd

from app.context import AppContext
from model.draw import draw_ground_truth, draw_landmarks
from model.geometry import apply_affine, landmark_box
from model.image import ImageError, read_image
from model.layout import ATTRIBUTES, NUM_LANDMARKS, POINT_REGION
from model.pipeline import crop_faces
from training import metrics
from training.evaluate import (EvaluationCancelled, predict_samples, prediction_meta, read_predictions,
                               read_predictions_meta, write_predictions)
from training.wflw import resolve_image

log = logging.getLogger(__name__)

# Most faces shown in the gallery at once (each is a crop of a full image, read from disk).
GALLERY_MAX = 60
THUMB_SIZE = 160
VIEW_SIZE = 512
# The face view shows this much context around the landmarks (crop side / landmark extent).
VIEW_PADDING = 1.6
SUBSET_CHOICES = ["all", *ATTRIBUTES]
# Decoded dataset images kept in memory, shared by all users, in bytes (a 50-megapixel RGB image
# is 150 MB; WFLW's are 0.1-10 MB). The least recently used are dropped first.
IMAGE_CACHE_BYTES = 256 * 2**20
# Faces listed for one landmark, and rows of the comparison table.
WORST_FACES = 20
COMPARE_ROWS = 100
# Crop box the app's own predictions use: mmpose's test boxes from the landmarks (how 4.44 was measured).
BOX_MODE = "landmarks"
# Computed predictions are written beside the review database under its stem plus this suffix.
PREDICTIONS_SUFFIX = ".predictions.json"


class ImageCache:
    """A least-recently-used cache of decoded images bounded by their total size in bytes.

    An image larger than the bound is returned but not kept. Thread-safe (Gradio's workers share it).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self._items: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, images_dir: str, image_path: str) -> np.ndarray:
        key = (str(images_dir), image_path)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        image = read_image(resolve_image(images_dir, image_path), name=image_path)
        image.setflags(write=False)  # shared between users: nobody may draw into it
        with self._lock:
            if image.nbytes <= self.max_bytes and key not in self._items:
                self._items[key] = image
                self.nbytes += image.nbytes
                while self.nbytes > self.max_bytes:
                    _, dropped = self._items.popitem(last=False)
                    self.nbytes -= dropped.nbytes
        return image


IMAGES = ImageCache(IMAGE_CACHE_BYTES)


def _testset(ctx: AppContext):
    if ctx.testset is None:
        raise gr.Error("No WFLW root loaded. " + ctx.wflw_message, print_exception=False)
    return ctx.testset


def _image(ctx: AppContext, index: int) -> np.ndarray:
    ts = _testset(ctx)
    try:
        return IMAGES.get(str(ts.tree.images), ts.samples[index].image)
    except (ImageError, ValueError, FileNotFoundError) as exc:
        raise gr.Error(str(exc), print_exception=False) from None


# ----------------------------------------------------------------------------- overview


def status(ctx: AppContext) -> str:
    """One paragraph: how many test faces, where their predictions came from, the NME."""
    ts = ctx.testset
    if ts is None:
        return "### No WFLW data\n" + ctx.wflw_message
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


# ----------------------------------------------------------------------------- predictions


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


def _model_meta(ctx: AppContext, unknown: str | None) -> dict:
    """Provenance of predictions the loaded model makes here (``training.evaluate.prediction_meta``);
    ``unknown`` stands for the checkpoint name and sha256 when the weights are not a file."""
    p = ctx.predictor
    settings = dict(flip_test=bool(p.flip_test), flip_convention=p.flip_convention, box_mode=BOX_MODE,
                    input_size=int(p.input_size))
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
        out.update(_model_meta(ctx, unknown=None))
    if ts is not None:
        out["predictions"] = ts.source or None
    return out


def compute(ctx: AppContext, progress=gr.Progress()):
    """Run the loaded model on the whole test set (progress bar, cancellable), keep the predictions
    beside the review database, then refresh the overview."""
    ts = _testset(ctx)
    if ctx.predictor is None:
        raise gr.Error("The 98-point model is not loaded, so predictions cannot be computed. " + (ctx.banner or ""),
                       print_exception=False)
    ts.cancel.clear()
    try:
        pred = predict_samples(ctx.predictor, ts.samples, ts.tree.images, BOX_MODE,
                               progress=lambda done, total: progress((done, total), desc="Predicting WFLW test images",
                                                                     unit="image"),
                               cancel=ts.cancel.is_set)
    except EvaluationCancelled as exc:
        raise gr.Error(f"Computation stopped ({exc}); the previous predictions are kept.",
                       print_exception=False) from None
    except (ValueError, FileNotFoundError) as exc:
        raise gr.Error(str(exc), print_exception=False) from None
    meta = {**_model_meta(ctx, unknown="unknown"), "made_by": "app"}
    path = predictions_path(ctx)
    if path is not None:
        write_predictions(path, ts.samples, pred, meta)
    ts.set_predictions(pred, path.name if path is not None else "computed", meta)
    return overview(ctx)


def cancel_compute(ctx: AppContext) -> None:
    """Ask a running ``compute`` to stop before its next image."""
    if ctx.testset is not None:
        ctx.testset.cancel.set()
        gr.Info("Stopping the computation after the current image.")


def image_sizes(ctx: AppContext) -> dict[str, tuple[int, int]]:
    """``{image: (width, height)}`` of the test images that can be read (headers only)."""
    from PIL import Image

    ts = _testset(ctx)
    sizes = {}
    for name in {s.image for s in ts.samples}:
        try:
            with Image.open(resolve_image(ts.tree.images, name)) as im:
                sizes[name] = im.size
        except (OSError, ValueError):
            continue
    return sizes


# ----------------------------------------------------------------------------- faces


def face_crop(ctx: AppContext, index: int, size: int = VIEW_SIZE, padding: float = VIEW_PADDING):
    """The plain square crop around face ``index``'s landmarks: ((size, size, 3) uint8, (2, 3) image -> view)."""
    image = _image(ctx, index)
    views, matrices = crop_faces(image, landmark_box(ctx.testset.samples[index].landmarks)[None], size=size,
                                 padding=padding)
    return views[0], matrices[0]


def face_view(ctx: AppContext, index: int, size: int = VIEW_SIZE, pred: np.ndarray | None = None,
              labels: bool = False) -> np.ndarray:
    """Face ``index`` drawn with ground truth (green rings), a prediction (region colours; the
    loaded one by default) and error lines (magenta), cropped around its landmarks: (size, size, 3).

    The points are drawn on the crop (at the view's resolution), not on the full image.
    """
    ts = _testset(ctx)
    if pred is None and ts.pred is not None:
        pred = ts.pred[index]
    view, matrix = face_crop(ctx, index, size)
    pred_view = None if pred is None else apply_affine(pred, matrix)
    out = draw_ground_truth(view, apply_affine(ts.samples[index].landmarks, matrix), pred_view)
    if pred_view is not None:
        out = draw_landmarks(out, pred_view, labels=labels)
    return out


def caption(rank: int, nme: float, index: int) -> str:
    """Gallery caption: rank, the whole NME (2 decimals) and the face index."""
    return f"#{rank} · NME {100 * nme:.2f}% · face {index}"


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


def gallery(ctx: AppContext, subset: str, nme_min: float | None, nme_max: str | None):
    """Faces worst first within the filter (no upper bound unless one is given):
    ([(thumbnail, caption)], order (list of indices), count line)."""
    ts = ctx.testset
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


def describe_face(ctx: AppContext, index: int) -> str:
    """Markdown: face index, image, attributes, and NME with its rank."""
    ts = _testset(ctx)
    sample = ts.samples[index]
    attrs = [name for name, on in zip(ATTRIBUTES, ts.flags[index]) if on] or ["none"]
    text = f"**Face {index}** · {sample.image}\n\nAttributes: {', '.join(attrs)}"
    if ts.nme is not None:
        rank, total = ts.rank(float(ts.nme[index]))
        text += f"\n\nNME **{100 * ts.nme[index]:.2f} %** · rank {rank} of {total} (1 = worst)"
    return text


def open_face(ctx: AppContext, order: list[int], evt: gr.SelectData):
    """Gallery or table click -> (large view, description, the face index for the review tab)."""
    if not order or evt.index is None:
        raise gr.Error("Select a face in the gallery.", print_exception=False)
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    if not 0 <= int(row) < len(order):
        raise gr.Error("Select a face in the gallery.", print_exception=False)
    index = int(order[int(row)])
    return face_view(ctx, index), describe_face(ctx, index), index


LANDMARK_COLUMNS = ["rank", "face", "point error (%)", "face NME (%)", "image"]


def landmark_faces(ctx: AppContext, landmark):
    """The faces with the largest error at one landmark: (table, order of their indices, heading)."""
    ts = ctx.testset
    if ts is None or ts.nme is None or landmark is None or landmark == "":
        return pd.DataFrame(columns=LANDMARK_COLUMNS), [], ""
    point = int(landmark)
    if not 0 <= point < NUM_LANDMARKS:
        raise gr.Error(f"Landmark must be in 0..{NUM_LANDMARKS - 1}, got {point}.", print_exception=False)
    errors = metrics.point_errors(ts.pred, ts.gt)[:, point]
    worst = np.argsort(-errors, kind="stable")[:WORST_FACES]
    rows = [[rank, int(i), round(100 * float(errors[i]), 2), round(100 * float(ts.nme[i]), 2), ts.samples[i].image]
            for rank, i in enumerate(worst, start=1)]
    heading = (f"Landmark {point} ({POINT_REGION[point].replace('_', ' ')}): mean error "
               f"{100 * float(errors.mean()):.2f} %; the {len(rows)} worst faces (click a row to open it).")
    return pd.DataFrame(rows, columns=LANDMARK_COLUMNS), [int(i) for i in worst], heading


# ----------------------------------------------------------------------------- comparison

COMPARE_COLUMNS = ["rank", "face", "NME A (%)", "NME B (%)", "delta (pp)", "image"]


def _read_other(ctx: AppContext, path: str | None, what: str):
    """(pred, label) of an uploaded predictions file, or of the loaded predictions when ``path`` is empty."""
    ts = _testset(ctx)
    if not path:
        if ts.pred is None:
            raise gr.Error(f"{what}: choose a predictions file (no predictions are loaded).", print_exception=False)
        return ts.pred, ts.source or "loaded predictions"
    try:
        meta = read_predictions_meta(path)
        pred = read_predictions(path, ts.samples)
    except (ValueError, FileNotFoundError) as exc:
        raise gr.Error(f"{what}: {exc}", print_exception=False) from None
    return pred, f"{Path(path).name} ({meta.get('checkpoint', 'checkpoint unknown')})"


def compare(ctx: AppContext, path_a: str | None, path_b: str | None):
    """Per-face NME of two prediction files (A: baseline, the loaded predictions when empty; B:
    candidate), sorted by the largest regression of B (NME B - NME A) first.

    Returns:
        (summary Markdown, table, state {"order", "a", "b"} for opening a row).
    """
    ts = _testset(ctx)
    if not path_b:
        raise gr.Error("Choose the predictions file B to compare.", print_exception=False)
    pred_a, label_a = _read_other(ctx, path_a, "A")
    pred_b, label_b = _read_other(ctx, path_b, "B")
    nme_a, nme_b = metrics.nme(pred_a, ts.gt), metrics.nme(pred_b, ts.gt)
    delta = nme_b - nme_a
    order = np.argsort(-delta, kind="stable")
    rows = [[rank, int(i), round(100 * nme_a[i], 2), round(100 * nme_b[i], 2), round(100 * delta[i], 2),
             ts.samples[i].image] for rank, i in enumerate(order[:COMPARE_ROWS], start=1)]
    worse, better = int(np.sum(delta > 0)), int(np.sum(delta < 0))
    summary = (f"**A** {label_a}: NME {100 * nme_a.mean():.2f} % · **B** {label_b}: NME {100 * nme_b.mean():.2f} %. "
               f"B is worse on {worse} face(s) and better on {better}; largest regression first "
               f"(delta = NME B - NME A, percentage points). Click a row to see both on the face.")
    return summary, pd.DataFrame(rows, columns=COMPARE_COLUMNS), {
        "order": [int(i) for i in order[:COMPARE_ROWS]], "a": pred_a, "b": pred_b}


def compare_open(ctx: AppContext, state: dict | None, evt: gr.SelectData):
    """A comparison row clicked: (face with A's prediction, face with B's prediction, description)."""
    if not state or evt.index is None:
        raise gr.Error("Run a comparison first.", print_exception=False)
    row = int(evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index)
    if not 0 <= row < len(state["order"]):
        raise gr.Error("Click a row of the comparison table.", print_exception=False)
    index = state["order"][row]
    return (face_view(ctx, index, pred=np.asarray(state["a"][index])),
            face_view(ctx, index, pred=np.asarray(state["b"][index])), describe_face(ctx, index))
