"""Lay out and check a WFLW root.

    python -m training.prepare --images WFLW_images.tar.gz --annotations WFLW_annotations.tar.gz --out ROOT

``open_wflw_root`` is the check ``training.train`` and ``training.evaluate`` make first: a folder that
is not a WFLW root fails in one line that says what is missing and where it comes from.

``--images`` / ``--annotations`` take the official archives or already extracted folders (linked,
not copied). Without ``--annotations``, ``--download-annotations`` fetches the archive from the WFLW
project page. The image archive lives on Google Drive / Baidu Pan and is never fetched here: the
exact manual step is printed. The check verifies 7,500 train and 2,500 test lines and that every
referenced image exists, and prints what is missing (exit status 1 when anything is).
"""
from __future__ import annotations

import argparse
import os
import sys
import tarfile
from pathlib import Path


from model.weights import download
from model.formats.wflw import (ANNOTATIONS_DIR, IMAGES_DIR, RAW_LISTS_DIR, SPLITS, WFLWTree, find_wflw_root, load_wflw_txt,
                                resolve_image)

# Where WFLW comes from (research use); the app imports these names rather than retyping them.
PROJECT_PAGE = "https://wywu.github.io/projects/LAB/WFLW.html"
ANNOTATIONS_URL = "https://wywu.github.io/projects/LAB/support/WFLW_annotations.tar.gz"
IMAGES_GDRIVE_ID = "1hzBd48JIdWTJSsATBEB_eFVvPL1bx6UC"  # WFLW_images.tar.gz on Google Drive
EXPECTED_FACES = {"train": 7500, "test": 2500}
SHOW_MISSING = 20  # missing images listed by name; the rest are counted


def manual_images_step(out: Path) -> str:
    """The instructions for the one file this script cannot fetch."""
    return (
        f"WFLW_images.tar.gz is on Google Drive (or Baidu Pan, see {PROJECT_PAGE}). "
        "Download it by hand, e.g.\n"
        "    pip install gdown\n"
        f"    gdown {IMAGES_GDRIVE_ID} -O WFLW_images.tar.gz\n"
        f"then run: python -m training.prepare --images WFLW_images.tar.gz --annotations ... --out {out}"
    )


def open_wflw_root(root: str | os.PathLike, flag: str = "--wflw-root") -> WFLWTree:
    """``model.formats.wflw.find_wflw_root``, failing with one line that names ``flag``, the folder,
    what is missing in it and where that comes from.

    Raises:
        FileNotFoundError: e.g. for an unpacked annotation archive, "--wflw-root data/wflw: not a
            WFLW root, missing WFLW_images/; WFLW_images/ comes from ... gdown ...; lay it out with
            python -m training.prepare ...".
    """
    try:
        return find_wflw_root(root)
    except FileNotFoundError:
        pass
    tree = WFLWTree(Path(root))
    if not tree.root.is_dir():
        raise FileNotFoundError(f"{flag} {root}: no such folder (a WFLW root holds {IMAGES_DIR}/ and "
                                f"{ANNOTATIONS_DIR}/; see {PROJECT_PAGE})")
    lists = [tree.annotations(split) for split in SPLITS]
    missing = [p.relative_to(tree.root).as_posix() + ("/" if p == tree.images else "")
               for p in (tree.images, *lists) if not p.exists()]
    out, where = tree.root, []
    if (tree.root / RAW_LISTS_DIR).is_dir():  # the annotation archive's folder given as the root
        out = tree.root.parent
        where.append(f"it holds {RAW_LISTS_DIR}/ itself, so it is the {ANNOTATIONS_DIR} folder: give the folder "
                     f"above it ({out})")
    elif not all(p.exists() for p in lists):
        where.append(f"the lists come from {ANNOTATIONS_URL}")
    if not tree.images.exists():
        where.append(f"{IMAGES_DIR}/ comes from {IMAGES_DIR}.tar.gz on Google Drive (file id {IMAGES_GDRIVE_ID}, "
                     f"e.g. gdown {IMAGES_GDRIVE_ID}) or Baidu Pan ({PROJECT_PAGE})")
    raise FileNotFoundError(f"{flag} {root}: not a WFLW root, missing {', '.join(missing)}; " + "; ".join(where)
                            + f"; lay it out with python -m training.prepare --images {IMAGES_DIR}.tar.gz "
                              f"--annotations {ANNOTATIONS_DIR}.tar.gz --out {out}")


