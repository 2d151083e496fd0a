"""Atomic file writes: the one place that writes a temporary file and renames it into place.

A reader never sees a half-written file under the final name, whether the writer is killed or the
machine loses power: the data is fsynced before ``os.replace``, and the folder after it. The
temporary's name carries the writer's process id (``.<name>.<pid>.<random>.tmp``), so the next write
of the same file removes what a killed writer (SIGKILL, power cut) left behind, and never the
temporary of a writer still running.
"""
from __future__ import annotations

import glob
import json
import os
import re
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
    remove_stale_temporaries(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
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


# ``.<name>.<pid>.<random>.tmp``: mkstemp's random part has no dots, so the pid is the last number.
_TEMPORARY = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of ``path`` (a file) or of every file in ``path`` (a folder) whose
    writer process is gone; a running writer's (or an unparsable name) is kept. Returns the removed."""
    path = Path(path)
    pattern = ".*.tmp" if path.is_dir() else f".{glob.escape(path.name)}.*.tmp"
    folder = path if path.is_dir() else path.parent
    removed = []
    for tmp in folder.glob(pattern):
        match = _TEMPORARY.match(tmp.name)
        if match and not _process_alive(int(match.group(1))):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process, or not a pid at all: keep
        return True
    return True


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
