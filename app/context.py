"""What every tab's callbacks share: the model (or the detector-only fallback), the WFLW test set,
the review database and a folder for files offered for download. Built once in ``app.ui.build_demo``.

The predictor is wrapped in one ``model.engine.InferenceEngine`` here: every tab's network forwards
go through its worker thread, which batches concurrent requests, so callers never hold the model
for longer than their own forward."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from model.detector import FaceDetector
from model.engine import EnginePredictor
from model.pipeline import Predictor


@dataclass
class AppContext:
    """Shared state of one running app.

    Attributes:
        predictor: the 98-point model, or ``None`` when no weights are available. Wrapped in an
            ``EnginePredictor`` on construction (its flip setting is kept: stills use flip test).
        detector: the face detector (the predictor's own when there is one).
        banner: Markdown shown on top of the page when something is missing (``None``: all fine).
        testset: the WFLW test set (``app.wflw_data.WFLWTestSet``) or ``None`` without ``--wflw-root``.
        wflw_message: why there is no test set and how to get one.
        store: the review database (``app.review_store.ReviewStore``) or ``None``.
        output_dir: where downloads (JSON, CSV, annotation files) are written; served by the app.
    """

    predictor: Predictor | None
    detector: FaceDetector
    banner: str | None = None
    testset: object | None = None
    wflw_message: str = ""
    store: object | None = None
    output_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="landmark-studio-")))

    def __post_init__(self) -> None:
        if self.predictor is not None:
            self.predictor = EnginePredictor.wrap(self.predictor)

    @property
    def live_predictor(self) -> EnginePredictor | None:
        """The same engine without test-time flip and with background priority (uploads go first):
        the webcam and video paths."""
        return None if self.predictor is None else self.predictor.live()

    def output_file(self, name: str) -> Path:
        """A fresh path for a download, in its own sub-folder so that concurrent users never clash."""
        return Path(tempfile.mkdtemp(dir=self.output_dir)) / name
