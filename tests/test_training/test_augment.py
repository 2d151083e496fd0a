import numpy as np
import pytest

from model.geometry import box_to_crop, landmark_box
from model.layout import NUM_LANDMARKS
from training.augment import (AugmentParams, augment_crop, encode_targets, eval_crop, flip_image,
                              flip_landmarks, truncated_normal)


def _face(rng, size=200):
    return rng.uniform(60, 140, (NUM_LANDMARKS, 2))


def test_flip_twice_is_identity():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (50, 80, 3), dtype=np.uint8)
    pts = rng.uniform(0, 79, (NUM_LANDMARKS, 2))
    image2, pts2 = flip_image(*flip_image(image, pts))
    np.testing.assert_array_equal(image2, image)
    np.testing.assert_allclose(pts2, pts)
    assert flip_landmarks(pts, 80)[97][0] == pytest.approx(79 - pts[96][0])


def test_truncated_normal_range():
    t = truncated_normal(np.random.default_rng(0), 10000)
    assert t.min() >= -1 and t.max() <= 1 and abs(t.mean()) < 0.02


def _dots(shape, points, channel):
    image = np.zeros(shape, np.uint8)
    for x, y in np.round(points).astype(int):
        image[y - 2:y + 3, x - 2:x + 3, channel] = 255
    return image


@pytest.mark.parametrize("seed", range(6))
def test_augmented_points_sit_on_the_face(seed):
    """Dots at the pupils (red at 96, green at 97); under any draw, the crop's point 96 lies on
    the red dot, unless the draw mirrored the face: then the two eyes swap, as the labels must."""
    rng = np.random.default_rng(seed)
    pts = _face(rng)
    image = np.maximum(_dots((200, 200, 3), pts[[96]], 0), _dots((200, 200, 3), pts[[97]], 1))
    center, side = box_to_crop(landmark_box(pts))
    crop, out, matrix = augment_crop(image, pts, center, side, 128, rng, AugmentParams(flip_prob=0.5))
    flipped = matrix[0, 0] * matrix[1, 1] - matrix[0, 1] * matrix[1, 0] < 0
    for index in (96, 97):
        x, y = np.round(out[index]).astype(int)
        if 0 <= x < 128 and 0 <= y < 128:
            red, green = crop[y, x, 0], crop[y, x, 1]
            expect_red = (index == 96) != flipped
            assert (red > 100) == expect_red and (green > 100) != expect_red


def test_flip_always_swaps_labels():
    rng = np.random.default_rng(3)
    pts = _face(rng)
    pts[96], pts[97] = (80, 100), (120, 100)  # image-left and image-right pupils
    center, side = box_to_crop(landmark_box(pts))
    params = AugmentParams(flip_prob=1.0, shift_prob=0.0, scale_factor=0.0, rotate_prob=0.0)
    _, out, _ = augment_crop(np.zeros((200, 200, 3), np.uint8), pts, center, side, 128, rng, params)
    assert out[96][0] < out[97][0]  # after mirroring, point 96 is again on the image-left


def test_crops_keep_points_inside():
    rng = np.random.default_rng(4)
    pts = _face(rng)
    center, side = box_to_crop(landmark_box(pts))
    _, out, _ = eval_crop(np.zeros((200, 200, 3), np.uint8), pts, center, side, 64)
    target, weight = encode_targets(out, 64)
    assert np.all(weight == 1) and np.all((target > 0) & (target < 1))
    # a strong zoom pushes points out, and their weight drops to 0
    params = AugmentParams(flip_prob=0, shift_prob=0, scale_factor=0, rotate_prob=0)
    _, out, _ = augment_crop(np.zeros((200, 200, 3), np.uint8), pts, center, side / 3, 64, rng, params)
    target, weight = encode_targets(out, 64)
    inside = np.all((out >= 0) & (out <= 63), axis=1)
    np.testing.assert_array_equal(weight == 1, inside)
    assert 0 < weight.sum() < NUM_LANDMARKS
