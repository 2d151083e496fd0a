"""The layout of a dataset of your own photos: a WFLW tree plus COCO keypoints files.

``model.annotate`` writes it, the review export (``app.own_dataset``) writes a reviewed copy of it,
and the WFLW browser (``app.wflw_data``) reads it. Beside the standard WFLW tree (``WFLW_images/``
and the two raw lists) the root holds:

- ``annotations.json``: the faces as COCO keypoints (``model.formats.coco``), every photo listed;
- ``annotations_68.json``: the same in the 300W / iBUG 68-point subset (when asked for);
- ``annotate_report.json``: counts, photos without a face, unreadable files;
- ``.annotate/``: one result file per photo, which makes ``model.annotate`` resumable.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model.formats.wflw import WFLWTree

COCO_FILE = "annotations.json"
COCO_68_FILE = "annotations_68.json"
REPORT_FILE = "annotate_report.json"
CACHE_DIR = ".annotate"


@dataclass(frozen=True)
class DatasetTree(WFLWTree):
    """Paths of an own-photo dataset under ``root`` (nothing is checked on construction)."""

    @property
    def coco(self) -> Path:
        return self.root / COCO_FILE

    @property
    def coco_68(self) -> Path:
        return self.root / COCO_68_FILE

    @property
    def report(self) -> Path:
        return self.root / REPORT_FILE

    @property
    def cache(self) -> Path:
        return self.root / CACHE_DIR

    def is_own_dataset(self) -> bool:
        """Whether ``root`` holds a COCO file beside its WFLW lists (written by ``model.annotate``)."""
        return self.coco.is_file()
