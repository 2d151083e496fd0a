"""Which detections get landmarks: one rule for uploads, the API, the CLIs, video, the tracker and annotation.

A detection is kept when its score reaches ``min_score`` and, when ``min_size`` is above MTCNN's own
smallest search size, its box's shorter side reaches ``min_size`` pixels; of those, the
``max_faces`` most confident get landmarks, in reading order (``model.order``). At the defaults
nothing MTCNN returns is dropped but for the ``max_faces`` limit: MTCNN searches from 20 px faces
and may box a face a little smaller, and those boxes stay.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.detector import DEFAULT_MIN_FACE_SIZE, DEFAULT_THRESHOLDS, Detections
from model.order import reading_order
from model.record import max_faces_note
from model.text import counted

# The defaults keep every face MTCNN returns: its final (O-net) score threshold and its smallest
# face side searched for. Detector scores of real faces crowd just below 1 (0.9996-0.9999 on
# breakingbad.jpg, a hand there 0.9936), so useful thresholds lie in [0.9, 1].
DEFAULT_MIN_SCORE = DEFAULT_THRESHOLDS[-1]
DEFAULT_MIN_SIZE = float(DEFAULT_MIN_FACE_SIZE)
# Most faces per image that get landmarks (the most confident first).
DEFAULT_MAX_FACES = 32


@dataclass(frozen=True)
class FaceFilter:
    """The limits a detection must pass to get landmarks (see the module docstring).

    Attributes:
        min_score: smallest detector score, in [0, 1].
        min_size: smallest shorter box side, pixels (no limit at or below ``DEFAULT_MIN_SIZE``).
        max_faces: most faces kept per image, the most confident first (at least 1).
    """

    min_score: float = DEFAULT_MIN_SCORE
    min_size: float = DEFAULT_MIN_SIZE
    max_faces: int = DEFAULT_MAX_FACES

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.min_score) <= 1.0:  # NaN fails too
            raise ValueError(f"minimum face score must be between 0 and 1, got {self.min_score!r}")
        if not float(self.min_size) >= 0.0:
            raise ValueError(f"minimum face size must be at least 0 pixels, got {self.min_size!r}")
        if isinstance(self.max_faces, bool) or int(self.max_faces) != self.max_faces or self.max_faces < 1:
            raise ValueError(f"max_faces (most faces per image) must be a whole number of at least 1, "
                             f"got {self.max_faces!r}")


@dataclass(frozen=True)
class Selection:
    """The detections that get landmarks and why the others do not.

    Attributes:
        indices: (K,) int indices into the detections, in reading order.
        low_score: detections below ``min_score``.
        too_small: detections scoring enough but smaller than ``min_size``.
        passed: detections that passed both limits (``max_faces`` then keeps ``len(indices)``).
        face_filter: the limits applied.
    """

    indices: np.ndarray
    low_score: int
    too_small: int
    passed: int
    face_filter: FaceFilter

    def __len__(self) -> int:
        return len(self.indices)

    def threshold_note(self) -> str | None:
        """What the score and size limits left out, e.g. "2 detections below score 0.995 left out"."""
        f, parts = self.face_filter, []
        if self.low_score:
            parts.append(f"{counted(self.low_score, 'detection')} below score {f.min_score:g}")
        if self.too_small:
            parts.append(f"{counted(self.too_small, 'detection')} smaller than {f.min_size:g} px")
        return " and ".join(parts) + " left out" if parts else None

    def limit_note(self) -> str | None:
        """Why fewer faces got landmarks than passed the limits (``max_faces``), else ``None``."""
        return max_faces_note(self.passed, len(self.indices))


def select_faces(detections: Detections, face_filter: FaceFilter = FaceFilter()) -> Selection:
    """The detections that get landmarks under ``face_filter`` (see the module docstring)."""
    boxes = np.asarray(detections.boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(detections.scores, np.float64).reshape(-1)
    sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    scored = scores >= face_filter.min_score
    large = sides >= face_filter.min_size if face_filter.min_size > DEFAULT_MIN_SIZE else np.ones(len(boxes), bool)
    good = np.flatnonzero(scored & large)
    keep = good[np.argsort(-scores[good], kind="stable")][: face_filter.max_faces]
    keep = keep[reading_order(boxes[keep])] if len(keep) else keep
    return Selection(keep.astype(np.int64), int(np.sum(~scored)), int(np.sum(scored & ~large)), len(good),
                     face_filter)


def selected(detections: Detections, selection: Selection) -> Detections:
    """The selected detections, in the selection's (reading) order."""
    i = selection.indices
    return Detections(detections.boxes[i], detections.scores[i], detections.points[i])
