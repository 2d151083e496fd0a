"""app.wflw_faces's decoded-image cache is bounded by bytes, not by a count of images (a count of 16
allowed 16 x 150 MB at the 50-megapixel limit), and hands out read-only arrays."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from app import wflw_faces


def _write_images(folder, count: int, side: int) -> list[str]:
    names = []
    for i in range(count):
        name = f"img_{i}.png"
        cv2.imwrite(str(folder / name), np.full((side, side, 3), i, np.uint8))
        names.append(name)
    return names


def test_cache_never_holds_more_bytes_than_its_bound(tmp_path):
    names = _write_images(tmp_path, 6, 200)  # 120,000 bytes each once decoded
    cache = wflw_faces.ImageCache(max_bytes=300_000)
    for name in names:
        image = cache.get(str(tmp_path), name)
        assert image.nbytes == 120_000 and cache.nbytes <= 300_000
    assert len(cache) == 2 and cache.nbytes == 240_000
    assert cache.get(str(tmp_path), names[-1]) is cache.get(str(tmp_path), names[-1])  # a hit, not a re-read
    assert int(cache.get(str(tmp_path), names[0])[0, 0, 0]) == 0  # evicted earlier, read again correctly
    with pytest.raises(ValueError, match="read-only"):
        cache.get(str(tmp_path), names[0])[0, 0, 0] = 255


def test_an_image_larger_than_the_bound_is_not_kept(tmp_path):
    (name,) = _write_images(tmp_path, 1, 400)  # 480,000 bytes
    cache = wflw_faces.ImageCache(max_bytes=300_000)
    assert cache.get(str(tmp_path), name).shape == (400, 400, 3)
    assert len(cache) == 0 and cache.nbytes == 0


def test_the_shared_cache_is_bounded_by_bytes():
    # The app's one shared cache: at most IMAGE_CACHE_BYTES of decoded pixels for all users together.
    assert isinstance(wflw_faces.IMAGES, wflw_faces.ImageCache)
    assert wflw_faces.IMAGES.max_bytes == wflw_faces.IMAGE_CACHE_BYTES <= 512 * 2**20
