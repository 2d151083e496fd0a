"""Released weights: where they live, and a verified, atomic download into the torch hub cache."""
from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import torch
from tqdm.auto import tqdm

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


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _read_block(response, url: str, received: int, total: int | None) -> bytes:
    try:
        return response.read(1 << 16)
    except http.client.IncompleteRead as exc:  # the server closed the connection early
        raise OSError(f"download of {url} stopped after {received + len(exc.partial)} of {total} bytes") from exc


def download(url: str, dest: str | os.PathLike | None = None, sha256_prefix: str | None = None,
             progress: bool = True, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` (default: the hub cache) unless it is already there.

    The data goes to a temporary file in the same folder and is renamed to ``dest`` only once it
    is complete and, when ``sha256_prefix`` is given, its sha256 starts with it; on any failure
    the temporary file is deleted and the error re-raised, so no partial file ever has the final name.
    """
    dest = Path(dest) if dest is not None else cached_path(url)
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".partial", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        request = urllib.request.Request(url, headers={"User-Agent": "landmark-studio"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
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
        os.replace(tmp, dest)
        return dest
    finally:
        tmp.unlink(missing_ok=True)


def official_weights(download_if_missing: bool = True, url: str = OFFICIAL_URL,
                     sha256_prefix: str = OFFICIAL_SHA256_PREFIX, timeout: float = 30.0) -> Path:
    """Path of the official checkpoint: cached copy, else a verified download.

    Raises ``WeightsUnavailableError`` that says where to put the file when it is neither
    cached nor downloadable (offline). ``url`` and ``sha256_prefix`` exist for mirrors and tests.
    """
    path = cached_path(url)
    if path.is_file():
        return path
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