def _place(source: Path, out: Path, name: str, marker: str | None = None) -> Path:
    """Put ``name`` (WFLW_images or WFLW_annotations) under ``out`` from an archive or a folder."""
    target = out / name
    if source.is_file():
        if not tarfile.is_tarfile(source):
            raise ValueError(f"{source}: not a tar archive (expected {name}.tar.gz or a folder)")
        with tarfile.open(source) as tar:
            tar.extractall(out, filter="data")  # refuses absolute paths, '..' and links outside
        if not target.is_dir():
            raise ValueError(f"{source}: the archive has no top-level {name}/ folder")
        return target
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such archive or folder")
    if (source / name).is_dir() and source.name != name:
        source = source / name  # the folder that contains WFLW_images/
    if marker is not None and not (source / marker).exists():
        raise ValueError(f"{source}: expected {marker}/ inside the {name} folder")
    if target.resolve() == source.resolve():
        return target
    if target.exists() or target.is_symlink():
        raise FileExistsError(f"{target} already exists; remove it or point --out elsewhere")
    out.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source.resolve(), target_is_directory=True)
    return target


def check_tree(root: Path, expected: dict[str, int] = EXPECTED_FACES) -> list[str]:
    """Problems of a WFLW root (empty when it is complete): counts, missing files and images."""
    tree = WFLWTree(root)
    problems = []
    referenced: set[str] = set()
    for split in SPLITS:
        path = tree.annotations(split)
        if not path.is_file():
            problems.append(f"missing annotation file {path}")
            continue
        samples = load_wflw_txt(path)
        if len(samples) != expected[split]:
            problems.append(f"{path.name}: {len(samples)} faces, expected {expected[split]}")
        referenced.update(s.image for s in samples)
    if not tree.images.is_dir():
        problems.append(f"missing image folder {tree.images}")
        return problems
    missing = []
    for name in sorted(referenced):
        try:
            if not resolve_image(tree.images, name).is_file():
                missing.append(name)
        except ValueError as exc:
            problems.append(str(exc))
    if missing:
        shown = "\n    ".join(missing[:SHOW_MISSING])
        more = f"\n    ... and {len(missing) - SHOW_MISSING} more" if len(missing) > SHOW_MISSING else ""
        problems.append(f"{len(missing)} of {len(referenced)} referenced images are missing under "
                        f"{tree.images}:\n    {shown}{more}")
    return problems


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Lay out and check a WFLW root.")
    parser.add_argument("--images", type=Path, help="WFLW_images.tar.gz or its extracted folder")
    parser.add_argument("--annotations", type=Path, help="WFLW_annotations.tar.gz or its extracted folder")
    parser.add_argument("--out", type=Path, required=True, help="the WFLW root to lay out")
    parser.add_argument("--download-annotations", action="store_true",
                        help=f"fetch the annotation archive from {ANNOTATIONS_URL}")
    parser.add_argument("--annotations-url", default=ANNOTATIONS_URL, help="where --download-annotations fetches from")
    parser.add_argument("--expect-train", type=int, default=EXPECTED_FACES["train"], help="train faces expected")
    parser.add_argument("--expect-test", type=int, default=EXPECTED_FACES["test"], help="test faces expected")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    annotations = args.annotations
    if annotations is None and args.download_annotations:
        annotations = download(args.annotations_url, out / "WFLW_annotations.tar.gz", timeout=60.0)
    if annotations is not None:
        _place(annotations, out, ANNOTATIONS_DIR, RAW_LISTS_DIR)
    if args.images is not None:
        _place(args.images, out, IMAGES_DIR)
    elif not (out / IMAGES_DIR).is_dir():
        print(manual_images_step(out))
    problems = check_tree(out, {"train": args.expect_train, "test": args.expect_test})
    if problems:
        print(f"{out} is not complete:")
        for p in problems:
            print(f"  - {p}")
        return 1
    print(f"{out} is a complete WFLW root: {args.expect_train} train and {args.expect_test} test faces, "
          f"all images present")
    return 0


if __name__ == "__main__":
    sys.exit(main())
