import math

import numpy as np
import pytest

from model.codec import encode
from model.geometry import box_to_crop, landmark_box, warp_crop
from model.layout import NUM_LANDMARKS
from training.augment import (MMPOSE_0X_AUGMENT, MMPOSE_1X_AUGMENT, NO_AUGMENT, AugmentParams, NormalDraw,
                              clipped_normal, crop_points, draw_crop, flip_landmarks, random_transform,
                              truncated_normal)

DRAWS = 20_000


def _face(rng):
    return rng.uniform(60, 140, (NUM_LANDMARKS, 2))


def _phi(x: float) -> float:  # standard normal density
    return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def _tail(x: float) -> float:  # P(Z > x)
    return 0.5 * math.erfc(x / math.sqrt(2))


def _clipped_std(c: float) -> float:
    """Std of clip(Z, -c, c): E[Z^2; |Z| < c] + c^2 P(|Z| > c), E[Z^2; |Z| < c] = 1 - 2 tail - 2 c phi(c)."""
    return math.sqrt(1 - 2 * _tail(c) - 2 * c * _phi(c) + c * c * 2 * _tail(c))


def _truncated_std(c: float) -> float:
    """Std of Z given |Z| <= c: 1 - 2 c phi(c) / (1 - 2 tail(c))."""
    return math.sqrt(1 - 2 * c * _phi(c) / (1 - 2 * _tail(c)))


def _draws(params: AugmentParams):
    rng = np.random.default_rng(0)
    ts = [random_transform(rng, params) for _ in range(DRAWS)]
    flip = np.array([t.flip for t in ts])
    shift = np.array([t.shift for t in ts])
    scale = np.array([t.scale for t in ts])
    rotation = np.array([t.rotation for t in ts])
    assert all(type(t.scale) is float and type(t.rotation) is float and type(t.flip) is bool for t in ts)
    return flip, shift, scale, rotation


def test_flip_twice_is_identity():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 79, (NUM_LANDMARKS, 2))
    np.testing.assert_allclose(flip_landmarks(flip_landmarks(pts, 80), 80), pts)
    assert flip_landmarks(pts, 80)[97][0] == pytest.approx(79 - pts[96][0])


def test_normal_draws_by_hand():
    rng = np.random.default_rng(0)
    t = truncated_normal(rng, DRAWS)
    assert t.shape == (DRAWS,) and t.min() >= -1 and t.max() <= 1 and abs(t.mean()) < 0.02
    assert t.std() == pytest.approx(_truncated_std(1.0), abs=0.01)  # 0.5396
    assert np.mean(np.abs(t) == 1.0) == 0  # nothing piles up at the ends
    c = clipped_normal(rng, DRAWS, 2.0)
    assert c.std() == pytest.approx(_clipped_std(2.0), abs=0.01)  # 0.9594
    assert np.mean(c == 2.0) == pytest.approx(_tail(2.0), abs=0.004)  # 2.3 % on each end
    assert truncated_normal(rng, 1).shape == (1,)  # always an array
    assert NormalDraw(60).sample(rng, 3).shape == (3,)
    with pytest.raises(ValueError, match="mode must be one of"):
        NormalDraw(1.0, mode="uniform")


def test_mmpose_0x_draws():
    """flip p=0.5; no shift; scale clip(N(1, 0.25), 0.75, 1.25) always; rotation clip(N(0, 30),
    -60, 60) with p=0.6, else 0."""
    flip, shift, scale, rotation = _draws(MMPOSE_0X_AUGMENT)
    assert flip.mean() == pytest.approx(0.5, abs=0.01)
    assert np.all(shift == 0)
    assert scale.min() == 0.75 and scale.max() == 1.25
    for end in (0.75, 1.25):  # a clipped normal: P(Z > 1) = 15.9 % lands exactly on each end
        assert np.mean(scale == end) == pytest.approx(_tail(1.0), abs=0.01)
    assert scale.mean() == pytest.approx(1.0, abs=0.005)
    assert scale.std() == pytest.approx(0.25 * _clipped_std(1.0), abs=0.005)  # 0.1796
    rotated = rotation != 0
    assert rotated.mean() == pytest.approx(0.6, abs=0.01)
    assert rotation.min() == -60 and rotation.max() == 60
    assert np.mean(rotation[rotated] == 60) == pytest.approx(_tail(2.0), abs=0.005)  # 2.3 %
    assert rotation[rotated].std() == pytest.approx(30 * _clipped_std(2.0), abs=0.5)  # 28.8 degrees


