"""Landmarks on a video stream: detector now and then, network on keyframes, optical flow between.

``FaceTracker.update(frame)`` keeps one track per face, each with a stable ``face_id``:

- **Detection** (the first frame, every ``redetect_every`` frames, and when a face is lost): MTCNN
  finds the faces; each is matched to a track by box overlap (keeping its ``face_id``) or starts a
  new one. The track's crop box is anchored to the detection's scale (``box_to_crop`` of the box).
- **Between detections** the crop box follows the image: the similarity transform that the optical
  flow of the tracked points describes (their motion, not their absolute positions) moves and
  scales it. The box never comes from the network's own landmarks, so a biased network output
  cannot feed back into the next crop and make the overlay shrink or drift.
- **Keyframes** (every ``keyframe_every`` frames, or sooner when the face moves by more than
  ``MAX_KEYFRAME_MOTION`` of the crop per frame or too few points pass the forward-backward check):
  the network runs on the crop; in between, the 98 points are carried by ``propagate``.
- **Losing a face.** The regressor returns 98 points face or no face. On keyframes MTCNN's last
  stage (O-net, a 48 x 48 classifier, far cheaper than the detector) scores each tracked box; below
  ``min_face_score`` the track is dropped and the full detector runs on that same frame.

The faces returned are new ``Face`` objects built from the tracker's own arrays: whatever a caller
does with them (smoothing, drawing) never reaches the next crop.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from model.detector import DEFAULT_THRESHOLDS
from model.geometry import apply_affine, box_to_crop, match_boxes
from model.image import check_image_array
from model.pipeline import Face, Predictor
from model.selection import FaceFilter, select_faces

# Run the detector on every 10th frame: at 15 frames/s a face entering the picture is found within
# about 0.7 s, and the detector's cost (about one network forward on 640x480) is spread thin.
DEFAULT_REDETECT_EVERY = 10
# Run the network on every 3rd frame; optical flow carries the points in between (about 6 ms for
# 98 points against about 70 ms for a forward on 2 CPU cores).
DEFAULT_KEYFRAME_EVERY = 3
# O-net probability below which a tracked face counts as lost: MTCNN's own O-net threshold, the
# third of FaceDetector's default (P-net, R-net, O-net) thresholds.
MIN_FACE_SCORE = DEFAULT_THRESHOLDS[2]

# Pyramidal Lucas-Kanade: a 21 x 21 window on 3 pyramid levels (maxLevel 2) follows motions of
# up to about 40 px per frame; 30 iterations or a 0.01 px step end the search.
FLOW_WINDOW = (21, 21)
FLOW_MAX_LEVEL = 2
FLOW_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)
# A point passes the forward-backward check when tracking it forward then back lands within this
# many pixels of where it started.
FB_MAX_ERROR_PX = 1.0
# Fewer good points than this share of the 98 (occlusion, blur, a turn) forces a keyframe.
MIN_GOOD_FRACTION = 0.6
# A crop box moving by more than this share of its side in one frame forces a keyframe.
MAX_KEYFRAME_MOTION = 0.08
# Detections overlapping a track's box by this IoU continue that track (same face_id).
TRACK_MIN_IOU = 0.3
# At a re-detection a continuing track's crop keeps its place and size unless the detection's crop
# differs by more than this share of the side (MTCNN's boxes jitter by a few percent between frames
# while the flow-carried box is smooth); only the part of the difference beyond it is applied.
DETECTION_DEADBAND = 0.05


def to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) uint8; a (H, W) array is returned as it is."""
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def propagate(prev_rgb: np.ndarray, next_rgb: np.ndarray, points) -> tuple[np.ndarray, np.ndarray]:
    """Carry points from one frame to the next with pyramidal Lucas-Kanade optical flow.

    The points are tracked forward and then back; a point is ``ok`` when both passes succeed and
    the round trip ends within ``FB_MAX_ERROR_PX`` of its start. Points that fail are moved with
    the similarity transform fitted to the good ones (left in place when fewer than 2 are good).

    Args:
        prev_rgb, next_rgb: (H, W, 3) uint8 RGB frames (or (H, W) uint8 grey).
        points: (K, 2) pixel positions in ``prev_rgb``.

    Returns:
        points (K, 2) float32 pixel positions in ``next_rgb``, ok (K,) bool.
    """
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    prev_gray, next_gray = to_gray(prev_rgb), to_gray(next_rgb)
    if prev_gray.shape != next_gray.shape:
        raise ValueError(f"frames differ in size: {prev_gray.shape} then {next_gray.shape}")
    if len(pts) == 0:
        return pts.copy(), np.zeros((0,), bool)
    lk = dict(winSize=FLOW_WINDOW, maxLevel=FLOW_MAX_LEVEL, criteria=FLOW_CRITERIA)
    forward, st_f, _ = cv2.calcOpticalFlowPyrLK(prev_gray, next_gray, pts.reshape(-1, 1, 2), None, **lk)
    back, st_b, _ = cv2.calcOpticalFlowPyrLK(next_gray, prev_gray, forward, None, **lk)
    forward, back = forward.reshape(-1, 2), back.reshape(-1, 2)
    ok = (st_f.reshape(-1) == 1) & (st_b.reshape(-1) == 1) & (np.linalg.norm(back - pts, axis=1) < FB_MAX_ERROR_PX)
    ok &= np.all(np.isfinite(forward), axis=1)
    out = forward.astype(np.float32)
    if not ok.all():
        motion = similarity(pts[ok], out[ok])
        out[~ok] = apply_affine(pts[~ok], motion) if motion is not None else pts[~ok]
    return out, ok


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """(2, 3) rotation + uniform scale + shift that best maps (K, 2) ``src`` onto ``dst`` (least
    squares, Umeyama's closed form); ``None`` with fewer than 2 points."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if len(src) < 2:
        return None
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    var = (s ** 2).sum()
    if var <= 0:
        return None
    # Complex-number form: d ~ z s with z = a + ib, a = scale cos, b = scale sin.
    a = (s[:, 0] * d[:, 0] + s[:, 1] * d[:, 1]).sum() / var
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / var
    lin = np.array([[a, -b], [b, a]])
    return np.concatenate([lin, (mu_d - lin @ mu_s)[:, None]], axis=1)


def _beyond(offset, dead: float):
    """The part of an offset (scalar or vector) that reaches beyond a dead zone of radius ``dead``."""
    offset = np.asarray(offset, dtype=np.float64)
    length = float(np.linalg.norm(offset))
    return offset * 0.0 if length <= dead else offset * (1.0 - dead / length)


@dataclasses.dataclass
class Track:
    """One followed face: crop box (``center``, ``side``), the raw points (network or flow, never
    smoothed), the detector box moved along, the last face score, frames since its keyframe."""

    face_id: int
    center: np.ndarray
    side: float
    box: np.ndarray
    score: float
    points: np.ndarray | None = None
    since_keyframe: int = 0

    def face(self) -> Face:
        return Face(box=self.box.astype(np.float32), score=float(self.score),
                    landmarks=self.points.astype(np.float32), face_id=self.face_id)


class FaceTracker:
    """Follow faces across frames of one video stream (see the module docstring).

    Args:
        predictor: runs the detector and the network (its ``flip_test`` applies).
        face_filter: which detections become tracks (``model.selection``; default: the
            predictor's ``max_faces`` most confident).
        redetect_every: run the detector on every K-th frame (K >= 1; 1 = detect on every frame).
        keyframe_every: run the network at least every K-th frame (1 = every frame, no flow).
        min_face_score: O-net face probability below which a tracked face is dropped.
    """

    def __init__(self, predictor: Predictor, redetect_every: int = DEFAULT_REDETECT_EVERY,
                 keyframe_every: int = DEFAULT_KEYFRAME_EVERY, min_face_score: float = MIN_FACE_SCORE,
                 face_filter: FaceFilter | None = None) -> None:
        for name, value in (("redetect_every", redetect_every), ("keyframe_every", keyframe_every)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not 0.0 <= min_face_score < 1.0:
            raise ValueError(f"min_face_score must be in [0, 1), got {min_face_score!r}")
        self.predictor = predictor
        self.face_filter = FaceFilter(max_faces=predictor.max_faces) if face_filter is None else face_filter
        self.redetect_every = int(redetect_every)
        self.keyframe_every = int(keyframe_every)
        self.min_face_score = float(min_face_score)
        self._next_id = 0  # face ids keep counting up across resets
        # Statistics for benchmarks and tests: detector runs and network forwards (keyframes).
        self.detections = 0
        self.keyframes = 0
        self.reset()

    def reset(self) -> None:
        """Forget every track; the next ``update`` runs the detector."""
        self.tracks: list[Track] = []
        self._prev_gray: np.ndarray | None = None
        self._since_detection = -1  # -1: the next update detects

    @property
    def faces(self) -> list[Face]:
        """The current tracks as new ``Face`` objects (raw points, never smoothed)."""
        return [t.face() for t in self.tracks if t.points is not None]

    def update(self, frame_rgb: np.ndarray) -> list[Face]:
        """Landmarks for the faces in the next frame of the stream.

        Args:
            frame_rgb: (H, W, 3) uint8 RGB, the same stream as the previous calls.

        Returns:
            One ``Face`` per tracked face (landmarks (98, 2) frame pixels, ``face_id`` set);
            ``[]`` when none is tracked.

        A ``model.engine.FrameDropped`` raised by the network leaves the tracker as it was.
        """
        frame = check_image_array(frame_rgb, "frame_rgb")
        gray = to_gray(frame)
        if self._prev_gray is not None and self._prev_gray.shape != gray.shape:
            self.reset()  # a new frame size: a new stream
        due = self._since_detection < 0 or self._since_detection + 1 >= self.redetect_every
        if due or not self.tracks:
            tracks = self._detect(frame, gray) if due else []
            since = 0 if due else self._since_detection + 1
        else:
            tracks = self._follow(frame, gray)
            since = self._since_detection + 1
            if tracks is None:  # a face was lost: look for all faces again now
                tracks, since = self._detect(frame, gray), 0
        # Commit only now: a dropped frame (an exception above) leaves the state untouched.
        self.tracks, self._prev_gray, self._since_detection = tracks, gray, since
        return self.faces

    def _detect(self, frame: np.ndarray, gray: np.ndarray) -> list[Track]:
        detections = self.predictor.detect(frame)
        keep = select_faces(detections, self.face_filter).indices
        boxes, scores = detections.boxes[keep], detections.scores[keep]
        # The tracks carried to this frame first, so that a detection is compared with where the
        # face is now, not where it was.
        old = [self._move(t, gray)[0] for t in self.tracks] if self._prev_gray is not None else []
        matched = match_boxes(boxes, np.array([t.box for t in old]).reshape(-1, 4), TRACK_MIN_IOU) \
            if old else [None] * len(boxes)
        tracks = []
        for box, score, j in zip(boxes, scores, matched):
            center, side = box_to_crop(box)
            if j is None:
                face_id, self._next_id = self._next_id, self._next_id + 1
            else:
                prev = old[j]
                face_id = prev.face_id
                center = prev.center + _beyond(center - prev.center, DETECTION_DEADBAND * prev.side)
                side = prev.side * float(np.exp(_beyond(np.log(side / prev.side), DETECTION_DEADBAND)))
            tracks.append(Track(face_id, np.asarray(center, np.float64), float(side),
                                np.asarray(box, np.float64), float(score)))
        self.detections += 1
        self._run_network(frame, tracks)
        return tracks

    def _move(self, track: Track, gray: np.ndarray) -> tuple[Track, bool]:
        """The track carried to this frame by optical flow; and whether it needs a keyframe."""
        points, ok = propagate(self._prev_gray, gray, track.points)
        motion = similarity(track.points[ok], points[ok]) if ok.sum() >= 2 else None
        moved = dataclasses.replace(track, points=points, since_keyframe=track.since_keyframe + 1)
        if motion is not None:
            moved.center = apply_affine(track.center, motion)
            moved.side = track.side * float(np.hypot(motion[0, 0], motion[1, 0]))
            corners = apply_affine(track.box.reshape(2, 2), motion)
            moved.box = np.concatenate([corners.min(axis=0), corners.max(axis=0)])
        shift = np.linalg.norm(moved.center - track.center) / track.side
        due = (moved.since_keyframe >= self.keyframe_every or ok.mean() < MIN_GOOD_FRACTION
               or motion is None or shift > MAX_KEYFRAME_MOTION)
        return moved, due

    def _follow(self, frame: np.ndarray, gray: np.ndarray) -> list[Track] | None:
        """Move every track with the flow; keyframes where due. ``None`` when a face is lost."""
        tracks, keyframe = [], []
        for track in self.tracks:
            moved, due = self._move(track, gray)
            tracks.append(moved)
            if due:
                keyframe.append(moved)
        if keyframe:
            scores = self.predictor.detector.face_scores(frame, np.stack([t.box for t in keyframe]))
            if np.any(scores < self.min_face_score):
                return None
            for track, score in zip(keyframe, scores):
                track.score = float(score)
            self._run_network(frame, keyframe)
        return tracks

    def _run_network(self, frame: np.ndarray, tracks: list[Track]) -> None:
        """Network landmarks for the tracks' crop squares, in one batch."""
        if not tracks:
            return
        landmarks = self.predictor.landmarks_for_squares(frame, [t.center for t in tracks], [t.side for t in tracks])
        for track, points in zip(tracks, landmarks):
            track.points = points
            track.since_keyframe = 0
        self.keyframes += 1
