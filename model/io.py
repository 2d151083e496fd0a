"""Atomic file writes: the one place that writes a temporary file and renames it into place.

A reader never sees a half-written file under the final name, whether the writer is killed or the
machine loses power: the data is fsynced before ``os.replace``, and the folder after it. The
temporary's name carries the writer's process id (``.<name>.<pid>.<random>.tmp``). A process's first
write into a folder removes the temporaries that killed writers (SIGKILL, power cut) left there, and
never the temporary of a writer still running: so the next run cleans up after a killed one, at the
cost of one folder listing per folder and process, not per write.
"""
from __future__ import annotations

import functools
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Callable

import psutil


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a fresh temporary path in ``path``'s folder, then rename it to ``path``.

    ``write`` fills the file (``torch.save``, ``cv2.imwrite``, ``os.link``...). On any error the
    temporary file is removed and the error re-raised; ``path`` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_once(os.path.abspath(path.parent))
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


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries in ``folder`` whose writer process is gone; a running writer's (or a
    name ``atomic_write`` does not make) is kept. Returns the removed."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        match = _TEMPORARY.match(tmp.name)
        if match and not process_alive(int(match.group(1))):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


# Bounded: a server writes into a fresh folder per request; a folder dropped from the cache is
# only listed again.
@functools.lru_cache(maxsize=1024)
def _sweep_once(folder: str) -> None:
    """``remove_stale_temporaries(folder)`` on this process's first write into ``folder``."""
    remove_stale_temporaries(folder)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (another user's too); a number too large to be a pid counts as
    alive, so that nothing is removed on its account."""
    try:
        return psutil.pid_exists(pid)
    except OverflowError:
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
