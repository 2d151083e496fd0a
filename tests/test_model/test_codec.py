"""model.codec: the one home of the coordinate scale and the flip-back formula."""
import numpy as np
import pytest
import torch

from model.codec import (
    FLIP_CONVENTIONS, check_flip_convention, decode, encode, flip_back, flip_error, flip_pair, mirror_crops,
    predict_crops,
)
from model.geometry import box_to_crop, crop_matrix
from model.layout import EYE_CORNERS, FLIP_INDICES


def test_encode_hand_worked_and_weights():
    points = np.zeros((98, 2))
    points[0] = [64, 128]     # inside: 64 / 256 = 0.25
    points[1] = [255, 255]    # the last pixel is inside
    points[2] = [255.5, 10]   # beyond size - 1: weight 0
    points[3] = [-0.5, 10]
    targets, weights = encode(points, 256)
    assert targets.dtype == np.float32 and weights.dtype == np.float32
    np.testing.assert_allclose(targets[0], [0.25, 0.5])
    assert weights[:4].tolist() == [1, 1, 0, 0] and weights[4:].min() == 1


@pytest.mark.parametrize("size", [256, 128])
def test_encode_decode_round_trip_through_a_crop(rng, size):
    box = np.array([40.0, 50.0, 200.0, 230.0])
    matrix = crop_matrix(*box_to_crop(box), rotation=15.0, output_size=size)
    image_points = rng.uniform(60, 180, (98, 2))
    crop_points = image_points @ matrix[:, :2].T + matrix[:, 2]
    targets, _ = encode(crop_points, size)
    back = decode(targets[None], matrix[None], size)
    assert back.shape == (1, 98, 2) and back.dtype == np.float32
    np.testing.assert_allclose(back[0], image_points, atol=1e-3)


def test_flip_back_hand_worked_for_both_conventions():
    coords = np.zeros((1, 98, 2))
    coords[0, 60] = [0.25, 0.5]  # right outer eye corner at crop pixel x = 64
    # 1.x: mirrored pixel 255 - 64 = 191 -> 191 / 256, and it becomes point 72 (the other outer corner)
    np.testing.assert_allclose(flip_back(coords, 256, "1.x")[0, 72], [191 / 256, 0.5])
    np.testing.assert_allclose(flip_back(coords, 256, "0.x")[0, 72], [0.75, 0.5])  # 0.x: 1 - x
    np.testing.assert_allclose(flip_back(coords, 128)[0, 72], [1 - 0.25 - 1 / 128, 0.5])
    assert flip_back(coords, 256).shape == (1, 98, 2) and coords[0, 60].tolist() == [0.25, 0.5]  # input unchanged


@pytest.mark.parametrize("convention", FLIP_CONVENTIONS)
def test_flip_back_is_an_involution_for_numpy_and_torch(rng, convention):
    coords = rng.uniform(0, 1, (3, 98, 2)).astype(np.float32)
    np.testing.assert_allclose(flip_back(flip_back(coords, 64, convention), 64, convention), coords, atol=1e-6)
    as_torch = flip_back(torch.from_numpy(coords), 64, convention)
    assert isinstance(as_torch, torch.Tensor)
    np.testing.assert_allclose(as_torch.numpy(), flip_back(coords, 64, convention), atol=1e-7)


def test_unknown_convention_is_named():
    with pytest.raises(ValueError, match="flip convention must be one of 1.x, 0.x, got '2.0'"):
        check_flip_convention("2.0")


def _column_regressor(crops):
    """A real (if simple) network stand-in: every point sits at the crop's brightest column / size,
    so mirroring the crop moves the points exactly as flip_back undoes."""
    crops = np.asarray(crops)
    column = crops[..., 0].sum(axis=1).argmax(axis=1).astype(np.float32)  # (N,)
    out = np.zeros((len(crops), 98, 2), np.float32)
    out[..., 0] = column[:, None] / crops.shape[2]
    out[..., 1] = 0.5
    return out


