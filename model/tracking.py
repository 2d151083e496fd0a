"""Landmarks on a video stream: detect every K frames, follow the landmarks in between.

``FaceTracker.update(frame)`` runs the MTCNN detector on the first frame and then on every
``redetect_every``-th frame. On the frames in between, each tracked face is cropped around its
previous landmarks (``landmark_box`` padded by ``CROP_PADDING``, the box the regressor was trained
on) and only the network runs, which is what makes the webcam path fast.

The predictor's detector must be a ``model.detector.FaceDetector`` (its ``face_scores`` is used).

Losing a face. The regressor always returns 98 points, face or no face, so its output cannot tell
that the face has gone. Before running the network the tracker asks MTCNN's last stage (O-net, a
48 x 48 classifier, far cheaper than the detector) whether the tracked box still holds a face;
below ``min_face_score`` (MTCNN's own O-net threshold by default) the track is dropped and the
full detector runs on that same frame, so a face that moved away fast is found again at once.
Faces that enter the picture while others are tracked, or while none is, are picked up at the next
scheduled detection.

Between detections the tracked faces keep their order; each detection starts afresh (best
detector score first). ``Face.score`` is the detector's score on detection frames and the O-net
probability on tracked frames; ``Face.box`` is the detector box, or the box the crop was made from.
"""
from __future__ import annotations

import numpy as np

from model.geometry import landmark_box
from model.image import check_image_array
from model.pipeline import Face, Predictor

# Run the detector on every 10th frame: at 15 frames/s a face entering the picture is found within
# about 0.7 s, and the detector's cost (close to a network forward on 640x480) is spread thin.
DEFAULT_REDETECT_EVERY = 10
# O-net probability below which a tracked face counts as lost (MTCNN's default O-net threshold).
MIN_FACE_SCORE = 0.7


class FaceTracker:
    """Follow faces across frames of one video stream.

    Args:
        predictor: runs the detector and the network (its ``flip_test`` and ``max_faces`` apply).
        redetect_every: run the detector on every K-th frame (K >= 1; 1 = detect on every frame).
        min_face_score: O-net face probability below which a tracked face is dropped.
    """

    def __init__(self, predictor: Predictor, redetect_every: int = DEFAULT_REDETECT_EVERY,
                 min_face_score: float = MIN_FACE_SCORE) -> None:
        if int(redetect_every) != redetect_every or redetect_every < 1:
            raise ValueError(f"redetect_every must be an integer >= 1, got {redetect_every!r}")
        if not 0.0 <= min_face_score < 1.0:
            raise ValueError(f"min_face_score must be in [0, 1), got {min_face_score!r}")
        self.predictor = predictor
        self.redetect_every = int(redetect_every)
        self.min_face_score = float(min_face_score)
        self.reset()

    def reset(self) -> None:
        """Forget every track; the next ``update`` runs the detector."""
        self.faces: list[Face] = []
        self._age = -1  # frames since the last detection; -1 makes the next update detect

    def update(self, frame_rgb: np.ndarray) -> list[Face]:
        """Landmarks for the faces in the next frame of the stream.

        Args:
            frame_rgb: (H, W, 3) uint8 RGB, the same stream as the previous calls.

        Returns:
            The tracked faces, landmarks (98, 2) in frame pixels; ``[]`` when none is tracked.
        """
        frame = check_image_array(frame_rgb, "frame_rgb")
        self._age += 1
        if self._age == 0 or self._age >= self.redetect_every:
            return self._detect(frame)
        if not self.faces:
            return []  # nothing to follow: wait for the next scheduled detection
        boxes = np.stack([landmark_box(face.landmarks) for face in self.faces]).astype(np.float32)
        scores = self.predictor.detector.face_scores(frame, boxes)
        if np.any(scores < self.min_face_score):
            return self._detect(frame)  # a face was lost: look for all faces again now
        landmarks = self.predictor.predict_boxes(frame, boxes)
        self.faces = [Face(box, float(score), lms) for box, score, lms in zip(boxes, scores, landmarks)]
        return list(self.faces)

    def _detect(self, frame: np.ndarray) -> list[Face]:
        self._age = 0
        self.faces = self.predictor.faces_from_detections(frame, self.predictor.detect(frame))
        return list(self.faces)
