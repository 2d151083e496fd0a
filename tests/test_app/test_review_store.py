"""app.review_store: one transaction per action, WAL, schema version, persistence and exports."""
from __future__ import annotations

import csv
import io
import json
import re
import sqlite3

import numpy as np
import pytest

from app.review_store import LEGACY_REVIEWER, SCHEMA_VERSION, VERDICTS, ReviewStore, apply_corrections, face_key
from model.formats.wflw import Sample, load_wflw_txt, write_wflw_txt


def _samples() -> list[Sample]:
    rng = np.random.default_rng(0)
    return [Sample(f"0--Test/img_{i}.jpg", (rng.random((98, 2)) * 100).astype(np.float32),
                   np.array([0, 0, 100, 100], np.float32), (False, True, False, False, False, i == 1))
            for i in range(3)]


def test_actions_persist_across_reopen(tmp_path):
    path = tmp_path / "review.sqlite"
    store = ReviewStore(path)
    store.set_verdict(1, "0--Test/img_1.jpg", "annotation wrong")
    store.set_note(1, "0--Test/img_1.jpg", "left brow drawn on the eyelid")
    store.set_correction(1, "0--Test/img_1.jpg", 40, 12.5, 33.25)
    store.set_correction(1, "0--Test/img_1.jpg", 40, 13.0, 34.0)  # moved again: last click wins
    store.close()

    again = ReviewStore(path)
    got = again.get(1, "0--Test/img_1.jpg")
    assert got == {"verdict": "annotation wrong", "note": "left brow drawn on the eyelid",
                   "corrections": {40: (13.0, 34.0)}}
    assert again.get(0, "0--Test/img_0.jpg") == {"verdict": None, "note": "", "corrections": {}}
    assert again.progress() == 1


def test_wal_and_schema_version(tmp_path):
    path = tmp_path / "review.sqlite"
    ReviewStore(path).set_verdict(0, "a.jpg", VERDICTS[0])
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(ValueError, match="schema version 99"):
        ReviewStore(path)


def test_bad_input_is_refused(tmp_path):
    store = ReviewStore(tmp_path / "r.sqlite")
    with pytest.raises(ValueError, match="verdict must be one of"):
        store.set_verdict(0, "a.jpg", "looks fine")
    with pytest.raises(ValueError, match="landmark index must be in 0..97"):
        store.set_correction(0, "a.jpg", 98, 1.0, 1.0)
    with pytest.raises(FileNotFoundError, match="folder does not exist"):
        ReviewStore(tmp_path / "missing" / "r.sqlite")


def test_exports_match_what_was_stored(tmp_path):
    samples = _samples()
    store = ReviewStore(tmp_path / "review.sqlite")
    store.set_verdict(2, samples[2].image, "prediction wrong", reviewer="ana")
    store.set_note(2, samples[2].image, 'quote " and, comma', reviewer="ana")
    store.set_correction(0, samples[0].image, 5, 1.5, 2.5, reviewer="ana")
    store.set_correction(0, samples[0].image, 60, 10.25, 20.125, reviewer="ana")

    rows = list(csv.DictReader(io.StringIO(store.export_csv())))
    assert [(r["face_key"], r["reviewer"], r["verdict"], r["note"], r["corrections"]) for r in rows] == [
        (face_key(0, samples[0].image), "ana", "", "", "5 1.500 2.500; 60 10.250 20.125"),
        (face_key(2, samples[2].image), "ana", "prediction wrong", 'quote " and, comma', ""),
    ]
    # ISO 8601 UTC times, not bare Unix seconds
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["updated"]) for r in rows)
    provenance = {"checkpoint": "best.pth", "checkpoint_sha256": "ab" * 32, "flip_test": True, "box": "landmarks"}
    data = json.loads(store.export_json(provenance))
    assert data["schema_version"] == SCHEMA_VERSION and data["provenance"] == provenance
    assert data["faces"][0]["corrections"] == {"5": [1.5, 2.5], "60": [10.25, 20.125]}
    assert data["faces"][0]["reviewer"] == "ana" and data["faces"][0]["updated"].endswith("Z")

    out = tmp_path / "list_98pt_rect_attr_test.txt"
    write_wflw_txt(out, store.corrected_samples(samples, image_sizes={samples[1].image: (60, 50)}))
    back = load_wflw_txt(out)
    assert len(back) == 3 and [s.image for s in back] == [s.image for s in samples]
    expected = samples[0].landmarks.copy()
    expected[5] = (1.5, 2.5)
    expected[60] = (10.25, 20.125)
    np.testing.assert_array_equal(back[0].landmarks, expected)
    np.testing.assert_array_equal(back[1].landmarks, samples[1].landmarks)
    assert back[1].attributes == samples[1].attributes
    # the 0..100 box of a 60 x 50 image is clipped to its last pixel; the others are untouched
    np.testing.assert_array_equal(back[1].box, [0, 0, 59, 49])
    np.testing.assert_array_equal(back[0].box, [0, 0, 100, 100])


