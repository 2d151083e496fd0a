"""WFLW data: annotation readers and writer, the standard directory tree, and the crop box of a face.

Three annotation formats are read into one ``Sample`` type:

- raw lines of ``list_98pt_rect_attr_{train,test}.txt``: 196 coordinates, the 4-number detection
  rectangle, 6 attribute flags, the image path (207 fields);
- subset lists ``list_98pt_test_<subset>.txt``: 196 coordinates and the image path (197 fields);
  they carry no rectangle and no flags, so ``box`` is the landmarks' extent and ``attributes`` is
  ``None``;
- the mmpose COCO-style JSON (``keypoints`` as x, y, v triples, ``center``, ``scale``, ``bbox``).
"""
from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.geometry import landmark_box
from model.io import atomic_write_text
from model.layout import ATTRIBUTES, NUM_LANDMARKS

# Field counts of the two text formats: 2 x 98 coordinates (+ 4 rectangle + 6 flags) + the path.
NUM_COORDS = 2 * NUM_LANDMARKS
RAW_FIELDS = NUM_COORDS + 4 + len(ATTRIBUTES) + 1
SUBSET_FIELDS = NUM_COORDS + 1

# The standard tree under a WFLW root (as the two official archives unpack).
IMAGES_DIR = "WFLW_images"
ANNOTATIONS_DIR = "WFLW_annotations"
RAW_LISTS_DIR = "list_98pt_rect_attr_train_test"
SUBSET_LISTS_DIR = "list_98pt_test"
SPLITS = ("train", "test")

# Attribute name (model.layout.ATTRIBUTES) -> the suffix of its subset list file.
SUBSET_FILE_NAMES: dict[str, str] = {
    "pose": "largepose",
    "expression": "expression",
    "illumination": "illumination",
    "makeup": "makeup",
    "occlusion": "occlusion",
    "blur": "blur",
}

BOX_MODES = ("landmarks", "rect")


@dataclass
class Sample:
    """One annotated face.

    Attributes:
        image: path relative to ``WFLW_images/`` (or to the JSON's image folder).
        landmarks: (98, 2) float32 image pixels.
        box: (4,) float32 x1, y1, x2, y2: the WFLW detection rectangle, the mmpose ``bbox``, or the
            landmarks' extent for subset-list lines (which carry no rectangle).
        attributes: six bools in ``ATTRIBUTES`` order, or ``None`` when the source has no flags.
        center, scale: mmpose's crop center (pixels) and scale (units of 200 px), JSON only.
    """

    image: str
    landmarks: np.ndarray
    box: np.ndarray
    attributes: tuple[bool, ...] | None = None
    center: np.ndarray | None = field(default=None, repr=False)
    scale: float | None = field(default=None, repr=False)

    def key(self) -> tuple:
        """Identity of a face across files: the image and its points rounded to 1e-3 px."""
        return (self.image, tuple(np.round(self.landmarks.astype(np.float64), 3).ravel().tolist()))


# ----------------------------------------------------------------------------- text readers


def _expected_fields(path: Path, lines: list[str]) -> int:
    """The file's format: from its name when standard, else from the first line of a known size."""
    if path.name.startswith("list_98pt_rect_attr"):
        return RAW_FIELDS
    if path.name.startswith("list_98pt_test"):
        return SUBSET_FIELDS
    for line in lines:
        n = len(line.split())
        if n in (RAW_FIELDS, SUBSET_FIELDS):
            return n
    return RAW_FIELDS


