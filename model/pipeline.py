"""Image -> detector -> crop -> network -> decode: the inference pipeline.

``Predictor`` loads the regressor once, picks the device once, and returns ``Face`` records in
image pixels. Test-time flip runs the mirrored crops in the same forward pass as the originals.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch

from model.backends import AUTO, TORCH, TorchBackend, build_backend, check_backend, resolve_backend
from model.constants import CROP_PADDING, INPUT_SIZE
from model.detector import Detections, FaceDetector
from model.geometry import apply_affine, box_to_crop, crop_matrix, invert_affine, warp_crop
from model.image import check_image_array
from model.layout import FLIP_INDICES, NUM_LANDMARKS
from model.network import LandmarkRegressor, load_regressor

log = logging.getLogger(__name__)

# Faces beyond this many (by detector score) get no landmarks; callers say so.
MAX_FACES = 32


@dataclass
class Face:
    """One face: ``box`` (4,) float32 xyxy pixels, ``score`` detector confidence (1.0 for given
    boxes), ``landmarks`` (98, 2) float32 image pixels."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    def to_dict(self) -> dict:
        """The face entry of the JSON schema shared by the CLI and the app's /predict API."""
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
        }


def to_record(name: str, image_shape: tuple[int, ...], faces: list[Face], nme: list[float] | None = None) -> dict:
    """``{"image", "width", "height", "faces": [...]}``; ``nme`` adds a per-face ``"nme"``."""
    record_faces = [face.to_dict() for face in faces]
    if nme is not None:
        for entry, value in zip(record_faces, nme):
            entry["nme"] = None if value is None else round(float(value), 6)
    return {"image": name, "width": int(image_shape[1]), "height": int(image_shape[0]), "faces": record_faces}


def flip_back(coords: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """Map (N, 98, 2) normalised predictions on mirrored crops back to the unmirrored crop.

    A crop pixel x mirrors to (size - 1) - x; divided by the crop size that is
    x -> 1 - x - 1/size (1/256 for the published model). The points are then reordered so that index i again means point i (left
    and right swap under the mirror).
    """
    out = coords[:, FLIP_INDICES].copy()
    out[..., 0] = 1.0 - out[..., 0] - 1.0 / size
    return out


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


def decode(coords: np.ndarray, matrices: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """(F, 98, 2) normalised crop coordinates (crop pixels / ``size``; ``COORD_SCALE`` for the
    published model) -> image pixels, through each crop's inverse map."""
    out = np.empty(coords.shape, dtype=np.float32)
    for i, m in enumerate(matrices):
        out[i] = apply_affine(coords[i] * float(size), invert_affine(m))
    return out


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
        device: "cuda", "cpu", or ``None`` for CUDA when present. On GPU the network runs
            channels-last under bf16 autocast.
        flip_test: also run the mirrored crop and average (the published evaluation setting).
        detector: a ``FaceDetector``; ``None`` builds MTCNN on first use.
        max_faces: at most this many faces (highest detector scores) get landmarks in ``predict``.
        input_size: crop side the weights were trained at (256 for the published model; smaller
            for the project's test and synthetic checkpoints; ONNX backends need 256).
        backend: how the network runs (``model.backends``): "torch" (eager), "onnx" (ONNX Runtime
            fp32), "onnx-int8" (ONNX Runtime, static int8), or "auto": torch on GPU, the fastest CPU
            backend that keeps the accuracy bound on CPU. ONNX graphs are exported on first use
            and cached on disk.
    """

    def __init__(self, weights: str | os.PathLike | LandmarkRegressor | None = None,
                 device: str | torch.device | None = None, flip_test: bool = True,
                 detector: FaceDetector | None = None, max_faces: int = MAX_FACES,
                 backend: str = AUTO, input_size: int = INPUT_SIZE) -> None:
        if max_faces < 1:
            raise ValueError(f"max_faces must be at least 1, got {max_faces}")
        if input_size < 16:
            raise ValueError(f"input_size must be at least 16 pixels, got {input_size}")
        self.device = pick_device(device)
        self.input_size = int(input_size)
        if self.input_size != INPUT_SIZE and backend == AUTO:
            backend = TORCH  # the ONNX graphs are exported for the published 256 x 256 input
        self.backend_name = resolve_backend(check_backend(backend), self.device)
        if self.input_size != INPUT_SIZE and self.backend_name != TORCH:
            raise ValueError(f"backend {self.backend_name!r} runs {INPUT_SIZE} x {INPUT_SIZE} crops only, "
                             f"got input_size {self.input_size}; use backend 'torch'")
        if isinstance(weights, LandmarkRegressor):
            model = weights
        else:
            if weights is None:
                from model.weights import official_weights

                weights = official_weights()
            model = load_regressor(weights)
        self.model = model.eval().to(self.device)
        self._backend = TorchBackend(self.model, self.device) if self.backend_name == TORCH else None
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
            self._backend = build_backend(self.backend_name, self.model, self.device)
        return self._backend(crops)

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 crops -> (N, 98, 2) normalised coordinates, flip test included.

        With flip test the mirrored crops go into the same batch as the originals (one forward).
        """
        if len(crops) == 0:
            return np.zeros((0, NUM_LANDMARKS, 2), np.float32)
        if not self.flip_test:
            return self.run_network(crops)
        out = self.run_network(np.concatenate([crops, crops[:, :, ::-1]]))
        n = len(crops)
        return (out[:n] + flip_back(out[n:], self.input_size)) / 2.0

    def predict_boxes(self, image_rgb: np.ndarray, boxes_xyxy) -> np.ndarray:
        """Landmarks for given boxes (e.g. ground-truth boxes in evaluation), all in one batch.

        Args:
            image_rgb: (H, W, 3) uint8 RGB.
            boxes_xyxy: (F, 4) x1, y1, x2, y2 pixels.

        Returns:
            (F, 98, 2) float32 image pixels.
        """
        image_rgb = check_image_array(image_rgb, "image_rgb")
        boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        crops, matrices = crop_faces(image_rgb, boxes, self.input_size)
        return decode(self.predict_crops(crops), matrices, self.input_size)

    def detect(self, image_rgb: np.ndarray) -> Detections:
        """All faces MTCNN finds, best first (no landmarks)."""
        return self.detector.detect(image_rgb)

    def faces_from_detections(self, image_rgb: np.ndarray, detections: Detections) -> list[Face]:
        """Landmarks for the ``max_faces`` best detections."""
        if len(detections) > self.max_faces:
            log.warning("%d faces found; landmarks for the %d most confident (max_faces)",
                        len(detections), self.max_faces)
        boxes = detections.boxes[: self.max_faces]
        landmarks = self.predict_boxes(image_rgb, boxes)
        return [Face(box.astype(np.float32), float(score), lms)
                for box, score, lms in zip(boxes, detections.scores, landmarks)]

    def predict(self, image_rgb: np.ndarray) -> list[Face]:
        """Detect faces and return their landmarks, best detection first; ``[]`` when none."""
        image_rgb = check_image_array(image_rgb, "image_rgb")
        return self.faces_from_detections(image_rgb, self.detect(image_rgb))
