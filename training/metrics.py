"""Face-alignment metrics: NME, failure rate, AUC, the CED curve and per-subset tables.

Pure numpy (the figures use matplotlib's object API, no pyplot state); no files, no devices.
NME values are fractions of the inter-ocular distance (x100 for the percent the papers print).
"""
from __future__ import annotations

import numpy as np

from model.layout import ATTRIBUTES, EYE_CORNERS, NUM_LANDMARKS, REGION_COLORS, REGIONS

# Failure threshold and AUC range of the WFLW papers (10 % of the inter-ocular distance).
FAILURE_THRESHOLD = 0.1
# Step of the CED curve (the spec asks for 1e-4 or finer).
CED_STEP = 1e-4

# Column titles of the WFLW table, in ATTRIBUTES order.
SUBSET_TITLES = {
    "pose": "Pose",
    "expression": "Expression",
    "illumination": "Illumination",
    "makeup": "Make-up",
    "occlusion": "Occlusion",
    "blur": "Blur",
}


def _check_points(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[1:] != (NUM_LANDMARKS, 2):
        raise ValueError(f"pred and gt must both have shape (N, {NUM_LANDMARKS}, 2), got {pred.shape} and {gt.shape}")
    return pred, gt


def point_errors(pred, gt) -> np.ndarray:
    """(N, 98) Euclidean error of each point divided by the image's inter-ocular distance.

    Args:
        pred, gt: np.ndarray[N, 98, 2] in the same pixel frame.
    """
    pred, gt = _check_points(pred, gt)
    norm = np.linalg.norm(gt[:, EYE_CORNERS[0]] - gt[:, EYE_CORNERS[1]], axis=-1)
    if np.any(norm <= 0):
        bad = np.flatnonzero(norm <= 0).tolist()
        raise ValueError(f"gt eye corners {EYE_CORNERS} coincide (zero normaliser) for images {bad}")
    return np.linalg.norm(pred - gt, axis=-1) / norm[:, None]


def nme(pred, gt) -> np.ndarray:
    """Per-image NME: mean point error / distance of the outer eye corners gt[60], gt[72].

    Args:
        pred, gt: np.ndarray[N, 98, 2].

    Returns:
        np.ndarray[N] fractions (dataset NME = the mean; x100 for percent).
    """
    return point_errors(pred, gt).mean(axis=1)


def per_landmark_error(pred, gt) -> np.ndarray:
    """np.ndarray[98]: each point's normalised error averaged over the images."""
    return point_errors(pred, gt).mean(axis=0)


def ced_curve(per_image_nme, threshold: float = FAILURE_THRESHOLD, step: float = CED_STEP):
    """Cumulative error distribution: (errors, share of images with NME <= error), both (T,)."""
    errors = np.asarray(per_image_nme, dtype=np.float64).reshape(-1)
    if errors.size == 0:
        raise ValueError("per_image_nme is empty")
    if threshold <= 0 or step <= 0:
        raise ValueError(f"threshold and step must be positive, got {threshold} and {step}")
    xs = np.linspace(0.0, threshold, int(round(threshold / step)) + 1)
    ys = np.searchsorted(np.sort(errors), xs, side="right") / errors.size
    return xs, ys


def fr_auc(per_image_nme, threshold: float = FAILURE_THRESHOLD) -> tuple[float, float]:
    """Failure rate and AUC at ``threshold``.

    FR = share of images with NME > threshold; AUC = area under the CED curve from 0 to threshold,
    divided by threshold (trapezoids on a 1e-4 grid). Both fractions in [0, 1].
    """
    errors = np.asarray(per_image_nme, dtype=np.float64).reshape(-1)
    xs, ys = ced_curve(errors, threshold)
    fr = float(np.mean(errors > threshold))
    auc = float(np.sum((ys[1:] + ys[:-1]) * np.diff(xs)) / 2.0 / threshold)
    return fr, auc


def summarize(per_image_nme, threshold: float = FAILURE_THRESHOLD) -> dict:
    """{"nme": fraction, "fr": fraction, "auc": fraction, "num_faces": n} for one set of images."""
    errors = np.asarray(per_image_nme, dtype=np.float64).reshape(-1)
    if errors.size == 0:
        return {"nme": float("nan"), "fr": float("nan"), "auc": float("nan"), "num_faces": 0}
    fr, auc = fr_auc(errors, threshold)
    return {"nme": float(errors.mean()), "fr": fr, "auc": auc, "num_faces": int(errors.size)}


def subset_table(per_image_nme, attributes, names=ATTRIBUTES,
                 threshold: float = FAILURE_THRESHOLD) -> dict[str, dict]:
    """Metrics of the full set and of each attribute subset.

    Args:
        per_image_nme: np.ndarray[N].
        attributes: bool np.ndarray[N, A], column j = membership in subset ``names[j]``.

    Returns:
        {"full": summary, name: summary, ...} with summaries as ``summarize`` returns them.
    """
    errors = np.asarray(per_image_nme, dtype=np.float64).reshape(-1)
    flags = np.asarray(attributes, dtype=bool)
    if flags.shape != (errors.size, len(names)):
        raise ValueError(f"attributes must have shape ({errors.size}, {len(names)}), got {flags.shape}")
    table = {"full": summarize(errors, threshold)}
    for j, name in enumerate(names):
        table[name] = summarize(errors[flags[:, j]], threshold)
    return table


def format_table(table: dict[str, dict]) -> str:
    """The WFLW papers' layout: rows NME (%), FR@0.1 (%), AUC@0.1; columns full set and subsets."""
    columns = ["full"] + [n for n in ATTRIBUTES if n in table]
    titles = ["Testset"] + [SUBSET_TITLES.get(n, n) for n in columns[1:]]
    rows = [
        ("NME (%)", lambda s: 100 * s["nme"], "{:.2f}"),
        ("FR@0.1 (%)", lambda s: 100 * s["fr"], "{:.2f}"),
        ("AUC@0.1", lambda s: s["auc"], "{:.4f}"),
        ("Faces", lambda s: s["num_faces"], "{:d}"),
    ]
    width = max(len(t) for t in titles) + 2
    lines = ["Metric".ljust(12) + "".join(t.rjust(width) for t in titles)]
    for label, get, fmt in rows:
        cells = []
        for name in columns:
            s = table[name]
            cells.append("-" if s["num_faces"] == 0 and label != "Faces" else fmt.format(get(s)))
        lines.append(label.ljust(12) + "".join(c.rjust(width) for c in cells))
    return "\n".join(lines)


# The CED plot's x axis reaches this far past the largest error shown (in NME fractions), so the
# last step of the curve is visible; never below the failure threshold, which is always marked.
CED_MARGIN = 1.05


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def ced_figure(curves: dict[str, np.ndarray], threshold: float = FAILURE_THRESHOLD):
    """CED plot of one or more runs.

    The x axis fits the data: from 0 to just past the largest per-image NME, and at least to the
    failure threshold, which is drawn as a dashed vertical line (AUC and FR are taken there).

    Args:
        curves: label -> np.ndarray[N] per-image NME (fractions).
        threshold: the failure threshold (fraction; 0.1 in the WFLW papers).

    Returns:
        a ``matplotlib.figure.Figure`` (Agg canvas; save with ``fig.savefig``).
    """
    if not curves:
        raise ValueError("curves is empty: give at least one label -> per-image NME")
    fig = _figure(5, 4)
    ax = fig.add_subplot()
    largest = max(float(np.max(np.asarray(e, dtype=np.float64))) for e in curves.values())
    limit = max(threshold, largest * CED_MARGIN)
    for label, errors in curves.items():
        xs, ys = ced_curve(errors, limit)
        _, auc = fr_auc(errors, threshold)
        ax.plot(xs * 100, ys * 100, label=f"{label} (NME {100 * np.mean(errors):.2f}%, AUC {auc:.4f})")
    ax.axvline(threshold * 100, color="0.4", linestyle="--", linewidth=1,
               label=f"failure threshold {100 * threshold:g}%")
    ax.set_xlim(0, limit * 100)
    ax.set_ylim(0, 100)
    ax.set_xlabel("NME (% of inter-ocular distance)")
    ax.set_ylabel("Images (%)")
    ax.set_title("Cumulative error distribution")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def landmark_figure(per_landmark):
    """Bar chart of each point's mean error, coloured by face region, with a legend of the regions.

    Args:
        per_landmark: np.ndarray[98] mean normalised error of each point (``per_landmark_error``).

    Returns:
        a ``matplotlib.figure.Figure`` (Agg canvas).
    """
    errors = np.asarray(per_landmark, dtype=np.float64).reshape(-1)
    if errors.shape != (NUM_LANDMARKS,) or not np.all(np.isfinite(errors)):
        raise ValueError(f"per_landmark must be {NUM_LANDMARKS} finite errors, got shape {np.shape(per_landmark)}")
    # regions that share a colour (the two brows, the two eyes...) share one legend entry
    names_by_color: dict[tuple, list[str]] = {}
    for name in REGIONS:
        names_by_color.setdefault(REGION_COLORS[name], []).append(name.replace("_", " "))
    fig = _figure(6, 3)
    ax = fig.add_subplot()
    for name, (lo, hi) in REGIONS.items():
        color = REGION_COLORS[name]
        names = names_by_color[color]
        label = ", ".join(names) if names[0] == name.replace("_", " ") else None
        ax.bar(np.arange(lo, hi), 100 * errors[lo:hi], width=0.9, label=label, color=np.array(color) / 255.0)
    ax.set_xlabel("landmark index")
    ax.set_ylabel("mean NME (%)")
    ax.set_title("Per-landmark error")
    ax.set_xlim(-1, NUM_LANDMARKS)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=6, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.25), frameon=False)
    fig.tight_layout()
    return fig
