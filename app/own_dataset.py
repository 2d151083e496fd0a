"""A reviewed dataset of ``python -m model.annotate`` written back out, in both of its layouts.

The export is a new dataset ROOT that every WFLW and COCO reader takes, as ``model.annotate`` wrote
the original: the WFLW lists (train and test, split as loaded), ``annotations.json`` (COCO keypoints,
``model.formats.coco.write_coco``) and ``WFLW_images`` (hard links to the photos, copies where linking
fails), so that it is self-contained and ``training.train`` / ``training.evaluate`` read it. The stored
point corrections are applied; a face whose latest verdict is "not a face" is left out; a face
that was corrected, or given the verdict "fixed", or was already human-made, gets
``source: "human"``, every other face keeps ``source: "model"``.

Every review export goes to a new folder of its own (``new_export_folder``), by default
``ROOT/exports/<UTC time>/`` beside the dataset, and is never overwritten or removed by the app;
``zip_dataset`` packs an exported dataset, photos included, so that the zip is a dataset too.
"""
from __future__ import annotations

import math
import os
import shutil
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path

from app.review_store import FIXED, NOT_A_FACE, ReviewStore, face_key, iso_time
from model.formats.coco import read_coco, write_coco
from model.formats.dataset import DatasetTree
from model.formats.wflw import resolve_image, write_wflw_txt
from model.io import atomic_write

# Default home of the review exports: this folder inside the loaded dataset's ROOT.
EXPORTS_DIR = "exports"
# Files a zip stores as they are (already compressed); everything else is deflated.
_STORED_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".zip"}


def face_sources(ts, store: ReviewStore) -> tuple[list[str], list[str | None]]:
    """(source per face after review, latest verdict per face or ``None``), in the loaded order."""
    verdicts, corrected = store.latest_verdicts(), store.corrected_keys()
    sources, latest = [], []
    for index, sample in enumerate(ts.samples):
        key = face_key(index, sample.image)
        verdict = verdicts.get(key)
        human = ts.sources[index] == "human" or key in corrected or verdict == FIXED
        sources.append("human" if human else "model")
        latest.append(verdict)
    return sources, latest


def _records(ts, store: ReviewStore, sources: list[str], keep: list[bool]) -> tuple[list[dict], dict]:
    """The original COCO records (images in their order, faces replaced by the kept, corrected ones)."""
    original, info = read_coco(DatasetTree(ts.tree.root).coco)
    samples = store.corrected_samples(ts.samples)
    faces: dict[str, list[dict]] = {}
    for index, sample in enumerate(samples):
        if not keep[index]:
            continue
        flip = float(ts.flip_errors[index])
        faces.setdefault(sample.image, []).append(
            {"box": [float(v) for v in sample.box], "score": float(ts.scores[index]),
             "landmarks": sample.landmarks.tolist(), "flip_error": None if math.isnan(flip) else flip,
             "source": sources[index]})
    records = [{**r, "faces": faces.get(str(r["image"]), [])} for r in original]
    return records, info


def _place_image(ts, name: str, images_dir: Path) -> None:
    """Put photo ``name`` into the export's own ``images_dir``: a hard link to the file (the links of
    ``model.annotate``'s tree followed), a copy where linking fails (another file system)."""
    source = resolve_image(ts.tree.images, name).resolve()
    target = images_dir / name
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def export_annotated(ts, store: ReviewStore, out: str | os.PathLike, exported_by: str | None = None) -> dict:
    """Write the reviewed dataset to the new folder ``out`` (see the module docstring); ``exported_by``
    (the account or reviewer who asked) is kept in ``annotations.json``'s ``info.review``.

    Returns:
        ``{"root": Path, "faces": kept, "human": human-made among them, "left_out": "not a face" count}``.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"export folder is not empty: {out}")
    sources, verdicts = face_sources(ts, store)
    keep = [v != NOT_A_FACE for v in verdicts]
    records, info = _records(ts, store, sources, keep)
    tree = DatasetTree(out)
    samples = store.corrected_samples(ts.samples)
    for split in ("test", "train"):
        write_wflw_txt(tree.annotations(split), [s for i, s in enumerate(samples)
                                                  if keep[i] and ts.split_of(i) == split])
    kept = [i for i in range(len(samples)) if keep[i]]
    human = sum(sources[i] == "human" for i in kept)
    info = {**info, "review": {"exported": iso_time(time.time()), "exported_by": exported_by,
                               "from": str(ts.tree.root), "faces": len(kept), "human": human,
                               "not_a_face": len(samples) - len(kept)}}
    info.pop("keypoint_scheme", None)
    write_coco(tree.coco, records, info=info)
    for record in records:
        _place_image(ts, str(record["image"]), tree.images)
    return {"root": out, "faces": len(kept), "human": human, "left_out": len(samples) - len(kept)}


def new_export_folder(parent: str | os.PathLike, now: float | None = None) -> Path:
    """Create and return ``parent/<UTC time>`` (e.g. ``2026-11-24T14-18-53Z``), with ``-2``, ``-3``...
    added when that name is taken: an export never lands in an earlier one's folder."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromtimestamp(time.time() if now is None else now, tz=timezone.utc).strftime("%Y-%m-%dT%H-%M-%SZ")
    for attempt in range(1, 1000):
        folder = parent / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            folder.mkdir()  # atomic: two exports in the same second get different folders
            return folder
        except FileExistsError:
            continue
    raise FileExistsError(f"{parent}: 999 exports already carry the time {stamp}")


def zip_dataset(root: str | os.PathLike, zip_path: str | os.PathLike) -> Path:
    """Pack the dataset at ``root`` (lists, ``annotations.json`` and the photos of ``WFLW_images/``,
    read through their links) into ``zip_path``, every entry under a top folder named like ``root``:
    unzipped, it is a dataset ROOT that ``training.train --wflw-root`` reads. Written atomically."""
    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.is_file())

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w") as archive:
            for path in files:
                method = zipfile.ZIP_STORED if path.suffix.lower() in _STORED_SUFFIXES else zipfile.ZIP_DEFLATED
                archive.write(path, f"{root.name}/{path.relative_to(root).as_posix()}", compress_type=method)

    return atomic_write(zip_path, write)
