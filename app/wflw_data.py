"""The faces the browser and review tabs hold, with predictions, per-face NME and order.

A WFLW root gives its test split; a dataset of your own photos (``python -m model.annotate``) gives
every face, test split first, then train: split "all". UI state only. Reading a split is
``training.evaluate.load_split``; the ``predictions.json`` schema (one writer, one reader) is
``training.evaluate``; NME is ``training.metrics``.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from model.formats.coco import read_coco
from model.formats.dataset import DatasetTree
from model.layout import ATTRIBUTES, NUM_LANDMARKS
from training import metrics
from training.evaluate import EVAL_SPLITS, load_split, read_predictions, read_predictions_meta
from training.prepare import ANNOTATIONS_URL, IMAGES_GDRIVE_ID
from model.formats.wflw import Sample, WFLWTree, find_wflw_root, load_wflw_txt

# What kind of dataset a root holds: WFLW itself (human ground truth, test split), or one written by
# ``python -m model.annotate`` (ROOT/annotations.json beside the lists: model points, some reviewed).
KINDS = ("wflw", "annotate")
# How the faces of an annotate dataset can be ranked when there is no human ground truth to score.
RANKINGS = {"flip error": "flip error, least consistent first", "detector score": "detector score, lowest first"}
# Box match between a WFLW list line and a COCO annotation, pixels (both are written to 0.01 px).
_BOX_TOLERANCE = 0.05

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
    """The faces of one split of a dataset and, once known, their predictions.

    Attributes:
        tree: the standard tree.
        samples: test faces in annotation-file order.
        flags: (N, 6) bool subset membership in ``ATTRIBUTES`` order.
        pred: (N, 98, 2) float32 predicted points (image pixels) or ``None`` until known.
        nme: (N,) float64 per-face NME fractions or ``None``.
        source: where the predictions came from (a file name).
        meta: the predictions' provenance (``training.evaluate.prediction_meta``), ``{}`` if unknown.
        cancel: set to stop a running computation of predictions.
        kind: "wflw" or "annotate" (``KINDS``).
        num_test: the first ``num_test`` faces are the test split (all of them for WFLW; an annotate
            dataset holds its test faces first, then its train faces: ``training.evaluate``'s split "all").
        sources: (N,) "model" / "human" per face (annotate datasets; all "human" for WFLW).
        scores: (N,) float64 detector scores (NaN where unknown).
        flip_errors: (N,) float64 flip errors, % of the inter-ocular distance (NaN where unknown).
    """

    tree: WFLWTree
    samples: list[Sample]
    flags: np.ndarray
    pred: np.ndarray | None = None
    nme: np.ndarray | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    kind: str = "wflw"
    num_test: int | None = None
    sources: list[str] | None = None
    scores: np.ndarray | None = None
    flip_errors: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.samples)
        self.num_test = n if self.num_test is None else int(self.num_test)
        self.sources = list(self.sources) if self.sources is not None else ["human"] * n
        self.scores = np.full(n, np.nan) if self.scores is None else np.asarray(self.scores, dtype=np.float64)
        self.flip_errors = (np.full(n, np.nan) if self.flip_errors is None
                            else np.asarray(self.flip_errors, dtype=np.float64))

    @classmethod
    def load(cls, root: str | os.PathLike) -> WFLWTestSet:
        """The test split of a WFLW root (``model.formats.wflw.load_test_split``), or every face of a
        dataset written by ``python -m model.annotate`` (``load_annotated``)."""
        tree = find_wflw_root(root)
        if DatasetTree(tree.root).is_own_dataset():
            return cls.load_annotated(tree)
        samples, flags = load_split(tree, "test")
        return cls(tree, samples, flags)

    @classmethod
    def load_annotated(cls, tree: WFLWTree) -> WFLWTestSet:
        """Test then train faces of an annotate dataset, each with the ``source``, detector
        ``score`` and ``flip_error`` of its ``annotations.json`` entry (matched by image and box)."""
        coco = DatasetTree(tree.root).coco
        samples, flags = load_split(tree, "all")  # test faces first, then train
        num_test = len(load_wflw_txt(tree.annotations("test")))
        records, _ = read_coco(coco)
        faces = {}
        for record in records:
            faces.setdefault(str(record["image"]), []).extend(record["faces"])
        sources, scores, flips = [], [], []
        for sample in samples:
            match = [f for f in faces.get(sample.image, [])
                     if np.allclose(f["box"], sample.box, atol=_BOX_TOLERANCE)]
            if not match:
                raise ValueError(f"{coco}: no face of {sample.image} with box "
                                 f"{np.round(sample.box, 2).tolist()} (the WFLW lists and the COCO file disagree)")
            sources.append(match[0].get("source", "model"))
            scores.append(match[0]["score"])
            flips.append(match[0].get("flip_error", np.nan))
        return cls(tree, samples, flags, kind="annotate", num_test=num_test,
                   sources=sources, scores=scores, flip_errors=flips)

    @property
    def split(self) -> str:
        """The split the set holds (``training.evaluate.EVAL_SPLITS``): "test" for WFLW, "all" for
        an annotate dataset. Predictions computed or loaded here are for it."""
        return "all" if self.kind == "annotate" else "test"

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits whose faces the set holds: ("test",) for WFLW, all three for an annotate dataset."""
        return EVAL_SPLITS if self.kind == "annotate" else ("test",)

    def split_indices(self, split: str) -> np.ndarray:
        """Indices of the faces of ``split`` ("test", "train" or "all"), in ``load_split`` order.

        Raises ``ValueError`` for a split the set does not hold (WFLW's train faces are not loaded).
        """
        if split not in self.splits:
            held = "only the test split of WFLW" if self.kind == "wflw" else f"the splits {', '.join(self.splits)}"
            raise ValueError(f"split {split!r} is not available: the browser holds {held}")
        start, stop = {"test": (0, self.num_test), "train": (self.num_test, len(self)), "all": (0, len(self))}[split]
        return np.arange(start, stop)

    @property
    def test_samples(self) -> list[Sample]:
        """The faces of the test split (those ``training.evaluate`` predicts by default)."""
        return self.samples[: self.num_test]

    def split_of(self, index: int) -> str:
        """ "test" or "train": the split face ``index`` belongs to."""
        return "test" if index < self.num_test else "train"

    def rank_by(self, ranking: str) -> np.ndarray:
        """Face indices without ground truth to score: "flip error" (largest first) or "detector
        score" (lowest first); faces without the number last (``RANKINGS``)."""
        if ranking not in RANKINGS:
            raise ValueError(f"ranking must be one of {tuple(RANKINGS)}, got {ranking!r}")
        key = -self.flip_errors if ranking == "flip error" else self.scores.copy()
        key = np.where(np.isnan(key), np.inf, key)
        return np.argsort(key, kind="stable")

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
        """Read a ``predictions.json`` of ``training.evaluate`` made for the split the set holds
        (``split``); a file made for another split is refused, naming both."""
        self.set_predictions(read_predictions(path, self.samples, self.split), Path(path).name,
                             read_predictions_meta(path))

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
