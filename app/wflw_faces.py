"""Faces of the loaded WFLW test set as the browser, comparison and review tabs show them: the
decoded-image cache, the square crop around a face, the face drawn with ground truth and a
prediction, and its one-paragraph description.

Colours follow ``model.draw`` (one legend everywhere): ground truth ``GT_COLOR`` rings, the
prediction in region colours, error lines ``ERROR_COLOR``.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import gradio as gr
import numpy as np

from app.context import AppContext
from model.draw import draw_on_crops
from model.geometry import landmark_box
from model.image import ImageError, read_image
from model.layout import ATTRIBUTES
from model.pipeline import crop_faces
from model.formats.wflw import resolve_image

VIEW_SIZE = 512
# The face view shows this much context around the landmarks (crop side / landmark extent).
VIEW_PADDING = 1.6
# Decoded dataset images kept in memory, shared by all users, in bytes (a 50-megapixel RGB image
# is 150 MB; WFLW's are 0.1-10 MB). The least recently used are dropped first.
IMAGE_CACHE_BYTES = 256 * 2**20


class ImageCache:
    """A least-recently-used cache of decoded images bounded by their total size in bytes.

    An image larger than the bound is returned but not kept. Thread-safe (Gradio's workers share it).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self._items: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, images_dir: str, image_path: str) -> np.ndarray:
        """The decoded image ``image_path`` of ``images_dir`` (``model.formats.wflw.resolve_image``)."""
        key = (str(images_dir), image_path)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        image = read_image(resolve_image(images_dir, image_path), name=image_path)
        image.setflags(write=False)  # shared between users: nobody may draw into it
        with self._lock:
            if image.nbytes <= self.max_bytes and key not in self._items:
                self._items[key] = image
                self.nbytes += image.nbytes
                while self.nbytes > self.max_bytes:
                    _, dropped = self._items.popitem(last=False)
                    self.nbytes -= dropped.nbytes
        return image


IMAGES = ImageCache(IMAGE_CACHE_BYTES)


def require_testset(ctx: AppContext):
    """The loaded test set, or a ``gr.Error`` saying how to load one."""
    if ctx.testset is None:
        raise gr.Error("No WFLW root loaded. " + ctx.wflw_message, print_exception=False)
    return ctx.testset


def face_image(ctx: AppContext, index: int) -> np.ndarray:
    """The decoded (H, W, 3) uint8 image of test face ``index`` (cached, read-only)."""
    ts = require_testset(ctx)
    try:
        return IMAGES.get(str(ts.tree.images), ts.samples[index].image)
    except (ImageError, ValueError, FileNotFoundError) as exc:
        raise gr.Error(str(exc), print_exception=False) from None


def face_crop(ctx: AppContext, index: int, size: int = VIEW_SIZE, padding: float = VIEW_PADDING):
    """The plain square crop around face ``index``'s landmarks: ((size, size, 3) uint8, (2, 3) image -> view)."""
    image = face_image(ctx, index)
    views, matrices = crop_faces(image, landmark_box(ctx.testset.samples[index].landmarks)[None], size=size,
                                 padding=padding)
    return views[0], matrices[0]


def face_view(ctx: AppContext, index: int, size: int = VIEW_SIZE, pred: np.ndarray | None = None,
              labels: bool = False) -> np.ndarray:
    """Face ``index`` drawn with ground truth, a prediction (the loaded one by default) and error
    lines in ``model.draw``'s colours, cropped around its landmarks: (size, size, 3).

    The points are drawn on the crop (at the view's resolution), not on the full image.
    """
    ts = require_testset(ctx)
    if pred is None and ts.pred is not None:
        pred = ts.pred[index]
    view, matrix = face_crop(ctx, index, size)
    return draw_on_crops([view], [matrix], landmarks=None if pred is None else [pred],
                         ground_truth=[ts.samples[index].landmarks], labels=labels)[0]


def describe_face(ctx: AppContext, index: int) -> str:
    """Markdown: face index, image, attributes, and NME with its rank."""
    ts = require_testset(ctx)
    sample = ts.samples[index]
    attrs = [name for name, on in zip(ATTRIBUTES, ts.flags[index]) if on] or ["none"]
    text = f"**Face {index}** · {sample.image}\n\nAttributes: {', '.join(attrs)}"
    if ts.kind == "annotate":
        text = (f"**Face {index}** · {sample.image} · {ts.split_of(index)} split\n\n"
                f"Annotated by: **{ts.sources[index]}** · detector score {ts.scores[index]:.3f} · "
                f"flip error {ts.flip_errors[index]:.2f} % of the inter-ocular distance")
    if ts.nme is not None:
        rank, total = ts.rank(float(ts.nme[index]))
        text += f"\n\nNME **{100 * ts.nme[index]:.2f} %** · rank {rank} of {total} (1 = worst)"
    return text


def selected_row(evt: gr.SelectData, rows: int, what: str) -> int:
    """The row index of a gallery or table click, checked against ``rows`` (``what`` names the list)."""
    if evt is None or evt.index is None:
        raise gr.Error(f"Select a face in the {what}.", print_exception=False)
    row = int(evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index)
    if not 0 <= row < rows:
        raise gr.Error(f"Select a face in the {what}.", print_exception=False)
    return row
