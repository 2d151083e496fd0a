"""Synthetic WFLW: drawn faces whose 98 ground-truth points lie on the drawn features.

``python -m training.synthetic OUT --num-train N --num-test M [--size 256] [--seed S]`` writes the
standard WFLW tree (``WFLW_images/``, ``WFLW_annotations/list_98pt_rect_attr_train_test/`` and the
six ``list_98pt_test/`` subset lists) so the whole training path can be proven to learn on any
machine, and so the app can browse a synthetic root as if it were WFLW.

A face is a 98-point template in a unit frame (x right, y down, face half-width 1) built for the
image-left half and the midline and mirrored with ``FLIP_INDICES``; random shape (eye and mouth
opening, brow height, jaw), pose (yaw squeeze, in-plane rotation), scale and position, then drawn
with OpenCV: head outline through the contour points, brow polygons, eye polygons with pupils at
points 96/97, nose lines, lip polygons. Attribute flags follow what was drawn: large rotation or
yaw (pose), open mouth (expression), a strong shading (illumination), coloured lips and lids
(make-up), a block over the face (occlusion), Gaussian blur (blur).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from model.constants import INPUT_SIZE
from model.geometry import landmark_box
from model.layout import ATTRIBUTES, FLIP_INDICES, NUM_LANDMARKS, REGIONS
from model.formats.wflw import SPLITS, Sample, WFLWTree, write_wflw_txt
from model.text import counted

IMAGE_FOLDER = "0--Synthetic"
SUBPIXEL_BITS = 4  # cv2 drawing with fixed-point coordinates (1/16 px)

# Probability of each attribute's effect being drawn (pose and expression come from the shape draw).
EFFECT_PROB = {"illumination": 0.2, "makeup": 0.2, "occlusion": 0.15, "blur": 0.2}
POSE_ROTATION_DEG = 30.0  # |rotation| beyond this, or a strong yaw, flags "pose"
POSE_YAW = 0.45
EXPRESSION_MOUTH = 0.6    # mouth opening beyond this flags "expression"

# Point spans of the WFLW scheme (model.layout.REGIONS) the template and the drawing walk through.
CONTOUR = REGIONS["contour"]
CHIN = (CONTOUR[0] + CONTOUR[1] - 1) // 2       # 16: the contour's middle point
RIGHT_BROW, LEFT_BROW = REGIONS["right_brow"], REGIONS["left_brow"]
NOSE_BRIDGE, LOWER_NOSE = REGIONS["nose_bridge"], REGIONS["lower_nose"]
RIGHT_EYE, LEFT_EYE = REGIONS["right_eye"], REGIONS["left_eye"]
OUTER_LIP, INNER_LIP = REGIONS["outer_lip"], REGIONS["inner_lip"]
PUPILS = tuple(range(*REGIONS["pupils"]))     # (96, 97): right, left


def _mirror(points: np.ndarray, defined: list[int]) -> np.ndarray:
    """Fill the mirror partner of every defined point with (-x, y)."""
    for i in defined:
        j = FLIP_INDICES[i]
        if j != i:
            points[j] = (-points[i, 0], points[i, 1])
    return points


def _upper_face(put, jaw: float, brow_lift: float) -> None:
    """Image-left contour (0..16) and brow (33..41), and the nose (51..57), in the unit frame."""
    # Contour 0..16: from the image-left side at eye level down to the chin (a squared ellipse).
    for i in range(CONTOUR[0], CHIN + 1):
        t = (i / CHIN) * (math.pi / 2)  # 0 at the side, pi/2 at the chin
        x = -math.cos(t) ** 0.8
        y = -0.25 + 1.2 * jaw * math.sin(t) ** 1.3
        put(i, x, y)
    # Right brow (image left): 33..37 upper edge outer -> inner, 38..41 lower edge inner -> outer.
    by = -0.62 - brow_lift
    brow_upper = RIGHT_BROW[0] + 5  # 5 points on the upper edge, 4 on the lower
    for k, i in enumerate(range(RIGHT_BROW[0], brow_upper)):
        s = k / 4.0
        put(i, -0.85 + 0.65 * s, by - 0.12 * math.sin(math.pi * (0.3 + 0.7 * s)))
    for k, i in enumerate(range(brow_upper, RIGHT_BROW[1])):
        s = 1.0 - (k + 1) / 5.0
        put(i, -0.85 + 0.65 * s, by + 0.07 - 0.09 * math.sin(math.pi * (0.3 + 0.7 * s)))
    # Nose bridge 51..54 on the midline, lower nose 55..57.
    for k, i in enumerate(range(*NOSE_BRIDGE)):
        put(i, 0.0, -0.38 + 0.16 * k)
    nose = LOWER_NOSE[0]
    put(nose, -0.2, 0.2)
    put(nose + 1, -0.1, 0.25)
    put(nose + 2, 0.0, 0.27)  # the midline point


def _mouth(put, mouth_open: float) -> None:
    """Image-left half and midline of the outer (76..87) and inner (88..95) lips, in the unit frame."""
    # Outer lip 76..79 (upper, corner to centre) and 85..87 (lower, centre and left).
    mx, my, mw = 0.0, 0.58, 0.4
    gap = 0.2 * mouth_open
    up, low = 0.1, 0.13 + gap
    lip = OUTER_LIP[0]  # 12 points clockwise from the image-left corner; 6 is the other corner
    put(lip, mx - mw, my)  # mouth corner
    for k in range(1, 4):
        theta = k * math.pi / 6
        dip = 0.03 if k == 3 else 0.0  # cupid's bow, on the midline
        put(lip + k, mx - mw * math.cos(theta), my - gap / 2 - up * math.sin(theta) + dip)
    put(lip + 9, mx, my + low)  # lower midline
    put(lip + 10, mx - mw * math.cos(math.pi / 3), my + low * math.sin(math.pi / 3))
    put(lip + 11, mx - mw * math.cos(math.pi / 6), my + low * math.sin(math.pi / 6))
    # Inner lip 88..90 (upper), 94..95 (lower): 8 points clockwise from the image-left corner.
    iw, inner = 0.3, INNER_LIP[0]
    put(inner, mx - iw, my)
    put(inner + 1, mx - iw / 2, my - gap / 2 - 0.02)
    put(inner + 2, mx, my - gap / 2 - 0.025)
    put(inner + 6, mx, my + gap / 2 + 0.02)
    put(inner + 7, mx - iw / 2, my + gap / 2 + 0.015)


def face_template(eye_open: float = 1.0, mouth_open: float = 0.0, brow_lift: float = 0.0,
                  jaw: float = 1.0, gaze: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """(98, 2) points of a frontal face in the unit frame (x right, y down, half-width 1).

    Args:
        eye_open: lid opening factor (1 = neutral).
        mouth_open: 0 closed .. 1 wide open.
        brow_lift: brow raise in face half-widths.
        jaw: chin length factor.
        gaze: pupil offset as a fraction of the eye half-width / half-height.
    """
    p = np.full((NUM_LANDMARKS, 2), np.nan)
    defined: list[int] = []

    def put(i: int, x: float, y: float) -> None:
        p[i] = (x, y)
        defined.append(i)

    _upper_face(put, jaw, brow_lift)
    # Right eye (image left) 60..67: outer corner, upper lid, inner corner, lower lid.
    ex, ey, ew, eh = -0.45, -0.33, 0.22, 0.09 * eye_open
    for k, i in enumerate(range(*RIGHT_EYE)):
        theta = k * math.pi / 4
        put(i, ex - ew * math.cos(theta), ey - eh * math.sin(theta))
    _mouth(put, mouth_open)
    # Pupils: eye centres shifted by the gaze (same direction for both eyes).
    put(PUPILS[0], ex, ey)
    _mirror(p, defined)
    p[list(PUPILS)] += (gaze[0] * ew * 0.5, gaze[1] * eh * 0.4)
    if np.isnan(p).any():
        raise RuntimeError(f"template points left undefined: {np.flatnonzero(np.isnan(p[:, 0])).tolist()}")
    return p


def _pose(points: np.ndarray, yaw: float, rotation_deg: float, scale: float,
          center: np.ndarray) -> np.ndarray:
    """Unit-frame points -> image pixels: yaw squeeze, rotation, scale, translation."""
    x, y = points[:, 0].copy(), points[:, 1].copy()
    # Yaw: the far half of the face narrows and the midline moves towards it.
    x = x + yaw * 0.35 * (1.0 - np.clip(x * x, 0, 1)) - yaw * 0.25 * np.abs(x) * np.sign(x) * np.sign(yaw)
    t = math.radians(rotation_deg)
    c, s = math.cos(t), math.sin(t)
    # Counter-clockwise on screen (y down): x' = c x + s y, y' = -s x + c y.
    xy = np.stack([c * x + s * y, -s * x + c * y], axis=1)
    return xy * scale + center


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points) * (1 << SUBPIXEL_BITS)).astype(np.int32)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0, 1, size)[:, None, None]
    img = (c0 * (1 - ramp) + c1 * ramp) * np.ones((1, size, 1))
    if rng.random() < 0.5:
        img = img.transpose(1, 0, 2)
    img = np.ascontiguousarray(img.astype(np.uint8))
    for _ in range(int(rng.integers(2, 8))):  # clutter
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        a = rng.integers(0, size, 2)
        if rng.random() < 0.5:
            cv2.circle(img, (int(a[0]), int(a[1])), int(rng.integers(size // 20, size // 4)), color, -1, cv2.LINE_AA)
        else:
            b = a + rng.integers(-size // 3, size // 3, 2)
            cv2.rectangle(img, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), color, -1)
    noise = rng.normal(0, 6, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def draw_face(image: np.ndarray, pts: np.ndarray, rng: np.random.Generator, makeup: bool) -> None:
    """Draw one face through its (98, 2) image-pixel points onto ``image`` (in place, RGB)."""
    line = cv2.LINE_AA
    shift = SUBPIXEL_BITS
    skin = np.array([rng.uniform(120, 240), rng.uniform(80, 200), rng.uniform(60, 170)])
    skin_c = tuple(float(v) for v in skin)
    dark = tuple(float(v) for v in skin * 0.45)
    contour = pts[slice(*CONTOUR)]
    face_w = np.linalg.norm(contour[-1] - contour[0])
    # Head: the contour plus a forehead arc over the brows.
    mid = (contour[0] + contour[-1]) / 2
    up = mid - pts[CHIN]
    up = up / (np.linalg.norm(up) + 1e-9)
    arc = [mid + (contour[-1] - mid) * math.cos(a) + up * face_w * 0.55 * math.sin(a)
           for a in np.linspace(0, math.pi, 24)[1:-1]]
    head = np.concatenate([contour, np.array(arc)], axis=0)
    cv2.fillPoly(image, [_fixed(head)], skin_c, line, shift)
    th = max(1, int(round(face_w / 120)))
    cv2.polylines(image, [_fixed(contour)], False, dark, th, line, shift)
    brow_c = tuple(float(v) for v in rng.uniform(10, 90, 3))
    for lo, hi in (RIGHT_BROW, LEFT_BROW):
        cv2.fillPoly(image, [_fixed(pts[lo:hi])], brow_c, line, shift)
    for lo, hi in (RIGHT_EYE, LEFT_EYE):
        if makeup:
            lid = pts[lo:hi].copy()
            c = lid.mean(axis=0)
            cv2.fillPoly(image, [_fixed(c + (lid - c) * 1.5)], (150, 60, 170), line, shift)
        cv2.fillPoly(image, [_fixed(pts[lo:hi])], (245, 245, 240), line, shift)
        cv2.polylines(image, [_fixed(pts[lo:hi])], True, (40, 30, 30), th, line, shift)
    # lid opening: upper-lid middle (start + 2) to lower-lid middle (start + 6) of each eye
    eye_h = max(np.linalg.norm(pts[lo + 2] - pts[lo + 6]) for lo, _ in (RIGHT_EYE, LEFT_EYE))
    radius = max(1.0, 0.45 * eye_h)
    iris = tuple(float(v) for v in rng.uniform(20, 120, 3))
    for i in PUPILS:
        cv2.circle(image, tuple(int(v) for v in _fixed(pts[i])), int(radius * (1 << shift)), iris, -1, line, shift)
        cv2.circle(image, tuple(int(v) for v in _fixed(pts[i])), int(radius * 0.45 * (1 << shift)),
                   (10, 10, 10), -1, line, shift)
    for lo, hi in (NOSE_BRIDGE, LOWER_NOSE):
        cv2.polylines(image, [_fixed(pts[lo:hi])], False, dark, th, line, shift)
    lip = (220, 20, 60) if makeup else tuple(float(v) for v in skin * np.array([0.9, 0.55, 0.55]))
    cv2.fillPoly(image, [_fixed(pts[slice(*OUTER_LIP)])], lip, line, shift)
    cv2.fillPoly(image, [_fixed(pts[slice(*INNER_LIP)])], (60, 15, 20), line, shift)


def make_face(rng: np.random.Generator, size: int = INPUT_SIZE) -> tuple[np.ndarray, Sample]:
    """One (size, size, 3) uint8 RGB image with one drawn face and its ``Sample`` (image name unset)."""
    mouth_open = float(rng.uniform(0, 1) ** 2)
    template = face_template(
        eye_open=float(rng.uniform(0.5, 1.4)), mouth_open=mouth_open,
        brow_lift=float(rng.uniform(-0.05, 0.12)), jaw=float(rng.uniform(0.85, 1.15)),
        gaze=(float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1))),
    )
    yaw = float(rng.uniform(-0.7, 0.7))
    rotation = float(rng.normal(0, 20))
    scale = float(rng.uniform(0.18, 0.3)) * size  # face half-width in pixels
    margin = 1.4 * scale
    center = rng.uniform(margin, size - margin, 2) if size - margin > margin else np.full(2, size / 2)
    pts = _pose(template, yaw, rotation, scale, center)
    flags = {
        "pose": abs(rotation) > POSE_ROTATION_DEG or abs(yaw) > POSE_YAW,
        "expression": mouth_open > EXPRESSION_MOUTH,
    }
    flags.update({name: bool(rng.random() < p) for name, p in EFFECT_PROB.items()})
    image = _background(rng, size)
    draw_face(image, pts, rng, flags["makeup"])
    if flags["occlusion"]:
        box = landmark_box(pts)
        w, h = box[2:] - box[:2]
        x0 = rng.uniform(box[0] - 0.2 * w, box[2] - 0.3 * w)
        y0 = rng.uniform(box[1], box[3] - 0.3 * h)
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.rectangle(image, (int(x0), int(y0)), (int(x0 + 0.45 * w), int(y0 + 0.4 * h)), color, -1)
    if flags["illumination"]:
        ramp = np.linspace(float(rng.uniform(0.15, 0.4)), 1.0, size)
        shade = ramp[:, None] if rng.random() < 0.5 else ramp[None, :]
        image[:] = (image * shade[..., None]).astype(np.uint8)
    if flags["blur"]:
        sigma = float(rng.uniform(1.0, 2.5)) * size / 256
        image[:] = cv2.GaussianBlur(image, (0, 0), sigma)
    # The "detector" rectangle: the landmarks' extent, jittered a little, rounded like WFLW's.
    box = landmark_box(pts)
    wh = box[2:] - box[:2]
    jitter = rng.uniform(-0.05, 0.05, 4) * np.concatenate([wh, wh])
    rect = np.round(box + jitter).astype(np.float32)
    sample = Sample(image="", landmarks=pts.astype(np.float32), box=rect,
                    attributes=tuple(bool(flags[name]) for name in ATTRIBUTES))
    return image, sample


def write_synthetic_wflw(out: str | os.PathLike, num_train: int, num_test: int, size: int = INPUT_SIZE,
                         seed: int = 0, show_progress: bool = False) -> WFLWTree:
    """Write a WFLW-layout tree of drawn faces under ``out``; returns its ``WFLWTree``.

    ``show_progress``: a progress bar with an ETA on stderr (tqdm), one step per face written.
    """
    if num_train < 1 or num_test < 1:
        raise ValueError(f"num_train and num_test must be at least 1, got {num_train} and {num_test}")
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    tree = WFLWTree(Path(out))
    (tree.images / IMAGE_FOLDER).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    by_split: dict[str, list[Sample]] = {}
    with tqdm(total=num_train + num_test, unit="face", desc="synthetic WFLW", disable=not show_progress,
              dynamic_ncols=True) as bar:
        for split, count in zip(SPLITS, (num_train, num_test)):
            samples = []
            for i in range(count):
                image, sample = make_face(rng, size)
                sample.image = f"{IMAGE_FOLDER}/synthetic_{split}_{i:05d}.jpg"
                if not cv2.imwrite(str(tree.images / sample.image), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, 95]):
                    raise OSError(f"could not write {tree.images / sample.image}")
                samples.append(sample)
                bar.update()
            tree.annotations(split).parent.mkdir(parents=True, exist_ok=True)
            write_wflw_txt(tree.annotations(split), samples)
            by_split[split] = samples
    for j, name in enumerate(ATTRIBUTES):
        path = tree.subset_list(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        members = [Sample(s.image, s.landmarks, s.box, None) for s in by_split["test"] if s.attributes[j]]
        write_wflw_txt(path, members)
    return tree


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Write a synthetic WFLW-layout dataset of drawn faces.")
    parser.add_argument("out", type=Path, help="root folder to write (WFLW_images/, WFLW_annotations/)")
    parser.add_argument("--num-train", type=int, default=200, help="training faces (one per image)")
    parser.add_argument("--num-test", type=int, default=50, help="test faces (one per image)")
    parser.add_argument("--size", type=int, default=INPUT_SIZE, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tree = write_synthetic_wflw(args.out, args.num_train, args.num_test, args.size, args.seed, show_progress=True)
    print(f"wrote {counted(args.num_train, 'train face')} and {counted(args.num_test, 'test face')} under {tree.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
