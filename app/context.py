"""What every tab's callbacks share: the model (or the detector-only fallback), the WFLW test set,
the review database and a folder for files offered for download. Built once in ``app.ui.build_demo``.

With a model, one ``model.engine.InferenceEngine`` runs every tab's network forwards (see
``app.serving`` for who gets which priority class and slot); the tabs reach it through the
predictors below, each a ``Predictor`` over the same loaded model whose runner is the engine:

- ``ctx.predictor``: uploads and the API (stills class, the predictor's flip setting);
- ``ctx.stream_predictor(slot)``: one webcam session (live class, latest-wins ``slot``, no flip);
- ``ctx.live_predictor``: video jobs (live class, no slot, no flip);
- ``ctx.batch_predictor``: the WFLW browser's "Compute predictions" (batch class).

The download folder is named ``landmark-studio-<pid>-*`` in the temp directory; ``close()`` (also
run at interpreter exit) removes it and stops the engine, and each new context removes the
folders of processes that are no longer alive (a server that was killed). ``python -m app`` puts
Gradio's upload cache inside it (``gradio_temp_dir``), so the same clean-up covers the uploads.
"""
from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from app import serving
from model.detector import FaceDetector
from model.engine import InferenceEngine
from model.io import process_alive
from model.pipeline import Predictor

OUTPUT_PREFIX = "landmark-studio-"
# Gradio's upload cache, a sub-folder of the download folder (``gradio_temp_dir``).
GRADIO_CACHE = "gradio"
_OUTPUT_NAME = re.compile(rf"^{OUTPUT_PREFIX}(\d+)-")


def remove_stale_output_dirs(parent: str | os.PathLike | None = None) -> list[Path]:
    """Remove ``landmark-studio-<pid>-*`` folders in ``parent`` (default: the temp directory) whose
    process is gone; returns the folders removed."""
    removed = []
    for path in Path(parent or tempfile.gettempdir()).glob(f"{OUTPUT_PREFIX}*"):
        match = _OUTPUT_NAME.match(path.name)
        if match and path.is_dir() and int(match.group(1)) != os.getpid() and not process_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


# The folder ``gradio_temp_dir`` made before the app's context existed, until a context takes it.
_reserved: list[Path] = []


def new_output_dir() -> Path:
    """A fresh ``landmark-studio-<pid>-*`` download folder, after removing stale ones (or the one
    ``gradio_temp_dir`` made for this process, the first time)."""
    if _reserved:
        return _reserved.pop()
    remove_stale_output_dirs()
    return Path(tempfile.mkdtemp(prefix=f"{OUTPUT_PREFIX}{os.getpid()}-"))


def gradio_temp_dir() -> Path:
    """Gradio's upload cache (``GRADIO_TEMP_DIR``, to be set before gradio is imported) inside this
    process's own ``landmark-studio-<pid>-*`` folder: the next ``AppContext`` takes that folder as
    its download folder, so uploads go with it at exit (or at the next start after a kill) instead
    of piling up in ``$TMPDIR/gradio``. Removed at exit even if no context takes it."""
    folder = new_output_dir()
    atexit.register(shutil.rmtree, folder, True)
    _reserved.append(folder)
    cache = folder / GRADIO_CACHE
    cache.mkdir()
    return cache


@dataclass
class AppContext:
    """Shared state of one running app.

    Attributes:
        predictor: the 98-point model for uploads and the API, or ``None`` when no weights are
            available. Given as a plain ``Predictor``; on construction it is replaced by a view
            whose runner is the app's inference engine (its flip setting is kept).
        detector: the face detector (the predictor's own when there is one).
        banner: Markdown shown on top of the page when something is missing (``None``: all fine).
        testset: the WFLW test set (``app.wflw_data.WFLWTestSet``) or ``None`` without ``--wflw-root``.
        wflw_message: why there is no test set and how to get one.
        store: the review database (``app.review_store.ReviewStore``) or ``None``.
        output_dir: where downloads (JSON, CSV, annotation files) are written; served by the app.
            ``None`` (default): a new ``landmark-studio-<pid>-*`` folder, removed by ``close()``; a
            folder given is left in place.
        export_dir: where review exports go (``python -m app --export-dir``); ``None``: ``exports/``
            inside the dataset's ROOT (``app.review.export_root``). Exports are never removed.
        engine: the inference engine (``None`` without a model); stopped by ``close()``.
    """

    predictor: Predictor | None
    detector: FaceDetector
    banner: str | None = None
    testset: object | None = None
    wflw_message: str = ""
    store: object | None = None
    output_dir: Path | None = None
    export_dir: Path | None = None
    engine: InferenceEngine | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._model = self.predictor  # the predictor as given: its own backend runs inside the engine
        if self._model is not None:
            self.engine = serving.start_engine(self._model)
            self.predictor = serving.stills_view(self._model, self.engine)
        self._owns_output_dir = self.output_dir is None
        self.output_dir = new_output_dir() if self.output_dir is None else Path(self.output_dir)
        self._closed = False
        atexit.register(self.close)

    def stream_predictor(self, slot: str) -> Predictor | None:
        """One webcam session's predictor: live class, latest-wins under ``slot``, no flip."""
        return None if self._model is None else serving.live_view(self._model, self.engine, slot)

    @property
    def live_predictor(self) -> Predictor | None:
        """Video jobs: live class, every frame runs (no slot), no flip."""
        return None if self._model is None else serving.live_view(self._model, self.engine)

    @property
    def batch_predictor(self) -> Predictor | None:
        """The WFLW browser's "Compute predictions": batch class, the predictor's flip setting."""
        return None if self._model is None else serving.batch_view(self._model, self.engine)

    def output_file(self, name: str) -> Path:
        """A fresh path for a download, in its own sub-folder so that concurrent users never clash."""
        return Path(tempfile.mkdtemp(dir=self.output_dir)) / name

    def close(self) -> None:
        """Stop the engine and remove the download folder (idempotent; also run at exit)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        if self.engine is not None:
            self.engine.stop()
        if self._owns_output_dir:
            shutil.rmtree(self.output_dir, ignore_errors=True)
