"""Reading images from files or bytes into uint8 RGB arrays: the one place where images enter.

Every format Pillow reads (JPEG, PNG 8/16 bit, PPM, WebP, BMP, GIF, ...) is accepted; EXIF
orientation is applied; grayscale, palette, CMYK, 16-bit and alpha images become 8-bit RGB.
Anything else raises ``ImageError`` naming the input and the reason.
"""
from __future__ import annotations

import io
import os
import stat
import warnings
from collections.abc import Collection, Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Larger images are refused before their pixels are decoded (decompression-bomb guard).
MAX_PIXELS = 50_000_000
# File suffixes taken as images when a folder is given (``find_images``); a file named directly is
# read whatever its suffix.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".ppm", ".pgm", ".pbm", ".pnm", ".bmp",
                            ".webp", ".gif", ".tif", ".tiff", ".dds", ".tga", ".ico", ".jp2", ".j2k"})


class ImageError(ValueError):
    """An input that cannot be used as an image; the message names the input and the reason."""


def read_image(source: str | os.PathLike | bytes, name: str | None = None,
               max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode a file path or encoded bytes to an (H, W, 3) uint8 RGB array.

    Args:
        source: a path, or the encoded file contents.
        name: how the input is named in errors (defaults to the path).
        max_pixels: width x height above which the image is refused, read from the header.

    Any failure (missing, unreadable, not an image, truncated, a format or pixel layout Pillow
    cannot decode, too large) raises ``ImageError`` naming the input and the reason.
    """
    if isinstance(source, (bytes, bytearray)):
        name = name or "<upload>"
        data = bytes(source)
    else:
        name = name or str(source)
        data = _read_file(Path(source), name)
    if not data:
        raise ImageError(f"{name}: file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            _check_size(img, name, max_pixels)
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)  # animated GIF/WebP/TIFF: the first frame is used
            img.load()
            return to_rgb(ImageOps.exif_transpose(img))
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not a recognised image format") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: image is larger than the limit of {max_pixels / 1e6:.0f} megapixels "
                         f"({exc}); refused before decoding") from None
    except MemoryError:
        raise ImageError(f"{name}: cannot be decoded (not enough memory for its pixels)") from None
    except Exception as exc:  # any decoder failure: OSError, NotImplementedError (a DDS
        # pixel format), SyntaxError, struct.error, zlib.error, ValueError, EOFError, ...
        raise ImageError(f"{name}: cannot be decoded ({_reason(exc)})") from None


def _read_file(path: Path, name: str) -> bytes:
    """The bytes of ``path``; ``ImageError`` saying why not (missing, a folder, unreadable, a link loop)."""
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise ImageError(f"{name}: is a folder, not an image file")
        if not stat.S_ISREG(mode):  # a pipe or a device would block or never end
            raise ImageError(f"{name}: is not a regular file (a pipe, socket or device)")
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{name}: file not found") from None
    except OSError as exc:  # permission denied, a symlink loop, a name too long, ...
        raise ImageError(f"{name}: cannot be read ({exc.strerror or exc})") from None


def find_images(paths: Iterable[str | os.PathLike], suffixes: Collection[str] = IMAGE_SUFFIXES) -> list[Path]:
    """The image files named by ``paths``, in the order given: a folder stands for the files under
    it (recursively, sorted, hidden ones and non-image suffixes skipped; symlinked folders are not
    followed); anything else, a missing path included, is kept as given so that ``read_image``
    reports it. A file named twice is kept once.

    Args:
        paths: files and folders, as the user gave them.
        suffixes: lower-case file suffixes that count as images inside a folder.
    """
    found: list[Path] = []
    seen: set[str] = set()
    for given in map(Path, paths):
        inside = _images_in(given, suffixes) if given.is_dir() else [given]
        for path in inside:
            key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                found.append(path)
    return found


def _images_in(folder: Path, suffixes: Collection[str]) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):  # os.walk does not follow symlinked folders
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / f for f in sorted(files)
                     if not f.startswith(".") and Path(f).suffix.lower() in suffixes)
    return found


def _check_size(img: Image.Image, name: str, max_pixels: int) -> None:
    width, height = img.size
    if width * height > max_pixels:
        raise ImageError(
            f"{name}: image is {width}x{height} = {width * height / 1e6:.0f} megapixels, "
            f"more than the limit of {max_pixels / 1e6:.0f}; refused before decoding"
        )
    if width < 1 or height < 1:
        raise ImageError(f"{name}: image is {width}x{height} pixels, which holds no pixels")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def to_rgb(img: Image.Image) -> np.ndarray:
    """Pillow image of any mode -> (H, W, 3) uint8 RGB (16-bit scaled, alpha composited on black)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        scale = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        gray = np.clip(np.round(arr * (255.0 / scale)), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode == "F":
        gray = np.clip(np.asarray(img, dtype=np.float64), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        rgba = np.asarray(img, dtype=np.float32)
        alpha = rgba[:, :, 3:4] / 255.0
        return np.round(rgba[:, :, :3] * alpha).astype(np.uint8)
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def check_image_array(image, name: str = "image") -> np.ndarray:
    """Validate an in-memory image: (H, W, 3) uint8 RGB, returned as a contiguous array."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a numpy array (H, W, 3) uint8, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{name} must be (H, W, 3) uint8 RGB, got shape {image.shape} dtype {image.dtype}")
    return np.ascontiguousarray(image)
