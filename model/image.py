"""Reading images from files or bytes into uint8 RGB arrays: the one place where images enter.

Every format Pillow reads (JPEG, PNG 8/16 bit, PPM, WebP, BMP, GIF, ...) is accepted; EXIF
orientation is applied; grayscale, palette, CMYK, 16-bit and alpha images become 8-bit RGB.
Anything else raises ``ImageError`` naming the input and the reason.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Larger images are refused before their pixels are decoded (decompression-bomb guard).
MAX_PIXELS = 50_000_000


class ImageError(ValueError):
    """An input that cannot be used as an image; the message names the input and the reason."""


def read_image(source: str | os.PathLike | bytes, name: str | None = None,
               max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode a file path or encoded bytes to an (H, W, 3) uint8 RGB array.

    Args:
        source: a path, or the encoded file contents.
        name: how the input is named in errors (defaults to the path).
        max_pixels: width x height above which the image is refused, read from the header.
    """
    if isinstance(source, (bytes, bytearray)):
        name = name or "<upload>"
        data = bytes(source)
    else:
        path = Path(source)
        name = name or str(path)
        if not path.is_file():
            raise ImageError(f"{name}: file not found")
        data = path.read_bytes()
    if not data:
        raise ImageError(f"{name}: file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_pixels:
                raise ImageError(
                    f"{name}: image is {width}x{height} = {width * height / 1e6:.0f} megapixels, "
                    f"more than the limit of {max_pixels / 1e6:.0f}; refused before decoding"
                )
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)  # animated GIF/WebP/TIFF: the first frame is used
            img.load()
            img = ImageOps.exif_transpose(img)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not a recognised image format") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: image is larger than the limit of {max_pixels / 1e6:.0f} megapixels "
                         f"({exc}); refused before decoding") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # truncated or corrupt data
        raise ImageError(f"{name}: cannot be decoded ({exc})") from None
    return to_rgb(img)


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