def _parse_fields(fields: list[str], formats: tuple[int, ...]) -> Sample:
    """One line's fields -> ``Sample``; ``formats`` lists the accepted field counts."""
    if len(fields) not in formats:
        raise ValueError(f"expected {' or '.join(str(n) for n in formats)} fields, got {len(fields)}")
    expected = len(fields)
    numeric = fields[:-1]
    values = np.empty(len(numeric), dtype=np.float64)
    for i, text in enumerate(numeric):
        try:
            values[i] = float(text)
        except ValueError:
            raise ValueError(f"field {i + 1} is not a number: {text!r}") from None
        if not math.isfinite(values[i]):
            raise ValueError(f"field {i + 1} is not finite: {text!r}")
    landmarks = values[:NUM_COORDS].reshape(NUM_LANDMARKS, 2).astype(np.float32)
    image = fields[-1]
    if expected == SUBSET_FIELDS:
        return Sample(image, landmarks, landmark_box(landmarks).astype(np.float32), None)
    box = values[NUM_COORDS:NUM_COORDS + 4].astype(np.float32)
    if box[2] < box[0] or box[3] < box[1]:
        raise ValueError(f"rectangle has x_max < x_min or y_max < y_min: {box.tolist()}")
    flags = values[NUM_COORDS + 4:NUM_COORDS + 4 + len(ATTRIBUTES)]
    if not np.all((flags == 0) | (flags == 1)):
        raise ValueError(f"attribute flags must be 0 or 1, got {numeric[NUM_COORDS + 4:]}")
    return Sample(image, landmarks, box, tuple(bool(f) for f in flags))


def _where(source: str, line_number: int | None) -> str:
    return source if line_number is None else f"{source} line {line_number}"


def parse_wflw_line(line: str, source: str = "<line>", line_number: int | None = None) -> Sample:
    """One annotation line (e.g. pasted ground truth) -> ``Sample``.

    The format follows the field count: 207 fields is a raw ``list_98pt_rect_attr`` line
    (coordinates, rectangle, flags, path), 197 a subset-list line (coordinates, path; the box is
    the landmarks' extent and ``attributes`` is ``None``), as ``load_wflw_txt`` reads them.

    Args:
        line: the text of the line (surrounding whitespace ignored).
        source, line_number: where the line comes from, named in the error message.

    Raises:
        ValueError: "<source> line <n>: ..." ("<source>: ..." without a number) for a wrong
            field count, a non-numeric or non-finite value, an inverted rectangle or a flag other
            than 0 / 1.
    """
    try:
        return _parse_fields(line.split(), (RAW_FIELDS, SUBSET_FIELDS))
    except ValueError as exc:
        raise ValueError(f"{_where(source, line_number)}: {exc}") from None


def load_wflw_txt(path: str | os.PathLike, on_error: str = "raise") -> list[Sample]:
    """Read a WFLW annotation list: raw ``list_98pt_rect_attr_*.txt`` (207 fields per line) or a
    subset list ``list_98pt_test_*.txt`` (197 fields).

    The format is taken from the file name when it is a standard one, else from the first line with
    207 or 197 fields. Subset-list samples get ``attributes=None`` and the landmarks' extent as box.

    Args:
        path: the text file.
        on_error: "raise" stops at the first malformed line (wrong field count, non-numeric or
            non-finite value, bad flag) with a ``ValueError`` naming the file and line; "skip"
            warns and leaves the line out.

    Returns:
        the samples in file order (blank lines ignored).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"WFLW annotation file not found: {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    expected = _expected_fields(path, lines)
    samples = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            samples.append(_parse_fields(line.split(), (expected,)))
        except ValueError as exc:
            message = f"{_where(path.name, number)}: {exc}"
            if on_error == "raise":
                raise ValueError(message) from None
            warnings.warn(message + "; line skipped", stacklevel=2)
    return samples


def _format_number(value: float) -> str:
    # Shortest text that reads back to the same float32, so that writing then reading is exact.
    return np.format_float_positional(np.float32(value), unique=True, trim="-")


def format_wflw_line(sample: Sample) -> str:
    """One annotation line, the inverse of ``load_wflw_txt``.

    A sample with attributes gives a raw 207-field line (coordinates, rectangle, flags, path); a
    sample without gives a 197-field subset-list line (coordinates, path).
    """
    landmarks = np.asarray(sample.landmarks, dtype=np.float32)
    if landmarks.shape != (NUM_LANDMARKS, 2) or not np.all(np.isfinite(landmarks)):
        raise ValueError(f"{sample.image}: landmarks must be finite with shape ({NUM_LANDMARKS}, 2), "
                         f"got shape {landmarks.shape}")
    if not sample.image or any(c.isspace() for c in sample.image):
        raise ValueError(f"image path must be non-empty without whitespace, got {sample.image!r}")
    fields = [_format_number(v) for v in landmarks.ravel()]
    if sample.attributes is not None:
        if len(sample.attributes) != len(ATTRIBUTES):
            raise ValueError(f"{sample.image}: expected {len(ATTRIBUTES)} attribute flags, "
                             f"got {len(sample.attributes)}")
        box = np.asarray(sample.box, dtype=np.float32).reshape(-1)
        if box.shape != (4,):
            raise ValueError(f"{sample.image}: box must have 4 numbers, got {box.shape}")
        fields += [_format_number(v) for v in box]
        fields += ["1" if flag else "0" for flag in sample.attributes]
    fields.append(sample.image)
    return " ".join(fields)


def write_wflw_txt(path: str | os.PathLike, samples: list[Sample]) -> None:
    """Write samples as annotation lines (see ``format_wflw_line``), atomically."""
    atomic_write_text(path, "".join(format_wflw_line(s) + "\n" for s in samples))


# ----------------------------------------------------------------------------- mmpose JSON


def read_json(path: str | os.PathLike, what: str = "JSON file"):
    """Parsed contents of a JSON file; ``FileNotFoundError`` / ``ValueError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path.name}: not valid JSON ({exc})") from None


