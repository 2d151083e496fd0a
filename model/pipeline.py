"""Image -> detector -> crop -> network -> decode: the inference pipeline, and its JSON records.

``Predictor`` loads the regressor once, picks the device once, and returns ``Face`` records in
image pixels. Test-time flip runs the mirrored crops in the same forward pass as the originals
(``model.codec``), and the distance between the two halves gives each face its ``flip_error``.
``Face.to_dict`` / ``Face.from_dict``, ``to_record`` and ``detections_record`` are the one home of
the JSON schema shared by the CLI and the app.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from model.backends import AUTO, FP32, TORCH, TorchBackend, build_backend, check_backend, check_precision, resolve_backend
from model.codec import DEFAULT_FLIP_CONVENTION, check_flip_convention, decode, flip_error, flip_pair, predict_crops
from model.constants import CROP_PADDING, INPUT_SIZE, MIN_INPUT_SIZE
from model.detector import Detections, FaceDetector
from model.geometry import box_to_crop, crop_matrix, warp_crop
from model.image import check_image_array
from model.layout import NUM_LANDMARKS
from model.network import LandmarkRegressor, load_checkpoint

log = logging.getLogger(__name__)

# Faces beyond this many (by detector score) get no landmarks; callers say so.
MAX_FACES = 32
# Decimals kept in the JSON record: 0.01 px for coordinates, 4 for scores and flip errors (%).
_PX_DECIMALS, _SCORE_DECIMALS = 2, 4


def _px(values) -> list[float]:
    return [round(float(v), _PX_DECIMALS) for v in values]


@dataclass(frozen=True, eq=False)
class Face:
    """One face; frozen (build changed copies with ``dataclasses.replace``), compared by identity.

    Attributes:
        box: (4,) float32 x1, y1, x2, y2 image pixels (read-only array).
        score: detector confidence in [0, 1] (1.0 for given boxes).
        landmarks: (98, 2) float32 image pixels (read-only array).
        flip_error: flip consistency in % of the inter-ocular distance (``model.codec.flip_error``),
            ``None`` when the flip test did not run.
        face_id: identity of a tracked face across video frames, ``None`` for still images.
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray
    flip_error: float | None = None
    face_id: int | None = None

    def __post_init__(self) -> None:
        for name, shape in (("box", (4,)), ("landmarks", (NUM_LANDMARKS, 2))):
            array = np.array(getattr(self, name), dtype=np.float32)  # a copy: nobody else can change it
            if array.shape != shape:
                raise ValueError(f"Face.{name} must have shape {shape}, got {array.shape}")
            array.flags.writeable = False
            object.__setattr__(self, name, array)
        object.__setattr__(self, "score", float(self.score))
        if self.flip_error is not None:
            object.__setattr__(self, "flip_error", float(self.flip_error))
        if self.face_id is not None:
            object.__setattr__(self, "face_id", int(self.face_id))

    def to_dict(self) -> dict:
        """The face entry of the JSON schema shared by the CLI and the app's /predict API."""
        entry = {
            "box": _px(self.box),
            "score": round(self.score, _SCORE_DECIMALS),
            "landmarks": [_px(point) for point in self.landmarks],
        }
        if self.flip_error is not None:
            entry["flip_error"] = round(self.flip_error, _SCORE_DECIMALS)
        if self.face_id is not None:
            entry["face_id"] = self.face_id
        return entry

    @classmethod
    def from_dict(cls, entry) -> "Face":
        """A ``Face`` from a ``to_dict`` entry (other keys, such as ``"nme"``, are ignored).

        Raises ``ValueError`` naming the field and the value when the entry does not fit the schema.
        """
        if not isinstance(entry, dict):
            raise ValueError(f"a face entry must be a JSON object, got {type(entry).__name__}")
        for key in ("box", "score", "landmarks"):
            if key not in entry:
                raise ValueError(f"face entry has no {key!r} (keys: {', '.join(map(str, entry)) or 'none'})")
        box = _numbers(entry["box"], "box", (4,))
        landmarks = _numbers(entry["landmarks"], "landmarks", (NUM_LANDMARKS, 2))
        score = _number(entry["score"], "score")
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"face 'score' must lie in [0, 1], got {score}")
        flip = entry.get("flip_error")
        face_id = entry.get("face_id")
        if face_id is not None and (isinstance(face_id, bool) or not isinstance(face_id, int)):
            raise ValueError(f"face 'face_id' must be a whole number or null, got {face_id!r}")
        return cls(box, score, landmarks, None if flip is None else _number(flip, "flip_error"), face_id)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(value, field: str) -> float:
    if not _is_number(value):
        raise ValueError(f"face {field!r} must be a finite number, got {value!r}")
    return float(value)


