"""The JSON record of landmark predictions: one home of the schema shared by the CLI and the app.

``Face`` is one face (box, score, 98 landmarks in image pixels, optional flip error and track id);
``Face.to_dict`` / ``Face.from_dict`` write and read one face entry, ``to_record`` and
``detections_record`` the whole image record. ``max_faces_note`` is the one wording of "more faces
than ``max_faces``", used by the record's ``"warning"``, the CLI and the app.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from model.detector import Detections
from model.layout import NUM_LANDMARKS, check_scheme, to_68

# Decimals kept in the JSON record: 0.01 px for coordinates, 4 for scores and flip errors (%).
_PX_DECIMALS, _SCORE_DECIMALS = 2, 4


def max_faces_note(found: int, kept: int) -> str | None:
    """Why a record has fewer faces than the detector found (``max_faces``), or ``None`` when it has all.

    e.g. ``max_faces_note(40, 32)`` -> "40 faces found; landmarks for the 32 most confident (--max-faces)".
    """
    if found <= kept:
        return None
    return f"{found} faces found; landmarks for the {kept} most confident (--max-faces)"


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
            ``None`` when the flip test did not run; a NaN given here (no inter-ocular distance) becomes ``None``.
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
        if self.flip_error is not None:  # NaN (no inter-ocular distance to divide by) means none
            flip = float(self.flip_error)
            object.__setattr__(self, "flip_error", flip if math.isfinite(flip) else None)
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
              warning: str | None = None, scheme: int = NUM_LANDMARKS) -> dict:
    """``{"image", "width", "height", "faces": [...]}``; ``nme`` adds a per-face ``"nme"``, ``warning``
    a record-level ``"warning"`` (e.g. faces left out by ``max_faces``), ``scheme=68`` the 300W subset
    (``in_scheme``)."""
    record_faces = [face.to_dict() for face in faces]
    if nme is not None:
        for entry, value in zip(record_faces, nme):
            entry["nme"] = None if value is None else round(float(value), 6)
    return in_scheme(_record(name, image_shape, record_faces, warning), scheme)


def in_scheme(record: dict, scheme: int) -> dict:
    """The record with each face's ``"landmarks"`` in ``scheme``: 98 (the record as is) or 68 (the
    300W / iBUG subset, ``model.layout.to_68``; the record gains ``"scheme": 68``). ``ValueError``
    names any other scheme."""
    if check_scheme(scheme) == NUM_LANDMARKS:
        return record
    faces = [{**face, "landmarks": to_68(np.asarray(face["landmarks"])).tolist()} if "landmarks" in face else face
             for face in record.get("faces", [])]
    return {**record, "faces": faces, "scheme": scheme}


def detections_record(name: str, image_shape: tuple[int, ...], detections: Detections,
                      warning: str | None = None) -> dict:
    """The detector-only record (no 98-point model): ``to_record``'s schema with each face's
    ``"landmarks"`` replaced by MTCNN's ``"five_points"`` (eyes, nose tip, mouth corners)."""
    faces = [{"box": _px(box), "score": round(float(score), _SCORE_DECIMALS),
              "five_points": [_px(point) for point in points]}
             for box, score, points in zip(detections.boxes, detections.scores, detections.points)]
    return _record(name, image_shape, faces, warning)
