"""Released weights: where they live, and a verified, atomic download into the torch hub cache."""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import torch
from tqdm.auto import tqdm

from model.io import atomic_write, atomic_write_json

OFFICIAL_URL = (
    "https://download.openmmlab.com/mmpose/face/deeppose/"
    "deeppose_res50_wflw_256x256_softwingloss-4d34f22a_20211212.pth"
)
OFFICIAL_SHA256_PREFIX = "4d34f22a"


class WeightsUnavailableError(FileNotFoundError):
    """The weights are neither cached nor downloadable; the message says how to supply them."""


def cache_dir() -> Path:
    """``torch.hub.get_dir()/checkpoints``: where torch keeps downloaded checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_path(url: str = OFFICIAL_URL) -> Path:
    """Final location of ``url`` in the cache (the file name of the URL)."""
    return cache_dir() / Path(urlparse(url).path).name


class WeightsVerificationError(WeightsUnavailableError):
    """A cached weights file whose sha256 does not start with the published prefix; it is not used."""


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of the file at ``path`` as 64 lower-case hex digits (read in chunks, any size)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _marker(path: Path) -> Path:
    """``<file>.verified``: records that ``path``, at its current size and mtime, had this sha256."""
    return path.with_name(path.name + ".verified")


def _stamp(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _record_verified(path: Path, sha256: str) -> None:
    atomic_write_json(_marker(path), {"sha256": sha256, **_stamp(path)})


def _was_verified(path: Path, sha256_prefix: str) -> bool:
    try:
        record = json.loads(_marker(path).read_text())
        return (isinstance(record, dict) and str(record.get("sha256", "")).startswith(sha256_prefix)
                and {k: record.get(k) for k in ("size", "mtime_ns")} == _stamp(path))
    except (OSError, ValueError):  # no marker yet, or an unreadable one: verify again
        return False


def verify_cached(path: str | os.PathLike, sha256_prefix: str, url: str | None = None) -> Path:
    """Check once that ``path``'s sha256 starts with ``sha256_prefix`` (for files copied in by hand).

    The first call hashes the file and, when it matches, writes ``<file>.verified`` (sha256, size,
    mtime); later calls only compare size and mtime with that record, so a replaced file is hashed
    again. A mismatch raises ``WeightsVerificationError`` saying what to do; the file is left in
    place (it may be someone's own) but never used.
    """
    path = Path(path)
    if _was_verified(path, sha256_prefix):
        return path
    actual = file_sha256(path)
    if not actual.startswith(sha256_prefix):
        source = f"download {url} again" if url else "copy the right file"
        raise WeightsVerificationError(
            f"{path} is not the expected weights file: its sha256 starts with {actual[:8]}, not {sha256_prefix} "
            f"(a partial copy or a different checkpoint). Delete it and {source} (the sha256 must start with "
            f"{sha256_prefix}), or pass --weights PATH to use it as your own checkpoint."
        )
    _record_verified(path, actual)
    return path


def _read_block(response, url: str, received: int, total: int | None) -> bytes:
    try:
        return response.read(1 << 16)
    except http.client.IncompleteRead as exc:  # the server closed the connection early
        raise OSError(f"download of {url} stopped after {received + len(exc.partial)} of {total} bytes") from exc


def download(url: str, dest: str | os.PathLike | None = None, sha256_prefix: str | None = None,
             progress: bool = True, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` (default: the hub cache) unless it is already there.

    The data goes to a temporary file in the same folder (``model.io.atomic_write``) and is renamed
    to ``dest`` only once it is complete and, when ``sha256_prefix`` is given, its sha256 starts with
    it; on any failure the temporary file is deleted and the error re-raised, so no partial file ever
    has the final name. With ``sha256_prefix``, a file already at ``dest`` is verified once
    (``verify_cached``) before it is returned.

    Not ``torch.hub.download_url_to_file``, which does the same rename-after-hash, because it has
    no ``timeout`` (a stalled server would hang start-up for ever) and does not fsync before the
    rename (``model.io.atomic_write`` does, so a power cut cannot leave a torn file under the name).
    """
    dest = Path(dest) if dest is not None else cached_path(url)
    if dest.is_file():
        return verify_cached(dest, sha256_prefix, url) if sha256_prefix else dest
    digest = hashlib.sha256()

    def fetch(tmp: Path) -> None:
        request = urllib.request.Request(url, headers={"User-Agent": "landmark-studio"})
        with open(tmp, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            total = response.headers.get("Content-Length")
            total = int(total) if total is not None else None
            received = 0
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=dest.name, disable=not progress) as bar:
                while block := _read_block(response, url, received, total):
                    out.write(block)
                    digest.update(block)
                    received += len(block)
                    bar.update(len(block))
            if total is not None and received != total:
                raise OSError(f"download of {url} stopped after {received} of {total} bytes")
        actual = digest.hexdigest()
        if sha256_prefix and not actual.startswith(sha256_prefix):
            raise ValueError(
                f"download of {url} is corrupt: sha256 {actual[:16]}... does not start with {sha256_prefix}"
            )

    atomic_write(dest, fetch)
    if sha256_prefix:
        _record_verified(dest, digest.hexdigest())
    return dest


def official_weights(download_if_missing: bool = True, url: str = OFFICIAL_URL,
                     sha256_prefix: str = OFFICIAL_SHA256_PREFIX, timeout: float = 30.0) -> Path:
    """Path of the official checkpoint: the cached copy (sha256 prefix verified once), else a
    verified download.

    Raises ``WeightsUnavailableError`` that says where to put the file when it is neither cached
    nor downloadable (offline), and its subclass ``WeightsVerificationError`` when the cached file
    has the wrong sha256. ``url`` and ``sha256_prefix`` exist for mirrors and tests.
    """
    path = cached_path(url)
    if path.is_file():  # downloaded earlier, or copied in by hand: checked once, on first use
        return verify_cached(path, sha256_prefix, url)
    how = (
        f"Download {url} on a machine with internet access (sha256 starts with "
        f"{sha256_prefix}) and copy it to {path}, or pass --weights PATH to a checkpoint."
    )
    if not download_if_missing:
        raise WeightsUnavailableError(f"The official 98-point weights are not cached at {path}. {how}")
    try:
        return download(url, path, sha256_prefix=sha256_prefix, timeout=timeout)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise WeightsUnavailableError(
            f"The official 98-point weights are not cached at {path} and could not be downloaded "
            f"({exc}). {how}"
        ) from exc
