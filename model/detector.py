"""Face detection: MTCNN (facenet-pytorch's networks and weights) run by ``model.mtcnn``'s batched stages."""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from model.backends import AUTO
from model.geometry import box_to_crop, crop_matrix, warp_crop
from model.image import check_image_array
from model.mtcnn import ONET_SIZE, PNET_WINDOW, detect_faces, load_nets, normalize_

# MTCNN's own defaults (facenet-pytorch): the smallest face side searched for, in pixels, and the
# P-, R- and O-net score thresholds; the last is the final face score a detection must reach.
DEFAULT_MIN_FACE_SIZE = 20
DEFAULT_THRESHOLDS = (0.6, 0.7, 0.7)
# ``detect_many`` searches equal-sized images together, at most this many pixels per batch: on the
# 2-core machine eight 640 x 480 frames took 0.73-0.79x the time of eight calls, while 1920 x 1080
# photos gained nothing from batching (1.05x), so they go one by one.
BATCH_PIXELS = 4_000_000


@dataclass
class Detections:
    """Faces found in one image, best score first.

    boxes: (F, 4) float32 x1, y1, x2, y2 pixels; scores: (F,) float32 in [0, 1];
    points: (F, 5, 2) float32 MTCNN's five points (eyes, nose tip, mouth corners).
    """

    boxes: np.ndarray
    scores: np.ndarray
    points: np.ndarray

    def __len__(self) -> int:
        return len(self.boxes)


def _empty() -> Detections:
    return Detections(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))