def load_wflw_json(path: str | os.PathLike) -> list[Sample]:
    """Read mmpose's COCO-style WFLW JSON (``face_landmarks_wflw_*.json``).

    Each annotation becomes a ``Sample`` with ``box`` from ``bbox`` (x, y, w, h -> xyxy),
    ``center``/``scale`` kept as mmpose stores them and ``attributes=None``.
    """
    path = Path(path)
    data = read_json(path, "WFLW JSON file")
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise ValueError(f"{path.name}: expected a COCO-style object with 'images' and 'annotations'")
    names = {img["id"]: img["file_name"] for img in data["images"]}
    samples = []
    for ann in data["annotations"]:
        where = f"{path.name} annotation {ann.get('id', '?')}"
        if ann.get("image_id") not in names:
            raise ValueError(f"{where}: image_id {ann.get('image_id')!r} is not among the images")
        if "keypoints" not in ann:
            raise ValueError(f"{where}: missing 'keypoints' (expected {3 * NUM_LANDMARKS} values: x, y, v per point)")
        try:
            keypoints = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: 'keypoints' must be a list of numbers") from None
        if keypoints.size != 3 * NUM_LANDMARKS or not np.all(np.isfinite(keypoints)):
            raise ValueError(f"{where}: expected {3 * NUM_LANDMARKS} finite keypoint values, "
                             f"got {keypoints.size}")
        landmarks = keypoints.reshape(NUM_LANDMARKS, 3)[:, :2].astype(np.float32)
        # mmpose builds crops from center/scale and ignores bbox; without one, use the landmark extent
        bbox = ann.get("bbox")
        if bbox is not None and len(bbox) == 4:
            x, y, w, h = (float(v) for v in bbox)
        else:
            x, y = landmarks.min(axis=0)
            w, h = landmarks.max(axis=0) - (x, y)
        samples.append(Sample(
            image=names[ann["image_id"]],
            landmarks=landmarks,
            box=np.array([x, y, x + w, y + h], dtype=np.float32),
            attributes=None,
            center=np.asarray(ann["center"], dtype=np.float32) if "center" in ann else None,
            scale=float(ann["scale"]) if "scale" in ann else None,
        ))
    return samples


# ----------------------------------------------------------------------------- the standard tree


@dataclass(frozen=True)
class WFLWTree:
    """Paths of the standard WFLW layout under ``root`` (nothing is checked on construction)."""

    root: Path

    @property
    def images(self) -> Path:
        return self.root / IMAGES_DIR

    def annotations(self, split: str) -> Path:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self.root / ANNOTATIONS_DIR / RAW_LISTS_DIR / f"list_98pt_rect_attr_{split}.txt"

    def subset_list(self, attribute: str) -> Path:
        if attribute not in SUBSET_FILE_NAMES:
            raise ValueError(f"attribute must be one of {tuple(SUBSET_FILE_NAMES)}, got {attribute!r}")
        return self.root / ANNOTATIONS_DIR / SUBSET_LISTS_DIR / f"list_98pt_test_{SUBSET_FILE_NAMES[attribute]}.txt"


