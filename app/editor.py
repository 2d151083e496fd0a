"""The review tab's point editor: the face's points as SVG over the image, at display resolution.

A Gradio 6 ``gr.HTML`` component with ``html_template`` / ``css_template`` / ``js_on_load`` (no
front-end build step). The SVG's user units are image pixels, so a pointer position maps to image
coordinates through the SVG's own screen transform, at any zoom.

In the browser: nothing is selected at first; a click on a ground-truth point selects it, a click on
empty image changes nothing (a drag there pans); dragging a point moves it and Esc during the drag
puts it back; the wheel, the + / - (and =) keys and the toolbar zoom; z / Shift+Z (and the toolbar) undo and redo. Each
finished move sends the custom event ``"move"`` ``{face, point, x, y}`` (image pixels); undoing a
point's first move sends ``"unmove"`` ``{face, point}``. Hotkeys 1-4 click the verdicts, n / p / u
the Next, Previous and Next-unreviewed buttons (``HOTKEY_TARGETS``), while the editor is on screen
and no text box has the focus.

Colours are ``model.draw``'s, passed in as props (one legend with the browser and upload views):
ground truth rings, the prediction's dots in region colours, error lines. A corrected point's old
position is a white cross outlined in black, seen on dark and light skin alike. Until the face has
predictions, the prediction and error toggles are off and disabled, and the toolbar says why
(``NO_PREDICTIONS``).

The value is the dict built by ``editor_value`` (or ``None``: no face open).
"""
from __future__ import annotations

import base64
from pathlib import Path

import cv2
import gradio as gr
import numpy as np

from model.layout import check_landmark_index
from model.draw import ERROR_COLOR, GT_COLOR, legend_words
from model.layout import POINT_REGION, REGION_COLORS

ELEM_ID = "review-editor"
# DOM ids of the buttons that the n / p / u hotkeys click, and of the verdict radio (1-4).
HOTKEY_TARGETS = {"n": "review-next", "p": "review-previous", "u": "review-next-unreviewed"}
VERDICT_ELEM_ID = "review-verdict"
JPEG_QUALITY = 90
# Shown in the toolbar while the open face has no predictions (its prediction and error toggles are disabled).
NO_PREDICTIONS = ("No predictions yet: compute them in the WFLW browser (Compute predictions) or start the app "
                  "with --predictions FILE.")

HTML_TEMPLATE = '<div class="le-host"></div>'
# The editor's program and style, files beside this module (read when the component is built).
STATIC = Path(__file__).resolve().parent / "static"
EDITOR_JS = STATIC / "editor.js"
EDITOR_CSS = STATIC / "editor.css"


def editor_colors() -> dict:
    """The drawing colours the editor uses, as RGB lists: ``model.draw``'s ground truth and error
    colours, the prediction's region colours (``model.layout``), and corrected points (ground truth's)."""
    return {"gt": list(GT_COLOR), "error": list(ERROR_COLOR), "fixed": list(GT_COLOR),
            "regions": [list(c) for c in REGION_COLORS.values()]}


def point_editor(verdicts: tuple[str, ...]) -> gr.HTML:
    """The editor component (custom events ``move`` and ``unmove``), with no face open."""
    return gr.HTML(None, html_template=HTML_TEMPLATE, css_template=EDITOR_CSS.read_text(encoding="utf-8"),
                   js_on_load=EDITOR_JS.read_text(encoding="utf-8"), elem_id=ELEM_ID, verdicts=list(verdicts),
                   verdict_id=VERDICT_ELEM_ID, hotkeys=HOTKEY_TARGETS, colors=editor_colors(), legend=legend_words(),
                   no_predictions=NO_PREDICTIONS)


def _data_uri(image_rgb: np.ndarray) -> str:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("the face view could not be encoded as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _points(points) -> list[list[float]]:
    return [[round(float(x), 3), round(float(y), 3)] for x, y in np.asarray(points, dtype=np.float64)]


def editor_value(face: int, view_rgb: np.ndarray, matrix: np.ndarray, ground_truth, prediction=None,
                 fixes: dict | None = None) -> dict:
    """The editor's value for one face.

    Args:
        face: the face's index in the test list (sent back with every edit).
        view_rgb: (S, S, 3) uint8 square crop of the image around the face.
        matrix: (2, 3) image -> crop map of that crop (axis-aligned: scale and shift only).
        ground_truth: (98, 2) annotated points, image pixels (as loaded, before corrections).
        prediction: (98, 2) predicted points or ``None``.
        fixes: ``{point: (x, y)}`` stored corrections, image pixels.
    """
    size = int(view_rgb.shape[0])
    scale, tx, ty = float(matrix[0, 0]), float(matrix[0, 2]), float(matrix[1, 2])
    if abs(matrix[0, 1]) > 1e-9 or abs(matrix[1, 0]) > 1e-9 or abs(matrix[1, 1] - scale) > 1e-9 * max(1, scale):
        raise ValueError(f"the face view must be an axis-aligned square crop, got matrix {matrix.tolist()}")
    side = size / scale
    x0, y0 = -tx / scale, -ty / scale  # image point shown at the crop's pixel (0, 0)
    half = 0.5 / scale  # crop pixel i covers image [x0 + (i - 0.5)/scale, x0 + (i + 0.5)/scale]
    return {
        "face": int(face),
        "image": _data_uri(view_rgb),
        # The raster's outer edge (pixel centres sit at x0 + i / scale) and the initial view.
        "image_box": [x0 - half, y0 - half, side],
        "crop": [x0 - half, y0 - half, side],
        "gt": _points(ground_truth),
        "pred": None if prediction is None else _points(prediction),
        "fixed": {str(int(p)): [float(x), float(y)] for p, (x, y) in (fixes or {}).items()},
        "colors": [list(REGION_COLORS[r]) for r in POINT_REGION],
        "regions": list(POINT_REGION),
    }


def edit_from_event(data) -> tuple[int, int, float | None, float | None]:
    """``(face, point, x, y)`` of a ``move`` event's data (``x``, ``y`` ``None`` for ``unmove``);
    a clear ``ValueError`` for anything else."""
    if not isinstance(data, dict):
        raise ValueError(f"editor event must carry an object, got {type(data).__name__}")
    try:
        face, point = int(data["face"]), int(data["point"])
        x = None if data.get("x") is None else float(data["x"])
        y = None if data.get("y") is None else float(data["y"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"editor event needs integer face and point and numeric x, y; got {data!r}") from exc
    check_landmark_index(point)
    if (x is None) != (y is None) or (x is not None and not (np.isfinite(x) and np.isfinite(y))):
        raise ValueError(f"edited position must be two finite numbers, got ({x}, {y})")
    return face, point, x, y