def _as_tensor(batch: np.ndarray) -> torch.Tensor:
    """A tensor viewing a uint8 array, read-only ones too (decoded images are): the search never writes to it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(batch)


def _best_first(boxes: np.ndarray, scores: np.ndarray, points: np.ndarray) -> Detections:
    order = np.argsort(-scores, kind="stable")
    return Detections(boxes[order].astype(np.float32), scores[order].astype(np.float32),
                      points[order].astype(np.float32))


class FaceDetector:
    """MTCNN face detector returning float32 arrays: the faces facenet-pytorch's
    ``MTCNN(keep_all=True).detect`` finds, several times faster (see docs/detector.md).

    Args:
        device: torch device for the three MTCNN stages (CPU by default); the whole search stays on it.
        min_face_size: smallest face side searched for, pixels of the given image.
        thresholds: MTCNN's P/R/O-net score thresholds.
        max_side: ``None`` (default) searches every photo at full size; a number searches photos
            whose long side is larger on a copy downscaled to it (faster, but the boxes can move by
            several pixels: MTCNN's candidates change with any resampling).
        backend: how the three networks run: "torch", "onnx" (ONNX Runtime, CPU only) or "auto"
            (torch on a GPU, ``model.mtcnn.DEFAULT_CPU_BACKEND`` on CPU).
    """

    def __init__(self, device: str | torch.device = "cpu", min_face_size: int = DEFAULT_MIN_FACE_SIZE,
                 thresholds: tuple[float, float, float] = DEFAULT_THRESHOLDS, max_side: int | None = None,
                 backend: str = AUTO) -> None:
        if min_face_size < PNET_WINDOW:
            raise ValueError(f"min_face_size must be at least {PNET_WINDOW} pixels (MTCNN's smallest window), "
                             f"got {min_face_size}")
        if len(thresholds) != 3 or not all(0.0 < t < 1.0 for t in thresholds):
            raise ValueError(f"thresholds must be three numbers in (0, 1), got {thresholds}")
        if max_side is not None and max_side < PNET_WINDOW:
            raise ValueError(f"max_side must be at least {PNET_WINDOW} pixels or None, got {max_side}")
        self.device = torch.device(device)
        self.min_face_size = int(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.max_side = max_side
        self.nets = load_nets(self.device, backend)

    @property
    def networks(self) -> dict[str, torch.nn.Module]:
        """MTCNN's three stages by name ("P-net", "R-net", "O-net"), e.g. for hooks that time them."""
        return {"P-net": self.nets.pnet, "R-net": self.nets.rnet, "O-net": self.nets.onet}

    def detection_scale(self, image_shape: tuple[int, ...]) -> float:
        """The factor (<= 1) an image of this (H, W, ...) shape is scaled by before MTCNN searches it:
        down to ``max_side`` on the long side, but never below ``PNET_WINDOW / min_face_size``."""
        long_side = max(image_shape[:2])
        if self.max_side is None or long_side <= self.max_side:
            return 1.0
        return max(self.max_side / long_side, PNET_WINDOW / self.min_face_size)

    def detect(self, image_rgb: np.ndarray) -> Detections:
        """Faces in an (H, W, 3) uint8 RGB image, sorted by score (empty when none).

        With ``max_side`` set, a larger photo is searched on a downscaled copy (``detection_scale``);
        boxes and points come back in the given image's pixels.
        """
        return self.detect_many([check_image_array(image_rgb, "image_rgb")])[0]

    def detect_many(self, images_rgb: Sequence[np.ndarray]) -> list[Detections]:
        """``detect`` on several (H, W, 3) uint8 RGB images, one ``Detections`` per image in order.

        Images of one size are searched together, up to ``BATCH_PIXELS`` at a time: each stage's
        network runs once for the group (one pyramid pass), not once per image.
        """
        images = [check_image_array(image, f"images_rgb[{i}]") for i, image in enumerate(images_rgb)]
        results = [_empty()] * len(images)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(image.shape, []).append(i)
        for shape, members in groups.items():
            per_batch = max(1, BATCH_PIXELS // (shape[0] * shape[1]))
            for start in range(0, len(members), per_batch):
                chunk = members[start:start + per_batch]
                for i, found in zip(chunk, self._search([images[i] for i in chunk])):
                    results[i] = found
        return results

    def _search(self, images: list[np.ndarray]) -> list[Detections]:
        """MTCNN on equal-sized images in one batch (on the downscaled copies when ``max_side`` says so)."""
        shape = images[0].shape
        if min(shape[:2]) < self.min_face_size:
            return [_empty() for _ in images]  # too small to hold a face MTCNN can find
        scale = self.detection_scale(shape)
        if scale < 1.0:
            size = (max(1, round(shape[1] * scale)), max(1, round(shape[0] * scale)))
            images = [cv2.resize(image, size, interpolation=cv2.INTER_AREA) for image in images]
        searched = images[0].shape
        batch = _as_tensor(np.stack(images) if len(images) > 1 else images[0][None]).to(self.device)
        with torch.inference_mode():
            found, points = detect_faces(batch, self.nets,
                                         self.min_face_size * searched[1] / shape[1], self.thresholds)
        owner = found.image.cpu().numpy()
        boxes, scores, points = (t.cpu().numpy() for t in (found.boxes, found.scores, points))
        results = []
        for i in range(len(images)):
            mine = owner == i
            box, point = self._to_image(boxes[mine], points[mine], shape, searched)
            results.append(_best_first(box, scores[mine], point))
        return results

    @staticmethod
    def _to_image(boxes: np.ndarray, points: np.ndarray, shape: tuple[int, ...],
                  searched_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Boxes and points of the searched copy in the given image's pixels (pixel centres:
        x_copy + 0.5 = (x + 0.5) * copy width / width, as ``cv2.resize`` samples)."""
        if shape[:2] == searched_shape[:2]:
            return boxes, points
        factor = np.array([shape[1] / searched_shape[1], shape[0] / searched_shape[0]], np.float64)
        boxes = ((boxes.reshape(-1, 2, 2) + 0.5) * factor - 0.5).reshape(-1, 4)
        return boxes, (points + 0.5) * factor - 0.5

    def face_scores(self, image_rgb: np.ndarray, boxes_xyxy) -> np.ndarray:
        """MTCNN's O-net face probability for given boxes: a cheap "is this still a face?" check.

        Each box is squared around its centre (as MTCNN does before O-net), sampled to 48 x 48
        and scored in one batch by the 48 x 48 O-net (a small fraction of a detector run).

        Args:
            image_rgb: (H, W, 3) uint8 RGB.
            boxes_xyxy: (F, 4) x1, y1, x2, y2 pixels.

        Returns:
            (F,) float32 probabilities in [0, 1].
        """
        image_rgb = check_image_array(image_rgb, "image_rgb")
        boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0,), np.float32)
        crops = np.stack([warp_crop(image_rgb, crop_matrix(*box_to_crop(box, padding=1.0), output_size=ONET_SIZE),
                                    ONET_SIZE) for box in boxes])
        x = torch.from_numpy(crops).to(self.device).permute(0, 3, 1, 2).float()
        with torch.inference_mode():
            probs = self.nets.onet(normalize_(x))[2]
        return probs[:, 1].float().cpu().numpy()
