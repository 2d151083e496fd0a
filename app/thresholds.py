"""The detector thresholds of the Upload and Video tabs (``model.selection.FaceFilter``): one home
for the controls' range, start and "off" choice, laid out and wired alike in both tabs
(``face_filter_controls``), and for turning their values into a ``FaceFilter`` (``face_filter``).

MTCNN scores clear faces just below 1 (0.9996 and 0.9999 on breakingbad.jpg, but 0.983 on
lenna.png) and hands, tattoos and prints a little lower (the hand there 0.9936): the ranges overlap,
so no one threshold parts them on every photo and "off" is the start. The useful minimum scores lie in
[0.9, 1]: the slider spans that range, one drag reaches any of it. "Off" is MTCNN's own threshold
(``DEFAULT_MIN_SCORE``, 0.7), below the slider's range, so it is a checkbox of its own; moving the
slider turns it off. Both feed one number, the listeners' ``min_score`` (and the ``/predict`` API's),
set in the browser without a round trip to the server.
"""
from __future__ import annotations

import gradio as gr

from app.context import AppContext
from model.selection import DEFAULT_MAX_FACES, DEFAULT_MIN_SCORE, DEFAULT_MIN_SIZE, FaceFilter

# The slider's range and step: where detector scores live, in steps that part a hand (0.9936 on
# breakingbad.jpg, 0.97-0.99 on a video's frames) from faces (0.9996+).
SCORE_RANGE = (0.9, 1.0)
SCORE_STEP = 0.001
# Where the slider stands before anyone moves it (inactive while "off" is ticked): that hand is
# left out from here.
SCORE_START = 0.995
OFF_LABEL = f"Off: MTCNN's own {DEFAULT_MIN_SCORE:g}, every detection"

# Browser-side wiring: the slider moved -> its value, "off" unticked; "off" toggled -> 0.7 or the slider.
_SLIDER_MOVED = "(value) => [value, false]"
_OFF_TOGGLED = f"(off, value) => off ? {DEFAULT_MIN_SCORE} : value"


def face_filter_controls(prefix: str) -> tuple[gr.Number, gr.Number]:
    """Lay out the minimum score (slider and "off") and the minimum size; wire them in the browser.

    Args:
        prefix: the tab's element-id prefix ("upload", "video"): ids ``{prefix}-min-score`` (the
            value), ``{prefix}-score-slider``, ``{prefix}-score-off`` and ``{prefix}-min-size``.

    Returns:
        (min_score, min_size): the two numbers a listener takes (``min_score`` is hidden: the slider
        and the checkbox set it).
    """
    with gr.Group(elem_id=f"{prefix}-score", elem_classes=["ls-score"]):
        slider = gr.Slider(*SCORE_RANGE, value=SCORE_START, step=SCORE_STEP, label="Minimum face score",
                           info="Clear faces score 0.98-1; hands and prints 0.97-0.995 (so do some real faces)", buttons=[],
                           elem_id=f"{prefix}-score-slider")
        off = gr.Checkbox(value=True, label=OFF_LABEL, elem_id=f"{prefix}-score-off")
        min_size = gr.Number(value=DEFAULT_MIN_SIZE, minimum=0, precision=0,
                             label=f"Minimum face size (px; MTCNN's own {DEFAULT_MIN_SIZE:g})",
                             elem_id=f"{prefix}-min-size")
    min_score = gr.Number(value=DEFAULT_MIN_SCORE, minimum=0, maximum=1, label="Minimum face score",
                          visible="hidden", elem_id=f"{prefix}-min-score")
    slider.input(None, [slider], [min_score, off], js=_SLIDER_MOVED)
    off.input(None, [off, slider], [min_score], js=_OFF_TOGGLED)
    return min_score, min_size


def face_filter(ctx: AppContext, min_score, min_size) -> FaceFilter:
    """The controls' values (empty: the defaults) and the model's ``max_faces`` as a ``FaceFilter``;
    ``gr.Error`` naming a bad value."""
    max_faces = DEFAULT_MAX_FACES if ctx.predictor is None else ctx.predictor.max_faces
    try:
        return FaceFilter(DEFAULT_MIN_SCORE if min_score is None else float(min_score),
                          DEFAULT_MIN_SIZE if min_size is None else float(min_size), max_faces)
    except ValueError as exc:
        raise gr.Error(f"{str(exc)[:1].upper()}{str(exc)[1:]}.", print_exception=False) from None
