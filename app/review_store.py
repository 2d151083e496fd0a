"""Annotation review decisions in one SQLite file: verdicts, notes and point corrections, per reviewer.

Every action (set or clear a verdict, set a note, move a point, undo a move) is one transaction,
written at once, so a crash or restart loses nothing. Each action names its reviewer, so one file
holds several reviewers' decisions side by side, and each is also appended to an ``actions`` log.
The file is in WAL mode (readers never block the writer) and carries a ``schema_version``;
version 1 files (no reviewer names) are migrated in place on open, their rows credited to
``LEGACY_REVIEWER``.

A face is identified by ``face_key(index, image)``: its position in the loaded annotation list and
its image path, which together stay stable across restarts of the app on the same list.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from model.layout import NUM_LANDMARKS, check_landmark_index
from model.formats.wflw import Sample

SCHEMA_VERSION = 2

# The verdicts a reviewer can give on a WFLW face, and on a face of a dataset written by
# ``python -m model.annotate`` (model points, no human ground truth), in the order the UI lists them
# (hotkeys 1-4 / 1-3). The store accepts the union ``VERDICTS`` (one database file may hold reviews
# of both kinds); the Review tab offers the set of the loaded dataset's kind (``verdicts_for``).
WFLW_VERDICTS: tuple[str, ...] = ("annotation correct", "annotation wrong", "prediction wrong", "ambiguous")
ANNOTATE_VERDICTS: tuple[str, ...] = ("ok", "fixed", "not a face")
VERDICTS: tuple[str, ...] = WFLW_VERDICTS + ANNOTATE_VERDICTS
# Annotate-dataset verdicts: the face leaves the exported dataset / its points become human-made.
NOT_A_FACE, FIXED = "not a face", "fixed"


def verdicts_for(kind: str) -> tuple[str, ...]:
    """The verdicts offered for a dataset kind ("wflw" or "annotate", ``app.wflw_data.KINDS``)."""
    if kind not in ("wflw", "annotate"):
        raise ValueError(f"dataset kind must be 'wflw' or 'annotate', got {kind!r}")
    return ANNOTATE_VERDICTS if kind == "annotate" else WFLW_VERDICTS

# Who made an action when the caller names no one, and who made the actions of a version 1 file.
DEFAULT_REVIEWER = "anonymous"
LEGACY_REVIEWER = "unknown (schema 1)"
MAX_REVIEWER_LENGTH = 80

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS reviews (
    face_key TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    image TEXT NOT NULL,
    face_index INTEGER NOT NULL,
    verdict TEXT,
    note TEXT NOT NULL DEFAULT '',
    updated REAL NOT NULL,
    PRIMARY KEY (face_key, reviewer)
);
CREATE TABLE IF NOT EXISTS corrections (
    face_key TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    point INTEGER NOT NULL,
    x REAL NOT NULL,
    y REAL NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (face_key, reviewer, point),
    FOREIGN KEY (face_key, reviewer) REFERENCES reviews(face_key, reviewer)
);
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    reviewer TEXT NOT NULL,
    face_key TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
"""

# Version 1 -> 2: the same tables with a reviewer column in their keys, plus the action log.
_MIGRATE_1_TO_2 = """
ALTER TABLE corrections RENAME TO corrections_v1;
ALTER TABLE reviews RENAME TO reviews_v1;
{schema}
INSERT INTO reviews (face_key, reviewer, image, face_index, verdict, note, updated)
    SELECT face_key, :legacy, image, face_index, verdict, note, updated FROM reviews_v1;
INSERT INTO corrections (face_key, reviewer, point, x, y, updated)
    SELECT face_key, :legacy, point, x, y, updated FROM corrections_v1;
DROP TABLE corrections_v1;
DROP TABLE reviews_v1;
UPDATE schema_version SET version = 2;
"""

CSV_COLUMNS = ("face_key", "image", "face_index", "reviewer", "verdict", "note", "corrections", "updated")


def face_key(index: int, image: str) -> str:
    """Stable identity of a face in the loaded list: ``"<index>:<image path>"``."""
    return f"{int(index)}:{image}"