def test_apply_corrections_copies_and_checks():
    landmarks = np.zeros((98, 2), np.float32)
    fixed = apply_corrections(landmarks, {3: (1.0, 2.0), 97: [4.0, 5.0]})
    assert fixed[3].tolist() == [1.0, 2.0] and fixed[97].tolist() == [4.0, 5.0]
    assert np.count_nonzero(fixed) == 4 and np.count_nonzero(landmarks) == 0  # input untouched
    with pytest.raises(ValueError, match="landmark index must be in 0..97, got 98"):
        apply_corrections(landmarks, {98: (0.0, 0.0)})


def test_reviewers_are_kept_apart_and_logged(tmp_path):
    store = ReviewStore(tmp_path / "review.sqlite")
    store.set_verdict(0, "a.jpg", "annotation wrong", reviewer="ana")
    store.set_verdict(0, "a.jpg", "annotation correct", reviewer="ben")
    store.set_correction(0, "a.jpg", 16, 3.0, 4.0, reviewer="ana")
    assert store.get(0, "a.jpg", reviewer="ana")["verdict"] == "annotation wrong"
    assert store.get(0, "a.jpg", reviewer="ben") == {"verdict": "annotation correct", "note": "", "corrections": {}}
    assert store.progress() == 1 and store.progress("ana") == 1 and store.progress("cy") == 0

    # a verdict can be cleared; an undone first move leaves no correction
    store.set_verdict(0, "a.jpg", None, reviewer="ana")
    store.clear_correction(0, "a.jpg", 16, reviewer="ana")
    assert store.get(0, "a.jpg", reviewer="ana") == {"verdict": None, "note": "", "corrections": {}}
    assert store.progress("ana") == 0 and store.reviewed_keys("ben") == {face_key(0, "a.jpg")}
    assert [(a["reviewer"], a["action"], a["detail"]) for a in store.actions()] == [
        ("ana", "verdict", "annotation wrong"), ("ben", "verdict", "annotation correct"),
        ("ana", "move", "16 3.000 4.000"), ("ana", "verdict", ""), ("ana", "unmove", "16")]
    with pytest.raises(ValueError, match="reviewer name is empty"):
        store.set_verdict(0, "a.jpg", VERDICTS[0], reviewer="  ")


def test_version_1_file_is_migrated(tmp_path):
    path = tmp_path / "review.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE schema_version (version INTEGER NOT NULL);
        INSERT INTO schema_version VALUES (1);
        CREATE TABLE reviews (face_key TEXT PRIMARY KEY, image TEXT NOT NULL, face_index INTEGER NOT NULL,
                              verdict TEXT, note TEXT NOT NULL DEFAULT '', updated REAL NOT NULL);
        CREATE TABLE corrections (face_key TEXT NOT NULL REFERENCES reviews(face_key), point INTEGER NOT NULL,
                                  x REAL NOT NULL, y REAL NOT NULL, updated REAL NOT NULL,
                                  PRIMARY KEY (face_key, point));
        INSERT INTO reviews VALUES ('3:b.jpg', 'b.jpg', 3, 'ambiguous', 'old note', 1000.0);
        INSERT INTO corrections VALUES ('3:b.jpg', 7, 1.5, 2.5, 1000.0);
    """)
    conn.close()
    store = ReviewStore(path)
    assert store.get(3, "b.jpg", reviewer=LEGACY_REVIEWER) == {
        "verdict": "ambiguous", "note": "old note", "corrections": {7: (1.5, 2.5)}}
    store.set_verdict(3, "b.jpg", "annotation correct", reviewer="ana")
    store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_a_face_counts_as_reviewed_with_a_verdict_or_a_corrected_point(tmp_path):
    """One rule for the progress line, "next unreviewed" and the export: a verdict or a corrected
    point makes a face reviewed (the export takes both); a note alone does not."""
    store = ReviewStore(tmp_path / "review.sqlite")
    for point in (3, 4, 5):  # three corrected points, no verdict: the export marks this face human
        store.set_correction(0, "a.jpg", point, 1.0, 2.0, reviewer="ana")
    store.set_verdict(1, "b.jpg", "ok", reviewer="ben")
    store.set_note(2, "c.jpg", "lower lip unclear", reviewer="ana")
    assert store.reviewed_keys("ana") == {face_key(0, "a.jpg")}
    assert store.reviewed_keys() == {face_key(0, "a.jpg"), face_key(1, "b.jpg")}
    assert (store.progress("ana"), store.progress("ben"), store.progress()) == (1, 1, 2)
    # both reviewers on one face count it once overall
    store.set_verdict(0, "a.jpg", "fixed", reviewer="ben")
    assert (store.progress("ben"), store.progress()) == (2, 2)
    # undoing every move of a face without a verdict makes it unreviewed again
    for point in (3, 4, 5):
        store.clear_correction(0, "a.jpg", point, reviewer="ana")
    assert store.progress("ana") == 0 and store.progress() == 2
