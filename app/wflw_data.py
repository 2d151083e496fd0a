"""The WFLW test set as the browser and review tabs hold it: faces, predictions, per-face NME, order.

UI state only. Reading the test split is ``training.wflw.load_test_split``; the ``predictions.json``
schema (one writer, one reader) is ``training.evaluate``; NME is ``training.metrics``.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from model.layout import ATTRIBUTES, NUM_LANDMARKS
from training import metrics
from training.evaluate import read_predictions, read_predictions_meta
from training.prepare import ANNOTATIONS_URL, IMAGES_GDRIVE_ID
from training.wflw import Sample, WFLWTree, find_wflw_root, load_test_split

HOW_TO_GET_WFLW = (
    "Start the app with --wflw-root ROOT, where ROOT holds the standard WFLW tree: "
    f"WFLW_images/ (from WFLW_images.tar.gz, Google Drive file id {IMAGES_GDRIVE_ID}, "
    f"e.g. gdown {IMAGES_GDRIVE_ID}) and WFLW_annotations/ (from {ANNOTATIONS_URL}); see "
    "wywu.github.io/projects/LAB/WFLW.html (research use). Add --predictions predictions.json "
    "from python -m training.evaluate, or compute them in the app from --weights. "
    "For a quick look without the download: python -m training.synthetic ROOT --num-train 1 --num-test 50."
)


@dataclass
class WFLWTestSet:
    """The test faces of a WFLW root and, once known, their predictions.

    Attributes:
        tree: the standard tree.
        samples: test faces in annotation-file order.
        flags: (N, 6) bool subset membership in ``ATTRIBUTES`` order.
        pred: (N, 98, 2) float32 predicted points (image pixels) or ``None`` until known.
        nme: (N,) float64 per-face NME fractions or ``None``.
        source: where the predictions came from (a file name).
        meta: the predictions' provenance (``training.evaluate.prediction_meta``), ``{}`` if unknown.
        cancel: set to stop a running computation of predictions.
    """

    tree: WFLWTree
    samples: list[Sample]
    flags: np.ndarray
    pred: np.ndarray | None = None
    nme: np.ndarray | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    @classmethod
    def load(cls, root: str | os.PathLike) -> WFLWTestSet:
        """The test split of a WFLW root (``training.wflw.load_test_split``)."""
        tree = find_wflw_root(root)
        samples, flags = load_test_split(tree)
        return cls(tree, samples, flags)

    def __len__(self) -> int:
        return len(self.samples)

    @cached_property
    def gt(self) -> np.ndarray:
        """(N, 98, 2) float32 annotated points."""
        return np.stack([s.landmarks for s in self.samples]).astype(np.float32)

    @cached_property
    def _by_name(self) -> dict[str, list[int]]:
        by_name: dict[str, list[int]] = {}
        for i, s in enumerate(self.samples):
            by_name.setdefault(Path(s.image).name, []).append(i)
        return by_name

    def faces_of_image(self, file_name: str) -> list[int]:
        """Indices of the test faces whose image has this file name (any folder)."""
        return list(self._by_name.get(Path(file_name).name, []))

    def set_predictions(self, pred: np.ndarray, source: str, meta: dict | None = None) -> None:
        """Take (N, 98, 2) predicted points (image pixels) and score them (per-face NME)."""
        pred = np.asarray(pred, dtype=np.float32)
        if pred.shape != (len(self), NUM_LANDMARKS, 2):
            raise ValueError(f"predictions must have shape ({len(self)}, {NUM_LANDMARKS}, 2), got {pred.shape}")
        self.pred = pred
        self.nme = metrics.nme(pred, self.gt)
        self.source = source
        self.meta = dict(meta or {})

    def load_predictions(self, path: str | os.PathLike) -> None:
        """Read a ``predictions.json`` of ``training.evaluate`` made for this test list."""
        self.set_predictions(read_predictions(path, self.samples), Path(path).name, read_predictions_meta(path))

    def order(self, subset: str = "all", nme_range: tuple[float, float] = (0.0, float("inf"))) -> np.ndarray:
        """Face indices worst NME first, restricted to a subset and an NME range (fractions)."""
        if self.nme is None:
            raise ValueError("no predictions yet: pass --predictions or compute them")
        mask = (self.nme >= nme_range[0]) & (self.nme <= nme_range[1])
        if subset != "all":
            if subset not in ATTRIBUTES:
                raise ValueError(f"subset must be 'all' or one of {ATTRIBUTES}, got {subset!r}")
            mask &= self.flags[:, ATTRIBUTES.index(subset)]
        idx = np.flatnonzero(mask)
        return idx[np.argsort(-self.nme[idx], kind="stable")]

    def rank(self, value: float) -> tuple[int, int]:
        """(rank, total): 1 + the number of test faces with a larger NME than ``value``."""
        if self.nme is None:
            raise ValueError("no predictions yet")
        return int(np.sum(self.nme > value)) + 1, len(self)