def test_mmpose_1x_draws():
    """flip p=0.5; shift 0.16 x truncnorm per axis with p=0.3; scale 1 + 0.25 x truncnorm;
    rotation 60 x truncnorm with p=0.6 (truncnorm: N(0, 1) truncated to [-1, 1])."""
    flip, shift, scale, rotation = _draws(MMPOSE_1X_AUGMENT)
    assert flip.mean() == pytest.approx(0.5, abs=0.01)
    shifted = np.any(shift != 0, axis=1)
    assert shifted.mean() == pytest.approx(0.3, abs=0.01)
    assert np.abs(shift).max() < 0.16 and shift[shifted].std() == pytest.approx(0.16 * _truncated_std(1), abs=0.003)
    assert 0.75 < scale.min() and scale.max() < 1.25  # no mass at (or beyond) the ends
    assert scale.std() == pytest.approx(0.25 * _truncated_std(1.0), abs=0.005)  # 0.1349
    rotated = rotation != 0
    assert rotated.mean() == pytest.approx(0.6, abs=0.01)
    assert np.abs(rotation).max() < 60
    assert rotation[rotated].std() == pytest.approx(60 * _truncated_std(1.0), abs=0.6)  # 32.4 degrees


def _dots(shape, points, channel):
    image = np.zeros(shape, np.uint8)
    for x, y in np.round(points).astype(int):
        image[y - 2:y + 3, x - 2:x + 3, channel] = 255
    return image


def augment_crop(image, landmarks, center, side, output_size, rng, params):
    """One training crop as ``WFLWDataset`` cuts it: the drawn map, the warp, the mapped points."""
    matrix, flip = draw_crop(rng, params, center, side, image.shape[1], output_size)
    return warp_crop(image, matrix, output_size), crop_points(landmarks, matrix, flip), matrix


@pytest.mark.parametrize("params", [MMPOSE_0X_AUGMENT, MMPOSE_1X_AUGMENT], ids=["0.x", "1.x"])
@pytest.mark.parametrize("seed", range(6))
def test_augmented_points_sit_on_the_face(seed, params):
    """Dots at the pupils (red at 96, green at 97); under any draw, the crop's point 96 lies on
    the red dot, unless the draw mirrored the face: then the two eyes swap, as the labels must.
    The pupils sit 10 px either side of the face centre, so every draw keeps them in the crop."""
    rng = np.random.default_rng(seed)
    pts = _face(rng)
    pts[[0, 1]] = (60, 60), (140, 140)  # the face box is 60..140 whatever the other draws
    pts[96], pts[97] = (90, 100), (110, 100)
    image = np.maximum(_dots((200, 200, 3), pts[[96]], 0), _dots((200, 200, 3), pts[[97]], 1))
    center, side = box_to_crop(landmark_box(pts))
    crop, out, matrix = augment_crop(image, pts, center, side, 128, rng, params)
    flipped = matrix[0, 0] * matrix[1, 1] - matrix[0, 1] * matrix[1, 0] < 0
    for index in (96, 97):
        x, y = np.round(out[index]).astype(int)
        assert 0 <= x < 128 and 0 <= y < 128
        red, green = crop[y, x, 0], crop[y, x, 1]
        expect_red = (index == 96) != flipped
        assert (red > 100) == expect_red and (green > 100) != expect_red


def test_flip_always_swaps_labels():
    rng = np.random.default_rng(3)
    pts = _face(rng)
    pts[96], pts[97] = (80, 100), (120, 100)  # image-left and image-right pupils
    center, side = box_to_crop(landmark_box(pts))
    params = AugmentParams(flip_prob=1.0, shift_prob=0.0, scale=NormalDraw(0.0), rotate_prob=0.0)
    _, out, _ = augment_crop(np.zeros((200, 200, 3), np.uint8), pts, center, side, 128, rng, params)
    assert out[96][0] < out[97][0]  # after mirroring, point 96 is again on the image-left


def test_crops_keep_points_inside():
    rng = np.random.default_rng(4)
    pts = _face(rng)
    center, side = box_to_crop(landmark_box(pts))
    _, out, _ = augment_crop(np.zeros((200, 200, 3), np.uint8), pts, center, side, 64, None, None)
    target, weight = encode(out, 64)
    assert np.all(weight == 1) and np.all((target > 0) & (target < 1))
    # a strong zoom pushes points out, and their weight drops to 0
    _, out, _ = augment_crop(np.zeros((200, 200, 3), np.uint8), pts, center, side / 3, 64, rng, NO_AUGMENT)
    target, weight = encode(out, 64)
    inside = np.all((out >= 0) & (out <= 63), axis=1)
    np.testing.assert_array_equal(weight == 1, inside)
    assert 0 < weight.sum() < NUM_LANDMARKS
