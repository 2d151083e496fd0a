"""Face detection with facenet-pytorch's MTCNN (weights ship inside the wheel)."""
from __future__ import annotations

from dataclasses import dataclass

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
        min_face_size: smallest face side searched for, pixels.
        thresholds: MTCNN's P/R/O-net score thresholds.
    """

    def __init__(self, device: str | torch.device = "cpu", min_face_size: int = DEFAULT_MIN_FACE_SIZE,
                 thresholds: tuple[float, float, float] = DEFAULT_THRESHOLDS) -> None:
        from facenet_pytorch import MTCNN

        if min_face_size < MIN_WINDOW:
            raise ValueError(f"min_face_size must be at least {MIN_WINDOW} pixels (MTCNN's smallest window), "
                             f"got {min_face_size}")
        if len(thresholds) != 3 or not all(0.0 < t < 1.0 for t in thresholds):
            raise ValueError(f"thresholds must be three numbers in (0, 1), got {thresholds}")
        self.min_face_size = int(min_face_size)
        self._mtcnn = MTCNN(keep_all=True, device=torch.device(device), min_face_size=self.min_face_size,
                            thresholds=list(thresholds), select_largest=False)

    def detect(self, image_rgb: np.ndarray) -> Detections:
        """Faces in an (H, W, 3) uint8 RGB image, sorted by score (empty when none)."""
        image_rgb = check_image_array(image_rgb, "image_rgb")
        if min(image_rgb.shape[:2]) < self.min_face_size:
            return _empty()  # too small to hold a face MTCNN can find
        with torch.inference_mode():
            boxes, scores, points = self._mtcnn.detect(image_rgb, landmarks=True)
        if boxes is None or len(boxes) == 0:
            return _empty()
        # facenet-pytorch returns object arrays: convert to plain float32.
        boxes = np.asarray(boxes.tolist(), dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(scores.tolist(), dtype=np.float32).reshape(-1)
        points = np.asarray(points.tolist(), dtype=np.float32).reshape(-1, 5, 2)
        order = np.argsort(-scores, kind="stable")
        return Detections(boxes[order], scores[order], points[order])

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
