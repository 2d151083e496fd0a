"""COCO keypoints files: the format mmpose, xtcocotools and most pose tools read.

One face is one annotation of the single category "face": ``bbox`` [x, y, w, h] pixels, ``keypoints``
as K (x, y, v) triples (v = 2: labelled and visible), ``num_keypoints`` = K, ``area`` = w x h, and
this project's extras ``score`` (detector), ``flip_error`` (% of the inter-ocular distance) and
``source`` ("model" or "human"). The category carries the keypoint names and skeleton, derived from
the regions of ``model.layout`` (``REGIONS`` for the 98 WFLW points, ``REGIONS_68`` for the 300W /
iBUG subset); skeleton pairs are 1-based, as in COCO's own person category.

Both directions speak the JSON record of ``model.record`` (``{"image", "width", "height", "faces":
[{"box": [x1, y1, x2, y2], "score", "landmarks", "flip_error"?, "source"?}]}``), so whatever makes
records (``model.annotate``, the review export) writes COCO through ``write_coco``.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from model.io import atomic_write_json
from model.layout import NUM_LANDMARKS, NUM_LANDMARKS_68, REGIONS, REGIONS_68, SCHEMES, check_scheme, to_68

CATEGORY_ID = 1
CATEGORY_NAME = "face"
VISIBLE = 2  # COCO's v flag: labelled and visible (0 = not labelled, 1 = labelled, hidden)
SOURCES = ("model", "human")
# Decimals kept: 0.01 px for coordinates and boxes (as the JSON record), 4 for scores.
_PX_DECIMALS, _SCORE_DECIMALS = 2, 4

_REGIONS = {NUM_LANDMARKS: REGIONS, NUM_LANDMARKS_68: REGIONS_68}
# Regions drawn as closed loops (the rest as open polylines); the 68-point brows are only the upper
# arcs, so they stay open there. The two WFLW pupils are single points and get no edge.
_LOOPS = {NUM_LANDMARKS: {"right_brow", "left_brow", "right_eye", "left_eye", "outer_lip", "inner_lip"},
          NUM_LANDMARKS_68: {"right_eye", "left_eye", "outer_lip", "inner_lip"}}
_UNLINKED = {"pupils"}


def keypoint_names(scheme: int = NUM_LANDMARKS) -> list[str]:
    """``scheme`` names in index order, "<region>_<k>" (e.g. "contour_0", "right_eye_4", "jaw_16")."""
    return [f"{name}_{k}" for name, (lo, hi) in _REGIONS[check_scheme(scheme)].items() for k in range(hi - lo)]


def skeleton(scheme: int = NUM_LANDMARKS) -> list[list[int]]:
    """Edges [a, b] between neighbouring points of each region, 1-based (COCO); loops closed."""
    edges = []
    for name, (lo, hi) in _REGIONS[check_scheme(scheme)].items():
        if name in _UNLINKED:
            continue
        edges += [[i + 1, i + 2] for i in range(lo, hi - 1)]
        if name in _LOOPS[scheme] and hi - lo > 2:
            edges.append([hi, lo + 1])
    return edges


def category(scheme: int = NUM_LANDMARKS) -> dict:
    """The one COCO category of a file: id, name, keypoint names and skeleton."""
    return {"id": CATEGORY_ID, "name": CATEGORY_NAME, "supercategory": "person",
            "keypoints": keypoint_names(scheme), "skeleton": skeleton(scheme)}


def _round(values, decimals: int = _PX_DECIMALS) -> list[float]:
    return [round(float(v), decimals) for v in values]


def _annotation(face: dict, ann_id: int, image_id: int, scheme: int) -> dict:
    """One record face -> one COCO annotation (keypoints cut to ``scheme``)."""
    x1, y1, x2, y2 = (float(v) for v in face["box"])
    w, h = round(x2 - x1, _PX_DECIMALS), round(y2 - y1, _PX_DECIMALS)
    points = np.asarray(face["landmarks"], dtype=np.float64)
    if points.shape != (NUM_LANDMARKS, 2):
        raise ValueError(f"face {ann_id}: landmarks must be {NUM_LANDMARKS} [x, y] pairs, got shape {points.shape}")
    if scheme == NUM_LANDMARKS_68:
        points = to_68(points)
    keypoints = [v for x, y in points for v in (round(float(x), _PX_DECIMALS), round(float(y), _PX_DECIMALS), VISIBLE)]
    source = face.get("source", "model")
    if source not in SOURCES:
        raise ValueError(f"face {ann_id}: source must be one of {SOURCES}, got {source!r}")
    flip = face.get("flip_error")
    return {"id": ann_id, "image_id": image_id, "category_id": CATEGORY_ID,
            "bbox": [round(x1, _PX_DECIMALS), round(y1, _PX_DECIMALS), w, h],
            "area": round(w * h, _PX_DECIMALS), "iscrowd": 0, "num_keypoints": len(points),
            "keypoints": keypoints, "score": round(float(face["score"]), _SCORE_DECIMALS),
            "flip_error": None if flip is None else round(float(flip), _SCORE_DECIMALS), "source": source}


def to_coco(records: list[dict], *, scheme: int = NUM_LANDMARKS, info: dict | None = None) -> dict:
    """JSON records (``model.record``) -> a COCO keypoints document.

    Args:
        records: one per image, in the order the file lists them; faces keep their order.
        scheme: 98 (WFLW) or 68 (the 300W subset, ``model.layout.to_68``).
        info: the document's ``info`` (provenance); ``scheme`` is added to it.

    Every image entry carries ``num_faces`` (0 for a photo in which no face was found, which
    therefore stays listed). Ids are 1-based in order.
    """
    scheme = check_scheme(scheme)
    images, annotations = [], []
    for image_id, record in enumerate(records, 1):
        faces = record["faces"]
        images.append({"id": image_id, "file_name": str(record["image"]), "width": int(record["width"]),
                       "height": int(record["height"]), "num_faces": len(faces)})
        for face in faces:
            annotations.append(_annotation(face, len(annotations) + 1, image_id, scheme))
    return {"info": {**(info or {}), "keypoint_scheme": scheme}, "images": images,
            "annotations": annotations, "categories": [category(scheme)]}


def write_coco(path: str | os.PathLike, records: list[dict], *, scheme: int = NUM_LANDMARKS,
               info: dict | None = None) -> Path:
    """``to_coco`` written to ``path`` atomically (compact JSON, keys in a fixed order)."""
    return atomic_write_json(path, to_coco(records, scheme=scheme, info=info))


# ----------------------------------------------------------------------------- reading


def _finite_numbers(value, count: int, where: str, field: str) -> np.ndarray:
    if not isinstance(value, list) or len(value) != count:
        got = f"{len(value)} values" if isinstance(value, list) else type(value).__name__
        raise ValueError(f"{where}: {field!r} must be a list of {count} numbers, got {got}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise ValueError(f"{where}: {field!r} must hold finite numbers")
    return np.asarray(value, dtype=np.float64)


def _face(ann: dict, scheme: int, where: str) -> dict:
    """One COCO annotation -> one record face (``box`` x1, y1, x2, y2; K [x, y] pairs)."""
    x, y, w, h = _finite_numbers(ann.get("bbox"), 4, where, "bbox")
    keypoints = _finite_numbers(ann.get("keypoints"), 3 * scheme, where, "keypoints").reshape(scheme, 3)
    face = {"box": _round([x, y, x + w, y + h]), "score": float(ann.get("score", 1.0)),
            "landmarks": [_round(point) for point in keypoints[:, :2]]}
    if ann.get("flip_error") is not None:
        face["flip_error"] = float(ann["flip_error"])
    if "source" in ann:
        if ann["source"] not in SOURCES:
            raise ValueError(f"{where}: 'source' must be one of {SOURCES}, got {ann['source']!r}")
        face["source"] = ann["source"]
    return face


def read_coco(path: str | os.PathLike) -> tuple[list[dict], dict]:
    """A COCO keypoints file (98 or 68 points per face) -> (records, info).

    Records follow ``to_coco``'s input: one per image in file order, faces in annotation order,
    ``landmarks`` as K [x, y] pairs (K = the category's keypoint count), ``score`` 1.0 where the file
    has none. ``ValueError`` names the file and the annotation for anything that does not fit;
    ``FileNotFoundError`` for a missing file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"COCO keypoints file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path.name}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations",
                                                                                       "categories")):
        raise ValueError(f"{path.name}: expected a COCO object with 'images', 'annotations' and 'categories' lists")
    categories = {c.get("id"): c for c in data["categories"] if isinstance(c, dict)}
    records, by_id = [], {}
    for image in data["images"]:
        if not isinstance(image, dict) or not {"id", "file_name", "width", "height"} <= set(image):
            raise ValueError(f"{path.name}: every image needs 'id', 'file_name', 'width' and 'height', got {image!r}")
        record = {"image": image["file_name"], "width": int(image["width"]), "height": int(image["height"]),
                  "faces": []}
        by_id[image["id"]] = record
        records.append(record)
    for number, ann in enumerate(data["annotations"], 1):
        if not isinstance(ann, dict):
            raise ValueError(f"{path.name}: annotation {number} must be an object, got {type(ann).__name__}")
        where = f"{path.name} annotation {ann.get('id', '?')}"
        if ann.get("image_id") not in by_id:
            raise ValueError(f"{where}: image_id {ann.get('image_id')!r} is not among the images")
        cat = categories.get(ann.get("category_id"))
        if cat is None:
            raise ValueError(f"{where}: category_id {ann.get('category_id')!r} is not among the categories")
        scheme = len(cat.get("keypoints", []))
        if scheme not in SCHEMES:
            raise ValueError(f"{path.name}: category {cat.get('id')!r} has {scheme} keypoints; "
                             f"expected one of {', '.join(map(str, SCHEMES))}")
        by_id[ann["image_id"]]["faces"].append(_face(ann, scheme, where))
    return records, data.get("info", {}) if isinstance(data.get("info"), dict) else {}
