"""Image -> detector -> crop -> network -> decode: the inference pipeline.

``Predictor`` loads the regressor once, picks the device once, and returns ``Face`` records in
image pixels. Test-time flip runs the mirrored crops in the same forward pass as the originals
(``model.codec``), and the distance between the two halves gives each face its ``flip_error``.

Every entry point (``predict``, ``faces_from_detections``, ``predict_boxes``,
``landmarks_for_squares``, and ``batcher`` for many images at once) goes through one batched path,
``model.batching.FaceBatcher``, which runs the network by the predictor's *runner*: any callable
(N, S, S, 3) crops -> (N, 98, 2) float32 normalised coordinates. By default it is the predictor's
own backend (``ModelParts``, which cuts crops on the GPU when it runs there); the app passes an
inference engine's runner instead (``model.engine``), and ``with_runner`` gives a second predictor
that shares the model, backend and detector but runs through another runner or with another flip
setting.

The JSON record (``Face``, ``to_record``, ``detections_record``, ``max_faces_note``) lives in
``model.record`` and is re-exported here.
"""
from __future__ import annotations

import argparse
import logging
import os
import threading

import numpy as np
import torch

from model.backends import AUTO, FP32, TORCH, TorchBackend, build_backend, check_backend, check_precision, resolve_backend
from model.cli import device_arg
from model.batching import FaceBatcher, Runner
from model.codec import DEFAULT_FLIP_CONVENTION, check_flip_convention
from model.constants import INPUT_SIZE, MIN_INPUT_SIZE
from model.detector import Detections, FaceDetector
from model.geometry import box_matrices, crop_faces, square_matrices
from model.image import check_image_array
from model.network import LandmarkRegressor, load_checkpoint
from model.record import Face, detections_record, max_faces_note, to_record
from model.selection import DEFAULT_MAX_FACES, FaceFilter, select_faces

__all__ = ["Face", "ModelParts", "Predictor", "Runner", "crop_faces", "detections_record",
           "max_faces_note", "pick_device", "to_record"]

log = logging.getLogger(__name__)


def pick_device(device: str | torch.device | None) -> torch.device:
    """``None``/"auto" -> CUDA when present, else CPU; "cpu", "cuda", "cuda:N" or a ``torch.device``.

    Raises ``ValueError`` naming the value for any other text, and for a CUDA device that is not there.
    """
    if device is None:
        device = "auto"
    if not isinstance(device, torch.device):
        try:
            device = device_arg(str(device))
        except argparse.ArgumentTypeError as exc:
            raise ValueError(str(exc)) from None
        if device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} was requested but no CUDA GPU is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r} was requested but only {torch.cuda.device_count()} "
                             f"CUDA GPU(s) are present")
    return device


class ModelParts:
    """What every view of one loaded model shares: the regressor on its device, its backend (built
    on first use: ONNX graphs are exported or read from the cache then) and the face detector
    (MTCNN, built on first use when none is given). Calling it runs the backend: the default runner.
    """

    def __init__(self, model: LandmarkRegressor, device: torch.device, backend_name: str, precision: str,
                 input_size: int, weights_path: str | None, detector: FaceDetector | None) -> None:
        self.model, self.device, self.backend_name = model, device, backend_name
        self.precision, self.input_size, self.weights_path = precision, input_size, weights_path
        self._detector = detector
        self._backend = TorchBackend(model, device, precision=precision) if backend_name == TORCH else None
        self._lock = threading.Lock()

    @property
    def crop_device(self) -> torch.device | None:
        """Where ``model.batching`` cuts crops for this runner: on the GPU for the torch backend on
        CUDA (the image goes up once, the crops stay there), else ``None`` (numpy crops)."""
        return self.device if self.device.type == "cuda" and self.backend_name == TORCH else None

    @property
    def detector(self) -> FaceDetector:
        with self._lock:
            if self._detector is None:
                self._detector = FaceDetector(device=self.device)
            return self._detector

    def __call__(self, crops) -> np.ndarray:
        """(N, S, S, 3) crops (uint8 numpy, or tensors cut on ``crop_device``) -> (N, 98, 2) float32
        normalised coordinates, on the backend."""
        if self._backend is None:
            with self._lock:
                if self._backend is None:
                    self._backend = build_backend(self.backend_name, self.model, self.device,
                                                  precision=self.precision)
        return self._backend(crops)


