"""Pre-annotate your own photos with the model: a WFLW tree and a COCO keypoints file, resumable.

    python -m model.annotate PHOTOS... --out ROOT [--weights W] [--device D] [--batch-size N]
                             [--min-score S] [--min-size PX] [--val-fraction 0.1] [--seed 0] [--scheme 98|68]
    torchrun --nproc_per_node N -m model.annotate PHOTOS... --out ROOT ...

Files and folders (recursively: JPEG, PNG, WebP, BMP, PPM, TIFF, ...) are read, MTCNN finds the
faces, and the network runs on crops gathered from several images into fixed-size batches. ROOT
becomes a standard WFLW tree that everything reading WFLW reads:

- ``WFLW_images/<name>``: a link to each photo (a copy where links fail), ``<name>`` being the
  photo's path under the folder given (prefixed by that folder's name) or its file name;
- ``WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_{train,test}.txt``: one line
  per face (98 points, the MTCNN box as rectangle, six attribute flags 0), split by image:
  ``--val-fraction`` of the photos with faces (at least one, at most all but one) go to ``test``,
  chosen by ``--seed``;
- ``annotations.json``: the same faces as COCO keypoints (``model.formats.coco``) with ``score``,
  ``flip_error`` and ``source: "model"``; every photo is listed, with ``num_faces`` (0 for a photo in
  which no face was found); ``info.provenance`` names the checkpoint, its sha256, the flip test and
  the project version; ``--scheme 68`` also writes ``annotations_68.json`` (300W subset);
- ``annotate_report.json``: counts, the photos without a face, and every file that could not be
  read with the reason (also printed on stderr; the exit status is then 1).

Resuming: each photo's result is kept in ``ROOT/.annotate/<key>.json`` (written atomically; the key
is the sha256 of the photo's bytes and of every setting that changes results), so a rerun skips the
photos already done and a run killed at any moment leaves no half-written file. Every forward has
exactly ``--batch-size`` crops (padded), so a crop's result does not depend on which other crops
share its batch; with the same ``--threads`` (CPU), a resumed run, an unbroken run and a torchrun
run write byte-identical datasets.

Under torchrun every process takes every N-th photo (on its own GPU, or on CPU over gloo) and rank
0 merges the result files once all are done: ROOT must be on a file system every node sees.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch

from model.cli import add_face_filter_arguments, add_model_arguments, face_filter_from_args, number_arg, positive_int
from model.formats.coco import write_coco
from model.formats.dataset import DatasetTree
from model.formats.wflw import Sample, write_wflw_txt
from model.image import ImageError, find_images, read_image
from model.io import atomic_write, atomic_write_json, remove_stale_temporaries
from model.layout import ATTRIBUTES, NUM_LANDMARKS, NUM_LANDMARKS_68
from model.batching import prefetched
from model.geometry import box_matrices
from model.pipeline import Predictor
from model.record import Face, to_record
from model.selection import FaceFilter, select_faces
from model.weights import file_sha256

DEFAULT_BATCH_SIZE = 32      # crops per forward (twice that many images go through with flip test)
DEFAULT_MIN_SCORE = 0.9      # MTCNN's own last threshold is 0.7; below 0.9 most detections in crowds are not faces
DEFAULT_MIN_SIZE = 32        # px, shorter box side: smaller faces give landmarks too coarse to correct
DEFAULT_VAL_FRACTION = 0.1
RESULT_FORMAT = 1            # bump when the per-photo result changes meaning: old results are then ignored
_PREFETCH = 4                # photos hashed and decoded ahead of the detector, on threads
_DETECT_GROUP = 4            # photos per detector call (equal-sized ones share MTCNN's passes)
_PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def project_version() -> str:
    """The project's version from pyproject.toml ("unknown" when run outside the source tree)."""
    try:
        return str(tomllib.loads(_PYPROJECT.read_text(encoding="utf-8"))["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


# ----------------------------------------------------------------------------- photos and names


@dataclass(frozen=True)
class Photo:
    """One input photo: ``path`` as found, ``name`` its unique path under ``WFLW_images/``."""

    path: Path
    name: str


def _clean(part: str) -> str:
    # WFLW lines are split on whitespace: a name must hold none.
    return "_".join(part.split()) or "_"


def _unique(name: str, used: set[str]) -> str:
    """``name``, or "<stem>-2<suffix>", "-3", ... for its last part when already used."""
    if name not in used:
        return name
    folder, _, base = name.rpartition("/")
    stem, suffix = os.path.splitext(base)
    n = 2
    while (candidate := f"{folder + '/' if folder else ''}{stem}-{n}{suffix}") in used:
        n += 1
    return candidate


def collect_photos(paths) -> list[Photo]:
    """The photos named by ``paths`` (files and folders, in the order given), with unique names.

    A folder's photos (``model.image.find_images``: recursive, sorted) are named "<folder>/<path
    under it>", a file by its file name; whitespace becomes "_" and a clash gets "-2", "-3", ...
    before the suffix. A file reached twice is kept once. Missing paths stay in the list, so that
    reading them reports why.
    """
    photos, used, seen = [], set(), set()
    for given in map(Path, paths):
        top = _clean(given.resolve().name) if given.is_dir() else None
        for path in find_images([given]):
            real = os.path.realpath(path)
            if real in seen:
                continue
            seen.add(real)
            parts = [top, *path.relative_to(given).parts] if top else [path.name]
            name = _unique("/".join(_clean(p) for p in parts), used)
            used.add(name)
            photos.append(Photo(path, name))
    return photos


# ----------------------------------------------------------------------------- per-photo results


def result_settings(predictor: Predictor, weights_sha256: str, args: argparse.Namespace) -> dict:
    """Every setting that changes a photo's result (the result files' key is derived from it)."""
    settings = {"format": RESULT_FORMAT, "weights_sha256": weights_sha256, "flip_test": predictor.flip_test,
                "flip_convention": predictor.flip_convention, "input_size": predictor.input_size,
                "backend": predictor.backend_name, "device": predictor.device.type, "batch_size": args.batch_size,
                "min_score": args.min_score, "min_size": args.min_size, "max_faces": args.max_faces}
    if predictor.device.type == "cpu":  # CPU kernels sum in an order that depends on the thread count
        settings["threads"] = torch.get_num_threads()
    return settings


def _key(settings_digest: str, content_sha256: str) -> str:
    return hashlib.sha256(f"{settings_digest}/{content_sha256}".encode()).hexdigest()


def read_result(path: Path) -> dict | None:
    """A stored per-photo result (a ``model.record`` record), or ``None`` when absent or unusable."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        for entry in record["faces"]:
            Face.from_dict(entry)
        int(record["width"]), int(record["height"])
        return record
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass
class _Loaded:
    """What the reader threads hand to the detector: the result key, and the image when not done."""

    key: str | None = None
    image: np.ndarray | None = None
    error: str | None = None


def _load(photo: Photo, cache: Path, digest: str) -> _Loaded:
    try:
        key = _key(digest, file_sha256(photo.path))
    except OSError:
        try:  # read_image says why the file cannot be read (missing, a folder, permissions...)
            read_image(photo.path)
        except ImageError as exc:
            return _Loaded(error=str(exc))
        return _Loaded(error=f"{photo.path}: cannot be read")
    if read_result(cache / f"{key}.json") is not None:
        return _Loaded(key)
    try:
        return _Loaded(key, read_image(photo.path))
    except ImageError as exc:
        return _Loaded(key, error=str(exc))


# ----------------------------------------------------------------------------- batching across photos


@dataclass(frozen=True, eq=False)
class _Job:
    """One photo between detection and its result file (the batcher's key)."""

    photo: Photo
    key: str
    shape: tuple[int, int]
    boxes: np.ndarray       # (F, 4) xyxy pixels, reading order
    scores: np.ndarray      # (F,)
    warning: str | None


def _detected(predictor: Predictor, loaded: list[tuple[Photo, _Loaded]], face_filter: FaceFilter):
    """The batcher's items for photos to annotate, (job, image, crop matrices) each: their faces
    found by one ``FaceDetector.detect_many`` call (equal-sized photos share the pyramid passes)."""
    found = predictor.detector.detect_many([load.image for _, load in loaded])
    for (photo, load), detections in zip(loaded, found):
        selection = select_faces(detections, face_filter)
        keep = selection.indices
        job = _Job(photo, load.key, load.image.shape[:2], detections.boxes[keep], detections.scores[keep],
                   selection.limit_note())
        yield job, load.image, box_matrices(job.boxes, predictor.input_size)


def _write_result(cache: Path, job: _Job, points: np.ndarray, errors: np.ndarray | None) -> int:
    """Write one photo's result file (``model.record`` schema); returns its number of faces."""
    errors = [None] * len(points) if errors is None else errors
    faces = [Face(box, score, p, e) for box, score, p, e in zip(job.boxes, job.scores, points, errors)]
    atomic_write_json(cache / f"{job.key}.json", to_record(job.photo.name, job.shape, faces, warning=job.warning))
    return len(faces)


@dataclass
class ShardResult:
    """What one process did: result keys by photo name, unreadable files, and this run's counts."""

    keys: dict[str, str] = field(default_factory=dict)
    failed: list[dict] = field(default_factory=list)
    computed: int = 0
    faces: int = 0


def annotate_photos(photos: list[Photo], predictor: Predictor, cache: Path, digest: str,
                    args: argparse.Namespace, show_progress: bool = True) -> ShardResult:
    """Annotate ``photos`` into result files under ``cache`` (skipping those already there).

    Photos are hashed and decoded ahead on threads, MTCNN finds their faces, and the network runs
    on crops gathered across photos in forwards of exactly ``--batch-size`` crops (padded: see the
    module doc), through the predictor's one batched path."""
    from tqdm import tqdm

    result = ShardResult()
    bar = tqdm(total=len(photos), unit="img", desc="annotate", disable=not show_progress, dynamic_ncols=True)
    face_filter = face_filter_from_args(args)
    loaded = prefetched(lambda photo: _load(photo, cache, digest), photos, _PREFETCH)

    def items():
        group = []  # photos waiting for detection, decoded
        for photo, load in zip(photos, loaded):
            if load.error is not None:
                result.failed.append({"file": str(photo.path), "error": load.error})
            elif load.key is not None:
                result.keys[photo.name] = load.key
            if load.image is None:  # unreadable, or done by an earlier run
                bar.update()
                continue
            group.append((photo, load))
            if len(group) == _DETECT_GROUP:
                yield from _detected(predictor, group, face_filter)
                group = []
        yield from _detected(predictor, group, face_filter)

    with bar:
        try:
            for job, points, errors in predictor.batcher(args.batch_size, pad=True).run(items()):
                result.computed += 1
                result.faces += _write_result(cache, job, points, errors)
                bar.update()
                bar.set_postfix(faces=result.faces, refresh=False)
        finally:
            loaded.close()
    return result


# ----------------------------------------------------------------------------- the dataset


def _link(photo: Photo, images_dir: Path) -> None:
    """``WFLW_images/<name>`` -> the photo: a symlink, or a copy where links cannot be made."""
    target = images_dir / photo.name
    source = Path(os.path.abspath(photo.path))
    if target.is_symlink() and os.readlink(target) == str(source):
        return
    if not target.is_symlink() and target.is_file() and target.stat().st_size == source.stat().st_size:
        return  # copied by an earlier run
    try:
        atomic_write(target, lambda tmp: os.symlink(source, tmp))
    except OSError:
        atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))


def split_test(names: list[str], val_fraction: float, seed: int) -> set[str]:
    """The photos held out for ``test``: ``round(val_fraction * n)`` of ``names`` drawn with ``seed``,
    at least one and at most all but one when 0 < val_fraction < 1 and there are two or more."""
    n = len(names)
    count = round(val_fraction * n)
    if 0 < val_fraction < 1 and n >= 2:
        count = min(max(count, 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return {names[i] for i in order[:count]}


def write_dataset(root: Path, photos: list[Photo], keys: dict[str, str], failed: list[dict],
                  provenance: dict, args: argparse.Namespace) -> dict:
    """Merge the per-photo results into ROOT's WFLW tree, COCO file(s) and report; returns the report."""
    tree = DatasetTree(root)
    tree.images.mkdir(parents=True, exist_ok=True)
    records = []
    for photo in photos:
        if photo.name in keys:
            record = read_result(tree.cache / f"{keys[photo.name]}.json")
            if record is None:
                raise RuntimeError(f"{photo.path}: its result file {keys[photo.name]}.json is missing or broken")
            records.append({**record, "image": photo.name})
            _link(photo, tree.images)
    with_faces = [r["image"] for r in records if r["faces"]]
    test = split_test(with_faces, args.val_fraction, args.seed)
    no_flags = (False,) * len(ATTRIBUTES)
    for split in ("train", "test"):
        samples = [Sample(r["image"], np.asarray(f["landmarks"], np.float32), np.asarray(f["box"], np.float32),
                          no_flags) for r in records if (r["image"] in test) == (split == "test") for f in r["faces"]]
        write_wflw_txt(tree.annotations(split), samples)
    info = {"description": "faces pre-annotated by python -m model.annotate (source: model)",
            "provenance": provenance, "split": {"val_fraction": args.val_fraction, "seed": args.seed,
                                                "test_images": sorted(test)}}
    write_coco(tree.coco, records, info=info)
    if args.scheme == NUM_LANDMARKS_68:
        write_coco(tree.coco_68, records, scheme=NUM_LANDMARKS_68, info=info)
    report = {"photos": len(photos), "annotated": len(records), "faces": sum(len(r["faces"]) for r in records),
              "no_face": [r["image"] for r in records if not r["faces"]],
              "faces_left_out": {r["image"]: r["warning"] for r in records if "warning" in r},
              "unreadable": failed}
    atomic_write_json(tree.report, report, indent=1)
    return report


# ----------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class Dist:
    """Where this process stands under torchrun (rank 0 of 1 when run alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "Dist":
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))


def _device_for(requested: str, dist: Dist) -> str:
    """One GPU per local process under torchrun ("auto"/"cuda" -> "cuda:LOCAL_RANK"); else as asked."""
    if dist.world > 1 and requested in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{dist.local_rank % torch.cuda.device_count()}"
    return requested


def _clear_temporaries(root: Path) -> None:
    """Remove the temporary files a killed run left (``model.io.remove_stale_temporaries``)."""
    tree = DatasetTree(root)
    for folder in (tree.cache, root, tree.annotations("train").parent):
        if folder.is_dir():
            remove_stale_temporaries(folder)


def _gather(obj, dist: Dist) -> list:
    if dist.world == 1:
        return [obj]
    out = [None] * dist.world if dist.rank == 0 else None
    torch.distributed.gather_object(obj, out, dst=0)
    return out


def _broadcast(value, dist: Dist):
    if dist.world == 1:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def build_predictor(args: argparse.Namespace, dist: Dist) -> tuple[Predictor, Path]:
    """The predictor for this process and the checkpoint file it loaded (downloaded once if a URL)."""
    from model.weights import download, official_weights

    weights = args.weights
    if weights is None:
        weights = official_weights()
    elif str(weights).startswith(("http://", "https://")):
        weights = download(str(weights))
    predictor = Predictor(weights, device=_device_for(args.device, dist), flip_test=not args.no_flip,
                          max_faces=args.max_faces, backend=args.backend)
    return predictor, Path(weights)


def run(args: argparse.Namespace, dist: Dist) -> int:
    """Annotate this process's share of the photos; rank 0 merges. Returns the exit status."""
    started = time.perf_counter()
    root = Path(args.out)
    tree = DatasetTree(root)
    torch.set_num_threads(args.threads)
    photos = collect_photos(args.photos)
    predictor, weights = build_predictor(args, dist)
    weights_sha256 = file_sha256(weights)
    settings = result_settings(predictor, weights_sha256, args)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    if dist.rank == 0:
        tree.cache.mkdir(parents=True, exist_ok=True)
        _clear_temporaries(root)
        print(f"annotate: {len(photos)} photos -> {root} ({dist.world} process(es); settings {settings})",
              flush=True)
    if dist.world > 1:
        torch.distributed.barrier()
    shard = annotate_photos(photos[dist.rank::dist.world], predictor, tree.cache, digest, args,
                            show_progress=dist.rank == 0)
    shards = _gather(shard, dist)
    status = 0
    if dist.rank == 0:
        keys = {name: key for s in shards for name, key in s.keys.items()}
        failed = sorted((f for s in shards for f in s.failed), key=lambda f: f["file"])
        provenance = {"checkpoint": weights.name, "sha256": weights_sha256, "flip_test": predictor.flip_test,
                      "flip_convention": predictor.flip_convention, "input_size": predictor.input_size,
                      "detector": "MTCNN (facenet-pytorch)", "min_score": args.min_score,
                      "min_size": args.min_size, "max_faces": args.max_faces, "version": project_version()}
        report = write_dataset(root, photos, keys, failed, provenance, args)
        _summary(report, shards, time.perf_counter() - started)
        status = 1 if failed else 0
    status = _broadcast(status, dist)  # also holds every process until rank 0 has merged
    return status if dist.rank == 0 else 0  # torchrun then names rank 0 alone as failed


def _summary(report: dict, shards: list[ShardResult], seconds: float) -> None:
    computed = sum(s.computed for s in shards)
    faces = sum(s.faces for s in shards)
    print(f"annotate: {report['annotated']} photos, {report['faces']} faces, {len(report['no_face'])} without a "
          f"face, {len(report['unreadable'])} unreadable; this run annotated {computed} photos ({faces} faces) "
          f"in {seconds:.1f} s: {computed / seconds:.2f} images/s, {faces / seconds:.2f} faces/s", flush=True)
    for entry in report["unreadable"]:
        print(f"unreadable: {entry['error']}", file=sys.stderr)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m model.annotate", description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", nargs="+", type=Path, help="photo files and folders (searched recursively)")
    parser.add_argument("--out", type=Path, required=True, help="the dataset folder to write (WFLW tree + COCO)")
    parser.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE, metavar="N",
                        help=f"face crops per network forward, gathered across photos (default: {DEFAULT_BATCH_SIZE})")
    add_face_filter_arguments(parser, FaceFilter(DEFAULT_MIN_SCORE, DEFAULT_MIN_SIZE))
    parser.add_argument("--val-fraction", type=number_arg(0, 1), default=DEFAULT_VAL_FRACTION, metavar="F",
                        help=f"share of the photos with faces held out as the test split (default: "
                             f"{DEFAULT_VAL_FRACTION})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/test split (default: 0)")
    parser.add_argument("--scheme", type=int, choices=(NUM_LANDMARKS, NUM_LANDMARKS_68), default=NUM_LANDMARKS,
                        help="68 also writes annotations_68.json with the 300W subset (the WFLW lists keep 98)")
    parser.add_argument("--threads", type=positive_int, default=os.cpu_count() or 1, metavar="N",
                        help="torch CPU threads per process, the same in every process; CPU results are "
                             "bit-identical only between runs with the same value (default: all cores)")
    add_model_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dist = Dist.from_env()
    if dist.world > 1:
        # gloo carries only the small merge messages; a long timeout lets the fastest process wait for the slowest
        torch.distributed.init_process_group("gloo", timeout=timedelta(days=1))
    try:
        return run(args, dist)
    finally:
        if dist.world > 1:
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