def _numbers(value, field: str, shape: tuple[int, ...]) -> np.ndarray:
    """A JSON list (``shape`` (n,)) or list of pairs (``shape`` (n, 2)) of finite numbers -> float32."""
    pairs = len(shape) == 2
    expected = f"a list of {shape[0]} [x, y] pairs" if pairs else f"a list of {shape[0]} numbers"
    rows = value if isinstance(value, (list, tuple)) else None
    if rows is None or len(rows) != shape[0] or (pairs and any(
            not isinstance(row, (list, tuple)) or len(row) != 2 for row in rows)):
        got = f"{len(rows)} entries" if rows is not None else type(value).__name__
        raise ValueError(f"face {field!r} must be {expected}, got {got}")
    flat = [x for row in rows for x in row] if pairs else list(rows)
    bad = [v for v in flat if not _is_number(v)]
    if bad:
        raise ValueError(f"face {field!r} must hold finite numbers, got {bad[0]!r}")
    return np.asarray(rows, dtype=np.float32)


def _record(name: str, image_shape: tuple[int, ...], faces: list[dict], warning: str | None) -> dict:
    record = {"image": name, "width": int(image_shape[1]), "height": int(image_shape[0]), "faces": faces}
    if warning is not None:
        record["warning"] = str(warning)
    return record


def to_record(name: str, image_shape: tuple[int, ...], faces: list[Face], nme: list[float] | None = None,
              warning: str | None = None) -> dict:
    """``{"image", "width", "height", "faces": [...]}``; ``nme`` adds a per-face ``"nme"``, ``warning``
    a record-level ``"warning"`` (e.g. faces left out by ``max_faces``)."""
    record_faces = [face.to_dict() for face in faces]
    if nme is not None:
        for entry, value in zip(record_faces, nme):
            entry["nme"] = None if value is None else round(float(value), 6)
    return _record(name, image_shape, record_faces, warning)


def detections_record(name: str, image_shape: tuple[int, ...], detections: Detections,
                      warning: str | None = None) -> dict:
    """The detector-only record (no 98-point model): ``to_record``'s schema with each face's
    ``"landmarks"`` replaced by MTCNN's ``"five_points"`` (eyes, nose tip, mouth corners)."""
    faces = [{"box": _px(box), "score": round(float(score), _SCORE_DECIMALS),
              "five_points": [_px(point) for point in points]}
             for box, score, points in zip(detections.boxes, detections.scores, detections.points)]
    return _record(name, image_shape, faces, warning)


def crop_faces(image_rgb: np.ndarray, boxes_xyxy: np.ndarray, size: int = INPUT_SIZE,
               padding: float = CROP_PADDING) -> tuple[np.ndarray, np.ndarray]:
    """Square crops around boxes: ((F, size, size, 3) uint8, (F, 2, 3) image->crop matrices)."""
    crops = np.empty((len(boxes_xyxy), size, size, 3), dtype=np.uint8)
    matrices = np.empty((len(boxes_xyxy), 2, 3), dtype=np.float64)
    for i, box in enumerate(boxes_xyxy):
        center, side = box_to_crop(box, padding)
        matrices[i] = crop_matrix(center, side, output_size=size)
        crops[i] = warp_crop(image_rgb, matrices[i], size)
    return crops, matrices