class Predictor:
    """98-point landmarks for every face in an image.

    Args:
        weights: a checkpoint path or URL, an already built ``LandmarkRegressor``, or ``None`` for
            the official weights (cached, else downloaded; offline raises ``WeightsUnavailableError``).
        device: "auto" (or ``None``: CUDA when present), "cpu", "cuda" or "cuda:N" (``pick_device``).
            On GPU the network runs channels-last.
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
        runner: what runs the network, (N, S, S, 3) uint8 -> (N, 98, 2) float32 normalised
            coordinates; ``None`` (default): the predictor's own backend. An inference engine's
            runner (``model.engine.InferenceEngine.runner``) batches the forwards of many callers.
    """

    def __init__(self, weights: str | os.PathLike | LandmarkRegressor | None = None, *,
                 device: str | torch.device | None = None, flip_test: bool = True,
                 flip_convention: str = DEFAULT_FLIP_CONVENTION, detector: FaceDetector | None = None,
                 max_faces: int = DEFAULT_MAX_FACES, backend: str = AUTO, input_size: int | None = None,
                 precision: str = FP32, runner: Runner | None = None) -> None:
        FaceFilter(max_faces=max_faces)  # refuses a bad value before anything loads
        if input_size is not None and input_size < MIN_INPUT_SIZE:
            raise ValueError(f"input_size must be at least {MIN_INPUT_SIZE} pixels, got {input_size}")
        precision = check_precision(precision)
        check_backend(backend)
        device = pick_device(device)
        check_flip_convention(flip_convention)
        if isinstance(weights, LandmarkRegressor):
            model, config, weights_path = weights, {}, None
        else:
            if weights is None:
                from model.weights import official_weights

                weights = official_weights()
            model, config = load_checkpoint(weights)
            weights_path = str(weights)  # provenance of predictions made with it
        trained_at = config.get("input_size")
        if input_size is not None and trained_at is not None and input_size != trained_at:
            log.warning("input_size %d given for weights trained at %d px (%s): using %d",
                        input_size, trained_at, weights, input_size)
        input_size = int(input_size if input_size is not None else trained_at or INPUT_SIZE)
        if input_size != INPUT_SIZE and backend == AUTO:
            backend = TORCH  # the ONNX graphs are exported for the published 256 x 256 input
        backend_name = resolve_backend(backend, device, precision)
        if input_size != INPUT_SIZE and backend_name != TORCH:
            raise ValueError(f"backend {backend_name!r} runs {INPUT_SIZE} x {INPUT_SIZE} crops only, "
                             f"got input_size {input_size}; use backend 'torch'")
        parts = ModelParts(model.eval().to(device), device, backend_name, precision, input_size, weights_path,
                           detector)
        self._configure(parts, runner, flip_test, flip_convention, max_faces)

    def _configure(self, parts: ModelParts, runner: Runner | None, flip_test: bool, flip_convention: str,
                   max_faces: int) -> None:
        if runner is not None and not callable(runner):
            raise TypeError(f"runner must be callable (crops -> outputs), got {type(runner).__name__}")
        self.parts = parts
        self.runner: Runner = parts if runner is None else runner
        self.flip_test = bool(flip_test)
        self.flip_convention = check_flip_convention(flip_convention)
        self.max_faces = FaceFilter(max_faces=max_faces).max_faces

    def with_runner(self, runner: Runner | None, *, flip_test: bool | None = None) -> "Predictor":
        """A second predictor sharing this one's model, backend and detector, whose network forwards
        go through ``runner`` (``None``: the shared backend itself) and whose flip test is
        ``flip_test`` (``None``: this one's). Flip convention and ``max_faces`` are kept."""
        view = type(self).__new__(type(self))  # over the same parts: nothing is loaded or built again
        view._configure(self.parts, runner, self.flip_test if flip_test is None else flip_test,
                        self.flip_convention, self.max_faces)
        return view

    # What the shared parts hold, read through the predictor.
    model = property(lambda self: self.parts.model, doc="the ``LandmarkRegressor`` (eval mode, on ``device``)")
    device = property(lambda self: self.parts.device, doc="the ``torch.device`` the network runs on")
    backend_name = property(lambda self: self.parts.backend_name, doc="the resolved backend: torch, onnx, ...")
    precision = property(lambda self: self.parts.precision, doc="fp32 or bf16")
    input_size = property(lambda self: self.parts.input_size, doc="crop side in pixels")
    weights_path = property(lambda self: self.parts.weights_path, doc="checkpoint path, None for a given model")

    @property
    def detector(self) -> FaceDetector:
        """The face detector (shared by every predictor over the same parts)."""
        return self.parts.detector

    def batcher(self, batch_size: int | None = None, *, pad: bool = False, crops_on_device: bool | None = None,
                timings: dict[str, float] | None = None) -> FaceBatcher:
        """The one batched path over this predictor's runner, input size and flip setting
        (``model.batching.FaceBatcher``): feed it (key, image, crop matrices) items.
        ``crops_on_device``: True cuts the crops on this predictor's device, False with
        ``cv2.warpAffine``, ``None`` as the runner prefers."""
        where = self.device if crops_on_device is True else crops_on_device
        return FaceBatcher(self.runner, self.input_size, flip_test=self.flip_test,
                           flip_convention=self.flip_convention, batch_size=batch_size, pad=pad,
                           crops_on_device=where, timings=timings)

    def _landmarks(self, image_rgb: np.ndarray, matrices: np.ndarray,
                   timings: dict[str, float] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """(F, 98, 2) image-pixel landmarks and (F,) flip errors (or ``None``) of one image's crops,
        all in one forward."""
        batcher = self.batcher(timings=timings)
        _, points, errors = next(batcher.run([(None, check_image_array(image_rgb, "image_rgb"), matrices)]))
        return points, errors

    def landmarks_for_squares(self, image_rgb: np.ndarray, centers, sides) -> np.ndarray:
        """Landmarks of the faces in given crop squares, in one batch (the tracker's keyframes).

        Args:
            image_rgb: (H, W, 3) uint8 RGB.
            centers: (F, 2) crop square centres, image pixels.
            sides: (F,) crop square sides, image pixels (the whole crop, padding included).

        Returns:
            (F, 98, 2) float32 image pixels (flip test as this predictor's ``flip_test``).
        """
        return self._landmarks(image_rgb, square_matrices(centers, sides, self.input_size))[0]

    def predict_boxes(self, image_rgb: np.ndarray, boxes_xyxy) -> np.ndarray:
        """Landmarks for given boxes (e.g. ground-truth boxes in evaluation), all in one batch.

        Args:
            image_rgb: (H, W, 3) uint8 RGB.
            boxes_xyxy: (F, 4) x1, y1, x2, y2 pixels.

        Returns:
            (F, 98, 2) float32 image pixels.
        """
        return self._landmarks(image_rgb, box_matrices(boxes_xyxy, self.input_size))[0]

    def detect(self, image_rgb: np.ndarray) -> Detections:
        """All faces MTCNN finds, best first (no landmarks)."""
        return self.detector.detect(image_rgb)

    def faces_from_detections(self, image_rgb: np.ndarray, detections: Detections,
                              face_filter: FaceFilter | None = None, *,
                              timings: dict[str, float] | None = None) -> list[Face]:
        """Landmarks (and, with flip test, ``flip_error``) for the detections ``face_filter`` keeps
        (``model.selection``; default: this predictor's ``max_faces`` most confident), in reading
        order (rows top to bottom, left to right). ``timings``: the batcher's stage milliseconds
        are added to it (``FaceBatcher``; for benchmarks)."""
        face_filter = FaceFilter(max_faces=self.max_faces) if face_filter is None else face_filter
        order = select_faces(detections, face_filter).indices
        boxes = np.asarray(detections.boxes, dtype=np.float64).reshape(-1, 4)[order]
        landmarks, errors = self._landmarks(image_rgb, box_matrices(boxes, self.input_size), timings)
        errors = [None] * len(boxes) if errors is None else errors
        return [Face(box, float(detections.scores[i]), points, error)
                for i, box, points, error in zip(order, boxes, landmarks, errors)]

    def predict(self, image_rgb: np.ndarray, face_filter: FaceFilter | None = None) -> list[Face]:
        """Detect faces and return the landmarks of those ``face_filter`` keeps (default: the
        ``max_faces`` most confident) in reading order; ``[]`` when none."""
        image_rgb = check_image_array(image_rgb, "image_rgb")
        return self.faces_from_detections(image_rgb, self.detect(image_rgb), face_filter)
