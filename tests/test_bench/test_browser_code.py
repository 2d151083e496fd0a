"""The fake camera's frame code (``bench.browser``): every number survives the trip through a JPEG
at the quality the Webcam tab sends, a frame without a code reads as none, and the clip puts the
photo where it says."""
import cv2
import numpy as np
import pytest

from bench.browser import (CLIP_SIZE, CODE_BITS, PHOTO_LEFT, PHOTO_SIDE, PHOTO_TOP, camera_frames, draw_frame_code,
                           read_frame_code, sliding)


def _jpeg(frame: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


@pytest.mark.parametrize("number", [0, 1, 5, 1234, 2 ** CODE_BITS - 1])
def test_a_frame_code_reads_back_after_jpeg(number, rng):
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)  # noise all around the code
    coded = draw_frame_code(frame, number)
    assert read_frame_code(coded) == number
    assert read_frame_code(_jpeg(coded, 50)) == number  # the page sends quality 0.8; 50 is harder


def test_no_code_reads_as_none_and_a_code_out_of_range_is_refused():
    assert read_frame_code(np.full((480, 640, 3), 120, np.uint8)) is None
    with pytest.raises(ValueError, match=f"a frame code holds 0 to {2 ** CODE_BITS - 1}, got {2 ** CODE_BITS}"):
        draw_frame_code(np.zeros((480, 640, 3), np.uint8), 2 ** CODE_BITS)


def test_the_clip_puts_the_photo_where_it_says_and_numbers_each_frame(rng):
    photo = rng.integers(0, 256, (50, 50, 3), dtype=np.uint8)
    # Right by 12 px per frame for half the clip, then back: 0, 12, 24, 36, 48, 60, 48, 36, 24, 12.
    lefts = sliding(10, 12)
    assert [x - PHOTO_LEFT for x in lefts] == [0, 12, 24, 36, 48, 60, 48, 36, 24, 12]
    assert sliding(4, 2.5) == [PHOTO_LEFT, PHOTO_LEFT + 2, PHOTO_LEFT + 5, PHOTO_LEFT + 2]  # rounded: 2.5 -> 2
    frames = camera_frames(photo, lefts)
    assert all(f.shape == (CLIP_SIZE[1], CLIP_SIZE[0], 3) for f in frames)
    assert [read_frame_code(f) for f in frames] == list(range(10))
    row = PHOTO_TOP + PHOTO_SIDE // 2
    for t in (0, 3, 7):
        inside = np.flatnonzero(np.any(frames[t][row] != frames[t][row, -1], axis=1))
        assert inside.min() == lefts[t] and inside.max() == lefts[t] + PHOTO_SIDE - 1
    with pytest.raises(ValueError, match=r"frame 1: the photo at \(400, 110\) does not fit in 640x480"):
        camera_frames(photo, [100, 400])
