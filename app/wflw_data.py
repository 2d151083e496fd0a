"""The WFLW test set the browser and review tabs show: annotations, predictions and per-face NME.

Annotations come from ``training.wflw`` (the raw test list of a standard WFLW root), predictions
from the ``predictions.json`` that ``training.evaluate`` writes or are computed here with the
loaded ``Predictor`` on the evaluation crops; NME comes from ``training.metrics``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.image import read_image
from model.layout import ATTRIBUTES, NUM_LANDMARKS
from training import metrics
from training.wflw import (Sample, WFLWTree, attribute_matrix, crop_box, find_wflw_root, load_wflw_txt, read_json,
                           resolve_image, subset_flags)

HOW_TO_GET_WFLW = (
    "Start the app with `--wflw-root ROOT`, where ROOT holds the standard WFLW tree: "
    "`WFLW_images/` (from `WFLW_images.tar.gz`, Google Drive file id `1hzBd48JIdWTJSsATBEB_eFVvPL1bx6UC`, "
    "e.g. `gdown 1hzBd48JIdWTJSsATBEB_eFVvPL1bx6UC`) and `WFLW_annotations/` (from "
    "https://wywu.github.io/projects/LAB/support/WFLW_annotations.tar.gz); see "
    "wywu.github.io/projects/LAB/WFLW.html (research use). Add `--predictions predictions.json` "
    "from `python -m training.evaluate`, or compute them in the app from `--weights`. "
    "For a quick look without the download: `python -m training.synthetic ROOT --num-train 1 --num-test 50`."
)

# Predicted points are looked up under the first of these keys that a record has.
_PRED_KEYS = ("pred", "prediction", "predicted", "pred_landmarks", "landmarks")
_GT_KEYS = ("gt", "ground_truth", "gt_landmarks")


@dataclass
class WFLWTestSet:
    """The test faces of a WFLW root and, once known, their predictions.

    Attributes:
        tree: the standard tree.
        samples: test faces in annotation-file order.
        flags: (N, 6) bool subset membership in ``ATTRIBUTES`` order.
        pred: (N, 98, 2) float32 predicted points (image pixels) or ``None`` until known.
        nme: (N,) float64 per-face NME fractions or ``None``.
        source: where the predictions came from (file name or "computed").
    """

    tree: WFLWTree
    samples: list[Sample]
    flags: np.ndarray
    pred: np.ndarray | None = None
    nme: np.ndarray | None = None
    source: str = ""
    _by_name: dict[str, list[int]] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, root: str | os.PathLike) -> WFLWTestSet:
        """Read the test list (and the subset lists when it has no flags) of a WFLW root."""
        tree = find_wflw_root(root)
        samples = load_wflw_txt(tree.annotations("test"))
        if not samples:
            raise ValueError(f"{tree.annotations('test')}: no test faces")
        if all(s.attributes is not None for s in samples):
            flags = attribute_matrix(samples)
        else:
            lists = {a: load_wflw_txt(tree.subset_list(a)) for a in ATTRIBUTES if tree.subset_list(a).is_file()}
            flags = subset_flags(samples, lists)
        by_name: dict[str, list[int]] = {}
        for i, s in enumerate(samples):
            by_name.setdefault(Path(s.image).name, []).append(i)
        return cls(tree, samples, flags, _by_name=by_name)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def gt(self) -> np.ndarray:
        return np.stack([s.landmarks for s in self.samples]).astype(np.float32)

    def image(self, index: int) -> np.ndarray:
        """The RGB image of face ``index``."""
        sample = self.samples[index]
        return read_image(resolve_image(self.tree.images, sample.image), name=sample.image)

    def faces_of_image(self, file_name: str) -> list[int]:
        """Indices of the test faces whose image has this file name (any folder)."""
        return list(self._by_name.get(Path(file_name).name, []))

    def set_predictions(self, pred: np.ndarray, source: str) -> None:
        pred = np.asarray(pred, dtype=np.float32)
        if pred.shape != (len(self), NUM_LANDMARKS, 2):
            raise ValueError(f"predictions must have shape ({len(self)}, {NUM_LANDMARKS}, 2), got {pred.shape}")
        self.pred = pred
        self.nme = metrics.nme(pred, self.gt)
        self.source = source

    def load_predictions(self, path: str | os.PathLike) -> None:
        """Read ``predictions.json`` (from ``training.evaluate``) and match it to the test faces.

        Records are matched by their ``index`` into the test list when present, else by order;
        a record's ground truth, when it has one, must agree with the loaded annotations.
        """
        path = Path(path)
        data = read_json(path, "predictions file")
        records = data
        if isinstance(data, dict):
            records = next((data[k] for k in ("faces", "predictions", "images", "records") if k in data), None)
        if not isinstance(records, list):
            raise ValueError(f"{path.name}: expected a list of per-face records (or an object with 'faces')")
        if len(records) != len(self):
            raise ValueError(f"{path.name}: {len(records)} records, but the test list has {len(self)} faces")
        pred = np.full((len(self), NUM_LANDMARKS, 2), np.nan, dtype=np.float32)
        for order, record in enumerate(records):
            index = int(record.get("index", order))
            if not 0 <= index < len(self):
                raise ValueError(f"{path.name} record {order}: index {index} outside the test list (0..{len(self) - 1})")
            key = next((k for k in _PRED_KEYS if k in record), None)
            if key is None:
                raise ValueError(f"{path.name} record {order}: no predicted points (looked for {_PRED_KEYS})")
            pred[index] = np.asarray(record[key], dtype=np.float32).reshape(NUM_LANDMARKS, 2)
            gt_key = next((k for k in _GT_KEYS if k in record), None)
            if gt_key is not None and not np.allclose(np.asarray(record[gt_key], dtype=np.float32).reshape(-1, 2),
                                                      self.samples[index].landmarks, atol=0.01):
                raise ValueError(f"{path.name} record {order}: its ground truth differs from "
                                 f"{self.samples[index].image} in the loaded test list")
        if np.isnan(pred).any():
            raise ValueError(f"{path.name}: some test faces have no prediction")
        self.set_predictions(pred, path.name)

    def compute_predictions(self, predictor, box_mode: str = "landmarks", progress=None) -> None:
        """Run ``predictor`` on every test face's evaluation crop (one batch per image).

        ``progress`` wraps an iterable (``tqdm``-like, e.g. Gradio's ``Progress().tqdm``).
        """
        groups: dict[str, list[int]] = {}
        for i, s in enumerate(self.samples):
            groups.setdefault(s.image, []).append(i)
        items = list(groups.items())
        if progress is not None:
            items = progress(items, desc="Predicting WFLW test faces", unit="image")
        pred = np.empty((len(self), NUM_LANDMARKS, 2), dtype=np.float32)
        for image_path, indices in items:
            image = read_image(resolve_image(self.tree.images, image_path), name=image_path)
            boxes = np.stack([crop_box(self.samples[i], box_mode) for i in indices])
            pred[indices] = predictor.predict_boxes(image, boxes)
        self.set_predictions(pred, "computed")

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
