"""Everything inference needs: image -> detector -> geometry -> network -> codec -> pipeline -> draw."""
from model.backends import BACKENDS, PRECISIONS
from model.codec import (
    DEFAULT_FLIP_CONVENTION, FLIP_CONVENTIONS, decode, encode, flip_back, flip_error, flip_pair, predict_crops,
)
from model.constants import CROP_PADDING, INPUT_SIZE, MIN_INPUT_SIZE, PIXEL_MEAN, PIXEL_STD
from model.detector import Detections, FaceDetector
from model.geometry import (
    apply_affine, box_iou, box_to_crop, crop_matrix, invert_affine, landmark_box, match_boxes, warp_crop,
)
from model.engine import EngineRunner, InferenceEngine
from model.image import ImageError, read_image
from model.io import atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text
from model.layout import EYE_CORNERS, FLIP_INDICES, NUM_LANDMARKS, REGIONS
from model.network import (
    CheckpointError, LandmarkRegressor, load_checkpoint, load_regressor, read_config,
)
from model.pipeline import ModelParts, Predictor, crop_faces
from model.record import Face, detections_record, max_faces_note, to_record
from model.smoothing import FaceSmoother, OneEuroFilter
from model.tracking import FaceTracker, propagate
from model.weights import OFFICIAL_URL, WeightsUnavailableError, WeightsVerificationError, official_weights

__all__ = [
    "BACKENDS", "PRECISIONS",
    "DEFAULT_FLIP_CONVENTION", "FLIP_CONVENTIONS", "decode", "encode", "flip_back", "flip_error", "flip_pair",
    "predict_crops",
    "CROP_PADDING", "INPUT_SIZE", "MIN_INPUT_SIZE", "PIXEL_MEAN", "PIXEL_STD",
    "Detections", "FaceDetector",
    "apply_affine", "box_iou", "box_to_crop", "crop_matrix", "invert_affine", "landmark_box", "match_boxes",
    "warp_crop",
    "EngineRunner", "InferenceEngine",
    "ImageError", "read_image",
    "atomic_write", "atomic_write_bytes", "atomic_write_json", "atomic_write_text",
    "EYE_CORNERS", "FLIP_INDICES", "NUM_LANDMARKS", "REGIONS",
    "CheckpointError", "LandmarkRegressor", "load_checkpoint", "load_regressor",
    "read_config",
    "ModelParts", "Predictor", "crop_faces", "Face", "detections_record", "max_faces_note", "to_record",
    "FaceSmoother", "OneEuroFilter", "FaceTracker", "propagate",
    "OFFICIAL_URL", "WeightsUnavailableError", "WeightsVerificationError", "official_weights",
]
