"""Annotation review decisions in one SQLite file: verdicts, notes and point corrections.

Every action (set a verdict, set a note, move a point) is one transaction, written at once, so a
crash or restart loses nothing. The file is in WAL mode (readers never block the writer) and
carries a ``schema_version`` table so that a later layout can migrate it.

A face is identified by ``face_key(index, image)``: its position in the loaded annotation list and
its image path, which together stay stable across restarts of the app on the same list.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

from model.layout import NUM_LANDMARKS
from training.wflw import Sample, format_wflw_line

SCHEMA_VERSION = 1

# The four verdicts a reviewer can give, in the order the UI lists them.
VERDICTS: tuple[str, ...] = ("annotation correct", "annotation wrong", "prediction wrong", "ambiguous")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS reviews (
    face_key TEXT PRIMARY KEY,
    image TEXT NOT NULL,
    face_index INTEGER NOT NULL,
    verdict TEXT,
    note TEXT NOT NULL DEFAULT '',
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS corrections (
    face_key TEXT NOT NULL REFERENCES reviews(face_key),
    point INTEGER NOT NULL,
    x REAL NOT NULL,
    y REAL NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (face_key, point)
);
"""

CSV_COLUMNS = ("face_key", "image", "face_index", "verdict", "note", "corrected_points", "updated")


def face_key(index: int, image: str) -> str:
    """Stable identity of a face in the loaded list: ``"<index>:<image path>"``."""
    return f"{int(index)}:{image}"


class ReviewStore:
    """Read and write review decisions in a SQLite file (created on first use).

    Args:
        path: the database file; its folder must exist.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"review database folder does not exist: {self.path.parent}")
        self._lock = threading.Lock()
        # One connection shared by Gradio's worker threads, serialised by the lock.
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=10.0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        with self._lock, self._conn:
            self._conn.executescript(_SCHEMA)
            row = self._conn.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                self._conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] != SCHEMA_VERSION:
                raise ValueError(f"{self.path}: review database has schema version {row[0]}, "
                                 f"this app reads version {SCHEMA_VERSION}")

    def close(self) -> None:
        self._conn.close()

    # ------------------------------------------------------------------ writes (one transaction each)

    def _ensure_row(self, key: str, image: str, index: int, now: float) -> None:
        self._conn.execute(
            "INSERT INTO reviews (face_key, image, face_index, updated) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(face_key) DO NOTHING", (key, image, int(index), now))

    def set_verdict(self, index: int, image: str, verdict: str | None) -> None:
        """Record (or with ``None`` clear) the verdict of a face."""
        if verdict is not None and verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
        key, now = face_key(index, image), time.time()
        with self._lock, self._conn:
            self._ensure_row(key, image, index, now)
            self._conn.execute("UPDATE reviews SET verdict = ?, updated = ? WHERE face_key = ?", (verdict, now, key))

    def set_note(self, index: int, image: str, note: str) -> None:
        """Record the free-text note of a face (an empty string clears it)."""
        key, now = face_key(index, image), time.time()
        with self._lock, self._conn:
            self._ensure_row(key, image, index, now)
            self._conn.execute("UPDATE reviews SET note = ?, updated = ? WHERE face_key = ?", (note or "", now, key))

    def set_correction(self, index: int, image: str, point: int, x: float, y: float) -> None:
        """Record the true position (image pixels) of landmark ``point`` of a face."""
        if not 0 <= int(point) < NUM_LANDMARKS:
            raise ValueError(f"landmark index must be in 0..{NUM_LANDMARKS - 1}, got {point}")
        if not (np.isfinite(x) and np.isfinite(y)):
            raise ValueError(f"corrected position must be finite, got ({x}, {y})")
        key, now = face_key(index, image), time.time()
        with self._lock, self._conn:
            self._ensure_row(key, image, index, now)
            self._conn.execute(
                "INSERT INTO corrections (face_key, point, x, y, updated) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(face_key, point) DO UPDATE SET x = excluded.x, y = excluded.y, updated = excluded.updated",
                (key, int(point), float(x), float(y), now))
            self._conn.execute("UPDATE reviews SET updated = ? WHERE face_key = ?", (now, key))

    def clear_correction(self, index: int, image: str, point: int) -> None:
        """Forget the correction of one landmark."""
        with self._lock, self._conn:
            self._conn.execute("DELETE FROM corrections WHERE face_key = ? AND point = ?",
                               (face_key(index, image), int(point)))

    # ------------------------------------------------------------------ reads

    def get(self, index: int, image: str) -> dict:
        """``{"verdict": str | None, "note": str, "corrections": {point: (x, y)}}`` of a face."""
        key = face_key(index, image)
        with self._lock:
            row = self._conn.execute("SELECT verdict, note FROM reviews WHERE face_key = ?", (key,)).fetchone()
            points = self._conn.execute("SELECT point, x, y FROM corrections WHERE face_key = ? ORDER BY point",
                                        (key,)).fetchall()
        return {
            "verdict": row[0] if row else None,
            "note": row[1] if row else "",
            "corrections": {int(p): (float(x), float(y)) for p, x, y in points},
        }

    def progress(self) -> int:
        """Number of faces with a verdict."""
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM reviews WHERE verdict IS NOT NULL").fetchone()[0])

    def records(self) -> list[dict]:
        """Every reviewed face (verdict, note or correction), in list order."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT face_key, image, face_index, verdict, note, updated FROM reviews ORDER BY face_index").fetchall()
            points = self._conn.execute("SELECT face_key, point, x, y FROM corrections ORDER BY point").fetchall()
        corrections: dict[str, dict[int, list[float]]] = {}
        for key, point, x, y in points:
            corrections.setdefault(key, {})[int(point)] = [float(x), float(y)]
        return [
            {"face_key": key, "image": image, "face_index": int(index), "verdict": verdict, "note": note,
             "corrections": corrections.get(key, {}), "updated": float(updated)}
            for key, image, index, verdict, note, updated in rows
        ]

    # ------------------------------------------------------------------ exports

    def export_csv(self) -> str:
        """Verdicts and notes as CSV (one row per reviewed face; corrected point indices listed)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for r in self.records():
            writer.writerow([r["face_key"], r["image"], r["face_index"], r["verdict"] or "", r["note"],
                             " ".join(str(p) for p in r["corrections"]), f"{r['updated']:.3f}"])
        return out.getvalue()

    def export_json(self) -> str:
        """Verdicts, notes and corrections (point index -> [x, y] image pixels) as JSON."""
        records = [dict(r, corrections={str(p): xy for p, xy in r["corrections"].items()}) for r in self.records()]
        return json.dumps({"schema_version": SCHEMA_VERSION, "faces": records}, indent=1)

    def corrected_samples(self, samples: list[Sample]) -> list[Sample]:
        """``samples`` (the loaded list, in order) with every stored point correction applied."""
        by_key = {r["face_key"]: r["corrections"] for r in self.records() if r["corrections"]}
        out = []
        for index, sample in enumerate(samples):
            fixes = by_key.get(face_key(index, sample.image))
            if fixes:
                landmarks = np.array(sample.landmarks, dtype=np.float32, copy=True)
                for point, (x, y) in fixes.items():
                    landmarks[point] = (x, y)
                sample = Sample(sample.image, landmarks, sample.box, sample.attributes)
            out.append(sample)
        return out

    def export_wflw(self, samples: list[Sample]) -> str:
        """The loaded annotation list with corrections applied, in WFLW annotation-file format."""
        return "".join(format_wflw_line(s) + "\n" for s in self.corrected_samples(samples))
