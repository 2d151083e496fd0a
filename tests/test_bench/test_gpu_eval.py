"""bench.gpu_eval's image stack (its crops are model.geometry.gpu_crops, tested in test_geometry.py)."""
import numpy as np

from bench.gpu_eval import pad_images


def test_pad_images_zero_pads_bottom_right():
    a = np.full((2, 3, 3), 7, np.uint8)
    b = np.full((4, 1, 3), 9, np.uint8)
    out = pad_images([a, b])
    assert out.shape == (2, 3, 4, 3)
    assert out[0, :, :2, :3].min() == 7 and out[0, :, 2:].max() == 0 and out[0, :, :, :].sum() == 7 * 18
    assert out[1, :, :, :1].min() == 9 and out[1, :, :, 1:].max() == 0