def pick_device(device: str | torch.device | None) -> torch.device:
    """``None``/"auto" -> CUDA when present, else CPU; anything else is taken as given."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA GPU is available")
    return device


class Predictor:
    """98-point landmarks for every face in an image.

    Args:
        weights: a checkpoint path or URL, an already built ``LandmarkRegressor``, or ``None`` for
            the official weights (cached, else downloaded; offline raises ``WeightsUnavailableError``).
        device: "cuda", "cpu", or ``None`` for CUDA when present. On GPU the network runs channels-last.
        flip_test: also run the mirrored crop and average (the published evaluation setting); each
            face then gets a ``flip_error``.
        flip_convention: how a mirrored prediction maps back, "1.x" (x -> 1 - x - 1/size, mmpose
            1.x, NME 4.44) or "0.x" (x -> 1 - x, mmpose 0.x, 4.41); see ``model.codec``.
        detector: a ``FaceDetector``; ``None`` builds MTCNN on first use.
        max_faces: at most this many faces (highest detector scores) get landmarks in ``predict``.
        backend: how the network runs (``model.backends``): "torch" (eager), "onnx" (ONNX Runtime
            fp32), "onnx-int8" (ONNX Runtime, static int8), or "auto": torch on GPU, the fastest CPU
            backend that keeps the accuracy bound on CPU. ONNX graphs are exported on first use
            and cached on disk.
        input_size: crop side the weights were trained at. ``None`` (default): a project
            checkpoint's ``config.input_size`` when it has one, else 256 (the published model). An
            explicit value wins. ONNX backends run 256 only.
        precision: "fp32" (default, every device) or "bf16" (autocast; torch backend only).
    """

    def __init__(self, weights: str | os.PathLike | LandmarkRegressor | None = None, *,
                 device: str | torch.device | None = None, flip_test: bool = True,
                 flip_convention: str = DEFAULT_FLIP_CONVENTION, detector: FaceDetector | None = None,
                 max_faces: int = MAX_FACES, backend: str = AUTO, input_size: int | None = None,
                 precision: str = FP32) -> None:
        if max_faces < 1:
            raise ValueError(f"max_faces must be at least 1, got {max_faces}")
        if input_size is not None and input_size < MIN_INPUT_SIZE:
            raise ValueError(f"input_size must be at least {MIN_INPUT_SIZE} pixels, got {input_size}")
        self.flip_convention = check_flip_convention(flip_convention)
        self.precision = check_precision(precision)
        check_backend(backend)
        self.device = pick_device(device)
        if isinstance(weights, LandmarkRegressor):
            model, config = weights, {}
            self.weights_path = None
        else:
            if weights is None:
                from model.weights import official_weights

                weights = official_weights()
            model, config = load_checkpoint(weights)
            self.weights_path = str(weights)  # provenance of predictions made with it
        trained_at = config.get("input_size")
        if input_size is not None and trained_at is not None and input_size != trained_at:
            log.warning("input_size %d given for weights trained at %d px (%s): using %d",
                        input_size, trained_at, weights, input_size)
        self.input_size = int(input_size if input_size is not None else trained_at or INPUT_SIZE)
        if self.input_size != INPUT_SIZE and backend == AUTO:
            backend = TORCH  # the ONNX graphs are exported for the published 256 x 256 input
        self.backend_name = resolve_backend(backend, self.device, self.precision)
        if self.input_size != INPUT_SIZE and self.backend_name != TORCH:
            raise ValueError(f"backend {self.backend_name!r} runs {INPUT_SIZE} x {INPUT_SIZE} crops only, "
                             f"got input_size {self.input_size}; use backend 'torch'")
        self.model = model.eval().to(self.device)
        self._backend = (TorchBackend(self.model, self.device, precision=self.precision)
                         if self.backend_name == TORCH else None)
        self.flip_test = bool(flip_test)
        self.max_faces = int(max_faces)
        self._detector = detector

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:
            self._detector = FaceDetector(device=self.device)
        return self._detector

    def run_network(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 crops -> (N, 98, 2) float32 normalised coordinates (no flip)."""
        if self._backend is None:  # ONNX backends are exported (or read from the cache) on first use
            self._backend = build_backend(self.backend_name, self.model, self.device, precision=self.precision)
        return self._backend(crops)

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 crops -> (N, 98, 2) normalised coordinates, flip test included.

        With flip test the mirrored crops go into the same batch as the originals (one forward).
        """
        return predict_crops(self.run_network, crops, self.input_size, self.flip_test, self.flip_convention)

    def predict_crops_with_flip_error(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``predict_crops`` plus each crop's ``flip_error`` (N,) in % of the inter-ocular distance
        (``None`` when flip test is off): one forward for both."""
        if not self.flip_test:
            return self.predict_crops(crops), None
        direct, mirrored = flip_pair(self.run_network, crops, self.input_size, self.flip_convention)
        return (direct + mirrored) / np.float32(2.0), flip_error(direct, mirrored)

    def _boxes_to_landmarks(self, image_rgb: np.ndarray, boxes_xyxy) -> tuple[np.ndarray, np.ndarray | None]:
        image_rgb = check_image_array(image_rgb, "image_rgb")
        boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        crops, matrices = crop_faces(image_rgb, boxes, self.input_size)
        coords, errors = self.predict_crops_with_flip_error(crops)
        return decode(coords, matrices, self.input_size), errors

    def predict_boxes(self, image_rgb: np.ndarray, boxes_xyxy) -> np.ndarray:
        """Landmarks for given boxes (e.g. ground-truth boxes in evaluation), all in one batch.

        Args:
            image_rgb: (H, W, 3) uint8 RGB.
            boxes_xyxy: (F, 4) x1, y1, x2, y2 pixels.

        Returns:
            (F, 98, 2) float32 image pixels.
        """
        return self._boxes_to_landmarks(image_rgb, boxes_xyxy)[0]

    def detect(self, image_rgb: np.ndarray) -> Detections:
        """All faces MTCNN finds, best first (no landmarks)."""
        return self.detector.detect(image_rgb)

    def faces_from_detections(self, image_rgb: np.ndarray, detections: Detections) -> list[Face]:
        """Landmarks (and, with flip test, ``flip_error``) for the ``max_faces`` best detections."""
        if len(detections) > self.max_faces:
            log.warning("%d faces found; landmarks for the %d most confident (max_faces)",
                        len(detections), self.max_faces)
        boxes = detections.boxes[: self.max_faces]
        landmarks, errors = self._boxes_to_landmarks(image_rgb, boxes)
        if errors is None:
            errors = [None] * len(boxes)
        return [Face(box, float(score), lms, None if err is None or not np.isfinite(err) else float(err))
                for box, score, lms, err in zip(boxes, detections.scores, landmarks, errors)]

    def predict(self, image_rgb: np.ndarray) -> list[Face]:
        """Detect faces and return their landmarks, best detection first; ``[]`` when none."""
        image_rgb = check_image_array(image_rgb, "image_rgb")
        return self.faces_from_detections(image_rgb, self.detect(image_rgb))
