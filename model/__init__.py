"""Everything inference needs: image -> detector -> geometry -> network -> pipeline -> draw."""
from model.backends import BACKENDS
from model.constants import COORD_SCALE, CROP_PADDING, INPUT_SIZE, PIXEL_MEAN, PIXEL_STD
from model.detector import Detections, FaceDetector
from model.geometry import (
    apply_affine, box_iou, box_to_crop, crop_matrix, invert_affine, landmark_box, match_boxes, warp_crop,
)
from model.image import ImageError, read_image
from model.layout import EYE_CORNERS, FLIP_INDICES, NUM_LANDMARKS, REGIONS
from model.network import CheckpointError, LandmarkRegressor, load_regressor
from model.pipeline import Face, Predictor, to_record
from model.smoothing import OneEuroFilter
from model.tracking import FaceTracker
from model.weights import OFFICIAL_URL, WeightsUnavailableError, official_weights

__all__ = [
    "BACKENDS",
    "COORD_SCALE", "CROP_PADDING", "INPUT_SIZE", "PIXEL_MEAN", "PIXEL_STD",
    "Detections", "FaceDetector",
    "apply_affine", "box_iou", "box_to_crop", "crop_matrix", "invert_affine", "landmark_box", "match_boxes",
    "warp_crop",
    "ImageError", "read_image",
    "EYE_CORNERS", "FLIP_INDICES", "NUM_LANDMARKS", "REGIONS",
    "CheckpointError", "LandmarkRegressor", "load_regressor",
    "Face", "Predictor", "to_record", "OneEuroFilter", "FaceTracker",
    "OFFICIAL_URL", "WeightsUnavailableError", "official_weights",
]