def find_wflw_root(root: str | os.PathLike) -> WFLWTree:
    """Check that ``root`` holds the standard tree (images folder and both raw lists).

    Raises ``FileNotFoundError`` listing every missing part; subset lists are optional.
    """
    tree = WFLWTree(Path(root))
    needed = [tree.images, tree.annotations("train"), tree.annotations("test")]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"{root} is not a WFLW root (see `python -m training.prepare`); missing: {', '.join(missing)}")
    return tree


def resolve_image(images_dir: str | os.PathLike, relative: str) -> Path:
    """The file of an annotation's image path, which must stay inside ``images_dir``.

    Absolute paths and paths whose folder climbs out (``..``, a folder symlink leading outside)
    raise ``ValueError``. The file itself may be a link: a dataset of links to photos kept
    elsewhere (``model.annotate``'s ``WFLW_images/``) is a layout this project writes.
    """
    base = Path(images_dir).resolve()
    if Path(relative).is_absolute():
        raise ValueError(f"image path {relative!r} is absolute; it must be relative to {base}")
    path = base / relative
    folder = path.parent.resolve()
    if not folder.is_relative_to(base) or path.name in ("", ".", ".."):
        raise ValueError(f"image path {relative!r} leads outside the dataset images folder {base}")
    return folder / path.name


def attribute_matrix(samples: list[Sample]) -> np.ndarray:
    """(N, 6) bool attribute flags; samples without flags count as in no subset."""
    return np.array([s.attributes or (False,) * len(ATTRIBUTES) for s in samples], dtype=bool).reshape(-1, len(ATTRIBUTES))


def load_test_split(tree: WFLWTree) -> tuple[list[Sample], np.ndarray]:
    """The test faces of a WFLW tree and their (N, 6) bool subset flags (``ATTRIBUTES`` order).

    The flags are the raw test list's six attribute columns: ``load_wflw_txt`` reads that file
    only with them (207 fields a line), and they hold the same membership as the subset lists
    ``list_98pt_test/`` (the same faces, matched by image and points). Raises
    ``ValueError`` naming the file when the test list is empty.
    """
    samples = load_wflw_txt(tree.annotations("test"))
    if not samples:
        raise ValueError(f"{tree.annotations('test')}: no test faces")
    return samples, attribute_matrix(samples)


# ----------------------------------------------------------------------------- crop boxes


def mmpose_box(landmarks) -> np.ndarray:
    """The square (4,) xyxy box mmpose's WFLW annotations hold as ``center`` and ``scale`` x 200.

    The landmarks' extent rounded outward to whole pixels (floor of the minimum x and y, ceil of
    the maximum x and y), squared about its middle with the longer side. ``box_to_crop`` then pads
    it by ``CROP_PADDING`` (1.25), as mmpose does. (The unrounded extent gives crops about 1 %
    smaller and centres up to 0.6 px off over the WFLW test faces.)

    Args:
        landmarks: (98, 2) image pixels.

    Returns:
        (4,) float64 x1, y1, x2, y2 with x2 - x1 == y2 - y1.
    """
    extent = landmark_box(landmarks)
    low, high = np.floor(extent[:2]), np.ceil(extent[2:])
    center, half = (low + high) / 2.0, float(np.max(high - low)) / 2.0
    return np.concatenate([center - half, center + half])


def crop_box(sample: Sample, mode: str) -> np.ndarray:
    """The (4,) xyxy box a crop starts from (``box_to_crop`` pads it by 1.25).

    Modes: ``landmarks`` = mmpose's box from the landmarks (``mmpose_box``; how the published
    4.44 was measured, and what training crops use), ``rect`` = the WFLW detection rectangle.
    """
    if mode == "landmarks":
        return mmpose_box(sample.landmarks)
    if mode == "rect":
        return np.asarray(sample.box, dtype=np.float64)
    raise ValueError(f"box mode must be one of {BOX_MODES}, got {mode!r}")