def test_flip_pair_and_predict_crops_with_a_column_regressor():
    crops = np.zeros((2, 64, 64, 3), np.uint8)
    crops[0, :, 10] = 255  # bright column at x = 10
    crops[1, :, 40] = 255
    assert mirror_crops(crops)[0, 0, 63 - 10, 0] == 255
    direct, mirrored = flip_pair(_column_regressor, crops, 64, "1.x")
    np.testing.assert_allclose(direct[:, 0, 0], [10 / 64, 40 / 64])
    # the mirror's column is 63 - x; flipped back under 1.x: 1 - (63 - x) / 64 - 1 / 64 = x / 64 exactly
    np.testing.assert_allclose(mirrored, direct, atol=1e-7)
    mean, errors = predict_crops(_column_regressor, crops, 64, flip_test=True)
    np.testing.assert_allclose(mean, direct, atol=1e-7)
    assert errors.shape == (2,) and np.isnan(errors).all()  # every point on one spot: no inter-ocular distance
    plain, none = predict_crops(_column_regressor, crops, 64, flip_test=False)
    np.testing.assert_array_equal(plain, direct)
    assert none is None
    # under 0.x the same pair is 1/64 apart, and the flip-test mean sits half-way
    _, mirrored_0x = flip_pair(_column_regressor, crops, 64, "0.x")
    np.testing.assert_allclose(mirrored_0x[..., 0] - direct[..., 0], 1 / 64, atol=1e-7)
    mean_0x, _ = predict_crops(_column_regressor, crops, 64, flip_test=True, convention="0.x")
    np.testing.assert_allclose(mean_0x[..., 0] - direct[..., 0], 0.5 / 64, atol=1e-7)
    empty, no_errors = predict_crops(_column_regressor, crops[:0], 64)
    assert empty.shape == (0, 98, 2) and no_errors.shape == (0,)


def test_flip_pair_takes_torch_crops_in_one_forward():
    batches = []

    def run(batch):
        batches.append(batch.shape[0])
        return torch.zeros(batch.shape[0], 98, 2) + 0.25

    direct, mirrored = flip_pair(run, torch.zeros(3, 16, 16, 3, dtype=torch.uint8), 16)
    assert batches == [6] and isinstance(direct, np.ndarray)
    np.testing.assert_allclose(mirrored[..., 0], 1 - 0.25 - 1 / 16)


def test_flip_error_hand_worked():
    """Eye corners 0.4 apart in the mean; the two predictions 0.02 apart at every point -> 5 %."""
    direct = np.full((2, 98, 2), 0.5)
    direct[:, EYE_CORNERS[0], 0], direct[:, EYE_CORNERS[1], 0] = 0.3, 0.7
    mirrored = direct.copy()
    mirrored[0, ..., 1] += 0.02  # face 0: every point 0.02 lower
    mirrored[1, :49, 0] += 0.03  # face 1: half the points 0.03 right (the corners 60, 72 stay): mean 0.015
    np.testing.assert_allclose(flip_error(direct, mirrored), [100 * 0.02 / 0.4, 100 * 0.015 / 0.4])
    # scale-free: the same faces in image pixels (x 300, shifted) give the same percentages
    np.testing.assert_allclose(flip_error(direct * 300 + 7, mirrored * 300 + 7), flip_error(direct, mirrored))
    assert flip_error(direct, direct).tolist() == [0.0, 0.0]
    collapsed = np.zeros((1, 98, 2))
    assert np.isnan(flip_error(collapsed, collapsed + [0.0, 0.1]))[0]
    with pytest.raises(ValueError, match=r"flip_error needs two \(N, 98, 2\) arrays, got \(1, 98, 2\) and \(98, 2\)"):
        flip_error(collapsed, collapsed[0])


def test_flip_error_of_a_mirror_symmetric_prediction_is_zero(rng):
    shape = rng.uniform(0.2, 0.8, (1, 98, 2))
    symmetric = (shape + flip_back(shape, 256)) / 2  # a face whose mirror image is itself
    assert flip_error(symmetric, flip_back(symmetric, 256))[0] == pytest.approx(0.0, abs=1e-9)
    assert FLIP_INDICES[EYE_CORNERS[0]] == EYE_CORNERS[1]