def iso_time(seconds: float) -> str:
    """Unix time as an ISO 8601 UTC timestamp with milliseconds, e.g. ``2026-11-24T14:18:53.120Z``."""
    return datetime.fromtimestamp(float(seconds), tz=timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def apply_corrections(landmarks, fixes: dict) -> np.ndarray:
    """A copy of (98, 2) ``landmarks`` with ``fixes`` ({point: (x, y)} image pixels) put in place.

    The one place where stored corrections meet the annotation: the face view, the editor and
    the corrected WFLW export all call it.
    """
    out = np.array(landmarks, dtype=np.float32, copy=True)
    if out.shape != (NUM_LANDMARKS, 2):
        raise ValueError(f"landmarks must have shape ({NUM_LANDMARKS}, 2), got {out.shape}")
    for point, (x, y) in (fixes or {}).items():
        out[check_landmark_index(point)] = (x, y)
    return out


def clip_box(box, width: int, height: int) -> np.ndarray:
    """(4,) xyxy box clipped to an image of ``width`` x ``height`` pixels (x in [0, width - 1])."""
    box = np.asarray(box, dtype=np.float32).reshape(4)
    return np.clip(box, 0, [width - 1, height - 1, width - 1, height - 1]).astype(np.float32)


def check_reviewer(reviewer: str | None) -> str:
    """The reviewer name, stripped; a clear error for an empty or overlong one."""
    name = (reviewer or "").strip()
    if not name:
        raise ValueError("reviewer name is empty: type your name in the Reviewer box")
    if len(name) > MAX_REVIEWER_LENGTH or any(c in name for c in "\r\n\t"):
        raise ValueError(f"reviewer name must be one line of at most {MAX_REVIEWER_LENGTH} characters, "
                         f"got {name[:MAX_REVIEWER_LENGTH]!r}")
    return name


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
            self._conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self._conn.execute("SELECT version FROM schema_version").fetchone()
            if row is not None and row[0] == 1:
                self._migrate_from_1()
            elif row is not None and row[0] != SCHEMA_VERSION:
                raise ValueError(f"{self.path}: review database has schema version {row[0]}, "
                                 f"this app reads versions 1 and {SCHEMA_VERSION}")
            self._conn.executescript(_SCHEMA)
            if row is None:
                self._conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))

    def _migrate_from_1(self) -> None:
        """Version 1 had one decision per face and no reviewer: credit it to ``LEGACY_REVIEWER``."""
        self._conn.execute("PRAGMA foreign_keys=OFF")
        # executescript cannot bind parameters; the legacy name is a constant without quotes.
        script = _MIGRATE_1_TO_2.format(schema=_SCHEMA).replace(":legacy", f"'{LEGACY_REVIEWER}'")
        self._conn.executescript("BEGIN;\n" + script + "\nCOMMIT;")
        self._conn.execute("PRAGMA foreign_keys=ON")

    def close(self) -> None:
        self._conn.close()

    # ------------------------------------------------------------------ writes (one transaction each)

    def _begin(self, index: int, image: str, reviewer: str, action: str, detail: str) -> tuple[str, str, float]:
        """Inside a transaction: make sure the (face, reviewer) row exists and log the action."""
        key, now = face_key(index, image), time.time()
        self._conn.execute(
            "INSERT INTO reviews (face_key, reviewer, image, face_index, updated) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(face_key, reviewer) DO NOTHING", (key, reviewer, image, int(index), now))
        self._conn.execute("INSERT INTO actions (time, reviewer, face_key, action, detail) VALUES (?, ?, ?, ?, ?)",
                           (now, reviewer, key, action, detail))
        return key, reviewer, now

    def set_verdict(self, index: int, image: str, verdict: str | None, *, reviewer: str = DEFAULT_REVIEWER) -> None:
        """Record (or with ``None`` clear) ``reviewer``'s verdict on a face."""
        if verdict is not None and verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
        reviewer = check_reviewer(reviewer)
        with self._lock, self._conn:
            key, who, now = self._begin(index, image, reviewer, "verdict", verdict or "")
            self._conn.execute("UPDATE reviews SET verdict = ?, updated = ? WHERE face_key = ? AND reviewer = ?",
                               (verdict, now, key, who))

    def set_note(self, index: int, image: str, note: str, *, reviewer: str = DEFAULT_REVIEWER) -> None:
        """Record ``reviewer``'s free-text note on a face (an empty string clears it)."""
        reviewer = check_reviewer(reviewer)
        with self._lock, self._conn:
            key, who, now = self._begin(index, image, reviewer, "note", note or "")
            self._conn.execute("UPDATE reviews SET note = ?, updated = ? WHERE face_key = ? AND reviewer = ?",
                               (note or "", now, key, who))

    def set_correction(self, index: int, image: str, point: int, x: float, y: float, *,
                       reviewer: str = DEFAULT_REVIEWER) -> None:
        """Record ``reviewer``'s true position (image pixels) of landmark ``point`` of a face."""
        point = check_landmark_index(point)
        if not (np.isfinite(x) and np.isfinite(y)):
            raise ValueError(f"corrected position must be finite, got ({x}, {y})")
        reviewer = check_reviewer(reviewer)
        with self._lock, self._conn:
            key, who, now = self._begin(index, image, reviewer, "move", f"{int(point)} {float(x):.3f} {float(y):.3f}")
            self._conn.execute(
                "INSERT INTO corrections (face_key, reviewer, point, x, y, updated) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(face_key, reviewer, point) DO UPDATE SET x = excluded.x, y = excluded.y, "
                "updated = excluded.updated", (key, who, int(point), float(x), float(y), now))
            self._conn.execute("UPDATE reviews SET updated = ? WHERE face_key = ? AND reviewer = ?", (now, key, who))

    def clear_correction(self, index: int, image: str, point: int, *, reviewer: str = DEFAULT_REVIEWER) -> None:
        """Forget ``reviewer``'s correction of one landmark: the editor's undo of a point's first move."""
        point = check_landmark_index(point)
        reviewer = check_reviewer(reviewer)
        with self._lock, self._conn:
            key, who, now = self._begin(index, image, reviewer, "unmove", str(int(point)))
            self._conn.execute("DELETE FROM corrections WHERE face_key = ? AND reviewer = ? AND point = ?",
                               (key, who, int(point)))
            self._conn.execute("UPDATE reviews SET updated = ? WHERE face_key = ? AND reviewer = ?", (now, key, who))

    # ------------------------------------------------------------------ reads

    def get(self, index: int, image: str, *, reviewer: str = DEFAULT_REVIEWER) -> dict:
        """``{"verdict": str | None, "note": str, "corrections": {point: (x, y)}}`` of ``reviewer`` on a face."""
        key = face_key(index, image)
        with self._lock:
            row = self._conn.execute("SELECT verdict, note FROM reviews WHERE face_key = ? AND reviewer = ?",
                                     (key, reviewer)).fetchone()
            points = self._conn.execute(
                "SELECT point, x, y FROM corrections WHERE face_key = ? AND reviewer = ? ORDER BY point",
                (key, reviewer)).fetchall()
        return {
            "verdict": row[0] if row else None,
            "note": row[1] if row else "",
            "corrections": {int(p): (float(x), float(y)) for p, x, y in points},
        }

    def reviewed_keys(self, reviewer: str | None = None) -> set[str]:
        """``face_key``s reviewed by ``reviewer`` (by anyone when ``None``).

        The one rule of what counts as reviewed: a face with a verdict or with at least one corrected
        point, the two things an export takes from a review (a verdict keeps, fixes or drops the face;
        a corrected point changes it and makes it human-made). A note alone does not count.
        """
        query = ("SELECT face_key FROM reviews r WHERE (verdict IS NOT NULL OR EXISTS (SELECT 1 FROM corrections c "
                 "WHERE c.face_key = r.face_key AND c.reviewer = r.reviewer))")
        args: tuple = ()
        if reviewer is not None:
            query, args = query + " AND reviewer = ?", (reviewer,)
        with self._lock:
            return {row[0] for row in self._conn.execute(query, args).fetchall()}

    def progress(self, reviewer: str | None = None) -> int:
        """Number of faces reviewed (``reviewed_keys``) by ``reviewer``, or by anyone when ``None``."""
        return len(self.reviewed_keys(reviewer))

    def actions(self) -> list[dict]:
        """The action log, oldest first: ``{"time", "reviewer", "face_key", "action", "detail"}``."""
        with self._lock:
            rows = self._conn.execute("SELECT time, reviewer, face_key, action, detail FROM actions ORDER BY id").fetchall()
        return [{"time": t, "reviewer": r, "face_key": k, "action": a, "detail": d} for t, r, k, a, d in rows]

    def records(self) -> list[dict]:
        """Every reviewed (face, reviewer) pair (verdict, note or correction), in list order."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT face_key, reviewer, image, face_index, verdict, note, updated FROM reviews "
                "ORDER BY face_index, reviewer").fetchall()
            points = self._conn.execute(
                "SELECT face_key, reviewer, point, x, y FROM corrections ORDER BY point").fetchall()
        corrections: dict[tuple[str, str], dict[int, list[float]]] = {}
        for key, who, point, x, y in points:
            corrections.setdefault((key, who), {})[int(point)] = [float(x), float(y)]
        return [
            {"face_key": key, "reviewer": who, "image": image, "face_index": int(index), "verdict": verdict,
             "note": note, "corrections": corrections.get((key, who), {}), "updated": float(updated)}
            for key, who, image, index, verdict, note, updated in rows
        ]

    # ------------------------------------------------------------------ exports

    def export_csv(self) -> str:
        """One row per reviewed (face, reviewer): verdict, note, corrections as ``point x y`` triples
        separated by ``;`` (image pixels, 3 decimals), and the ISO 8601 UTC time of the last action."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for r in self.records():
            fixes = "; ".join(f"{p} {x:.3f} {y:.3f}" for p, (x, y) in r["corrections"].items())
            writer.writerow([r["face_key"], r["image"], r["face_index"], r["reviewer"], r["verdict"] or "",
                             r["note"], fixes, iso_time(r["updated"])])
        return out.getvalue()

    def export_json(self, provenance: dict | None = None, exported_by: str | None = None) -> str:
        """Verdicts, notes and corrections (point index -> [x, y] image pixels) as JSON, with ISO 8601
        times, ``provenance`` (what produced the predictions that were reviewed) and who exported."""
        records = [dict(r, corrections={str(p): xy for p, xy in r["corrections"].items()},
                        updated=iso_time(r["updated"])) for r in self.records()]
        return json.dumps({"schema_version": SCHEMA_VERSION, "exported": iso_time(time.time()),
                           "exported_by": exported_by, "provenance": provenance or {}, "faces": records}, indent=1)

    def latest_verdicts(self) -> dict[str, str]:
        """``{face_key: verdict}``: per face, the verdict of the reviewer who acted on it last."""
        latest: dict[str, tuple[float, str]] = {}
        for r in self.records():
            if r["verdict"] is not None and (r["face_key"] not in latest or latest[r["face_key"]][0] <= r["updated"]):
                latest[r["face_key"]] = (r["updated"], r["verdict"])
        return {key: verdict for key, (_, verdict) in latest.items()}

    def corrected_keys(self) -> set[str]:
        """``face_key``s with at least one stored point correction (by anyone)."""
        return {r["face_key"] for r in self.records() if r["corrections"]}

    def corrected_samples(self, samples: list[Sample], reviewer: str | None = None,
                          image_sizes: dict[str, tuple[int, int]] | None = None) -> list[Sample]:
        """``samples`` (the loaded list, in order) with the stored point corrections applied.

        Args:
            reviewer: whose corrections; ``None``: everyone's (for a point corrected by several
                reviewers, the one whose last action on the face is the latest wins).
            image_sizes: ``{image: (width, height)}``; the boxes of these images are clipped to them.
        """
        by_key: dict[str, dict[int, tuple[float, list[float]]]] = {}
        for r in self.records():
            if reviewer is not None and r["reviewer"] != reviewer:
                continue
            fixes = by_key.setdefault(r["face_key"], {})
            for point, xy in r["corrections"].items():
                if point not in fixes or fixes[point][0] <= r["updated"]:
                    fixes[point] = (r["updated"], xy)
        out = []
        for index, sample in enumerate(samples):
            fixes = {p: xy for p, (_, xy) in by_key.get(face_key(index, sample.image), {}).items()}
            if fixes:
                sample = dataclasses.replace(sample, landmarks=apply_corrections(sample.landmarks, fixes))
            if image_sizes and sample.image in image_sizes:
                sample = dataclasses.replace(sample, box=clip_box(sample.box, *image_sizes[sample.image]))
            out.append(sample)
        return out
