"""Face detection with facenet-pytorch's MTCNN (weights ship inside the wheel)."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from model.geometry import box_to_crop, crop_matrix, warp_crop
from model.image import check_image_array

# MTCNN's own defaults (facenet-pytorch): the smallest face side searched for, in pixels, and the
# P-, R- and O-net score thresholds; the last is the final face score a detection must reach.
DEFAULT_MIN_FACE_SIZE = 20
DEFAULT_THRESHOLDS = (0.6, 0.7, 0.7)
# P-net's window: MTCNN cannot search for faces smaller than this many pixels.
MIN_WINDOW = 12

# Photos whose long side exceeds this many pixels are searched on a downscaled copy, and the boxes
# and points scaled back: MTCNN's first pyramid level already shrinks the photo by MIN_WINDOW /
# min_face_size (0.6 for 20 px), so a copy no smaller than that finds the same faces (the minimum
# face size is scaled with it), while every pyramid level is resampled from 2.25x fewer pixels on
# a 1920 x 1080 photo. The copy is never scaled below MIN_WINDOW / min_face_size.
DETECT_MAX_SIDE = 1280

# MTCNN's last stage (O-net) sees 48 x 48 crops scaled as (pixel - 127.5) / 128.
ONET_SIZE = 48
ONET_CENTER, ONET_SCALE = 127.5, 1.0 / 128.0


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


class FaceDetector:
    """MTCNN face detector returning float32 arrays.

    Args:
        device: torch device for the three MTCNN stages (CPU by default).
        min_face_size: smallest face side searched for, pixels of the given image.
        thresholds: MTCNN's P/R/O-net score thresholds.
        max_side: search photos larger than this (long side, px) on a downscaled copy
            (``DETECT_MAX_SIDE``; ``None``: always at full size).
    """

    def __init__(self, device: str | torch.device = "cpu", min_face_size: int = DEFAULT_MIN_FACE_SIZE,
                 thresholds: tuple[float, float, float] = DEFAULT_THRESHOLDS,
                 max_side: int | None = DETECT_MAX_SIDE) -> None:
        from facenet_pytorch import MTCNN

        if min_face_size < MIN_WINDOW:
            raise ValueError(f"min_face_size must be at least {MIN_WINDOW} pixels (MTCNN's smallest window), "
                             f"got {min_face_size}")
        if len(thresholds) != 3 or not all(0.0 < t < 1.0 for t in thresholds):
            raise ValueError(f"thresholds must be three numbers in (0, 1), got {thresholds}")
        if max_side is not None and max_side < MIN_WINDOW:
            raise ValueError(f"max_side must be at least {MIN_WINDOW} pixels or None, got {max_side}")
        self.min_face_size = int(min_face_size)
        self.max_side = max_side
        self._mtcnn = MTCNN(keep_all=True, device=torch.device(device), min_face_size=self.min_face_size,
                            thresholds=list(thresholds), select_largest=False)

    @property
    def networks(self) -> dict[str, torch.nn.Module]:
        """MTCNN's three stages by name ("P-net", "R-net", "O-net"), e.g. for hooks that time them."""
        return {"P-net": self._mtcnn.pnet, "R-net": self._mtcnn.rnet, "O-net": self._mtcnn.onet}

    def detection_scale(self, image_shape: tuple[int, ...]) -> float:
        """The factor (<= 1) an image of this (H, W, ...) shape is scaled by before MTCNN searches it:
        down to ``max_side`` on the long side, but never below ``MIN_WINDOW / min_face_size``."""
        long_side = max(image_shape[:2])
        if self.max_side is None or long_side <= self.max_side:
            return 1.0
        return max(self.max_side / long_side, MIN_WINDOW / self.min_face_size)

    def detect(self, image_rgb: np.ndarray) -> Detections:
        """Faces in an (H, W, 3) uint8 RGB image, sorted by score (empty when none).

        A photo larger than ``max_side`` is searched on a downscaled copy (``detection_scale``);
        boxes and points come back in the given image's pixels.
        """
        image_rgb = check_image_array(image_rgb, "image_rgb")
        if min(image_rgb.shape[:2]) < self.min_face_size:
            return _empty()  # too small to hold a face MTCNN can find
        height, width = image_rgb.shape[:2]
        scale = self.detection_scale(image_rgb.shape)
        searched = image_rgb
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            searched = cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA)
        found = self._mtcnn_detect(searched, self.min_face_size * searched.shape[1] / width)
        if found is None:
            return _empty()
        boxes, scores, points = found
        if searched is not image_rgb:
            # pixel centres: x_small + 0.5 = (x + 0.5) * (small width / width), as cv2.resize samples
            factor = np.array([width / searched.shape[1], height / searched.shape[0]], np.float64)
            boxes = ((boxes.reshape(-1, 2, 2) + 0.5) * factor - 0.5).reshape(-1, 4)
            points = (points + 0.5) * factor - 0.5
        order = np.argsort(-scores, kind="stable")
        return Detections(boxes[order].astype(np.float32), scores[order].astype(np.float32),
                          points[order].astype(np.float32))

    def _mtcnn_detect(self, image_rgb: np.ndarray, min_face_size: float):
        """MTCNN's three stages on one image: (boxes (F, 4), scores (F,), points (F, 5, 2)) float64,
        or ``None`` when it finds nothing."""
        from facenet_pytorch.models.utils.detect_face import detect_face

        m = self._mtcnn
        with torch.inference_mode():
            boxes, points = detect_face(image_rgb, min_face_size, m.pnet, m.rnet, m.onet, m.thresholds, m.factor,
                                        m.device)
        boxes, points = np.asarray(boxes[0], np.float64), np.asarray(points[0], np.float64)
        if boxes.size == 0:
            return None
        return boxes.reshape(-1, 5)[:, :4], boxes.reshape(-1, 5)[:, 4], points.reshape(-1, 5, 2)

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
        onet = self._mtcnn.onet
        x = torch.from_numpy(crops).to(next(onet.parameters()).device).permute(0, 3, 1, 2).float()
        with torch.inference_mode():
            probs = onet((x - ONET_CENTER) * ONET_SCALE)[2]
        return probs[:, 1].float().cpu().numpy()
