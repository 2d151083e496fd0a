"""app.review_store: one transaction per action, WAL, schema version, persistence and exports."""
from __future__ import annotations

import csv
import io
import json
import sqlite3

import numpy as np
import pytest

from app.review_store import SCHEMA_VERSION, VERDICTS, ReviewStore, face_key
from training.wflw import Sample, load_wflw_txt


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
    store.set_verdict(2, samples[2].image, "prediction wrong")
    store.set_note(2, samples[2].image, 'quote " and, comma')
    store.set_correction(0, samples[0].image, 5, 1.5, 2.5)

    rows = list(csv.DictReader(io.StringIO(store.export_csv())))
    assert [(r["face_key"], r["verdict"], r["note"], r["corrected_points"]) for r in rows] == [
        (face_key(0, samples[0].image), "", "", "5"),
        (face_key(2, samples[2].image), "prediction wrong", 'quote " and, comma', ""),
    ]
    data = json.loads(store.export_json())
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["faces"][0]["corrections"] == {"5": [1.5, 2.5]}

    out = tmp_path / "list_98pt_rect_attr_test.txt"
    out.write_text(store.export_wflw(samples))
    back = load_wflw_txt(out)
    assert len(back) == 3 and [s.image for s in back] == [s.image for s in samples]
    expected = samples[0].landmarks.copy()
    expected[5] = (1.5, 2.5)
    np.testing.assert_array_equal(back[0].landmarks, expected)
    np.testing.assert_array_equal(back[1].landmarks, samples[1].landmarks)
    assert back[1].attributes == samples[1].attributes
