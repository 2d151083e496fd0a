"""Atomic file writes: the one place that writes a temporary file and renames it into place.

A reader never sees a half-written file under the final name, whether the writer is killed or the
machine loses power: the data is fsynced before ``os.replace``, and the folder after it.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a fresh temporary path in ``path``'s folder, then rename it to ``path``.

    ``write`` fills the file (``torch.save``, ``cv2.imwrite``, ``os.link``...). On any error the
    temporary file is removed and the error re-raised; ``path`` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        tmp.unlink()  # ``write`` creates it (some writers, os.link for one, refuse an existing file)
        write(tmp)
        if not tmp.is_file():
            raise OSError(f"{path}: nothing was written")
        _fsync(tmp, os.O_RDONLY)
        os.replace(tmp, path)
        _fsync(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """``data`` to ``path``, atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """UTF-8 ``text`` to ``path``, atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj, indent: int | None = None) -> Path:
    """``obj`` as JSON to ``path``, atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent))


def _fsync(path: Path, flags: int) -> None:
    try:
        fd = os.open(path, flags)
    except OSError:  # folders cannot be opened for fsync on some systems; the rename still stands
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
