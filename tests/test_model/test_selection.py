"""model.selection: which detections get landmarks, worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest

from model.detector import Detections
from model.selection import DEFAULT_MIN_SIZE, FaceFilter, select_faces, selected

BOXES = np.array([[0, 0, 50, 50],       # A .95
                  [100, 0, 150, 50],    # B .99
                  [0, 100, 19, 119],    # C .99 but 19 px
                  [0, 200, 60, 260],    # D .80
                  [60, 5, 110, 55]],    # E .97
                 np.float32)
SCORES = np.array([0.95, 0.99, 0.99, 0.80, 0.97], np.float32)
DETECTIONS = Detections(BOXES, SCORES, np.arange(5 * 5 * 2, dtype=np.float32).reshape(5, 5, 2))


def test_limits_cap_and_reading_order_by_hand():
    selection = select_faces(DETECTIONS, FaceFilter(min_score=0.9, min_size=32, max_faces=2))
    assert selection.indices.tolist() == [4, 1]  # B and E, the two most confident, left to right
    assert (selection.low_score, selection.too_small, selection.passed) == (1, 1, 3)
    assert selection.threshold_note() == "1 detection below score 0.9 and 1 detection smaller than 32 px left out"
    assert selection.limit_note() == "3 faces found; landmarks for the 2 most confident (--max-faces)"
    kept = selected(DETECTIONS, selection)
    np.testing.assert_array_equal(kept.boxes, BOXES[[4, 1]])
    np.testing.assert_array_equal(kept.points, DETECTIONS.points[[4, 1]])
    everything = select_faces(DETECTIONS, FaceFilter(min_score=0.9, min_size=32, max_faces=32))
    assert everything.indices.tolist() == [0, 4, 1] and everything.limit_note() is None


def test_defaults_keep_every_detection_even_boxes_below_the_search_size():
    selection = select_faces(DETECTIONS)
    assert sorted(selection.indices.tolist()) == [0, 1, 2, 3, 4]  # C (19 px) stays: no size limit at 20 px
    assert selection.threshold_note() is None and selection.limit_note() is None
    assert DEFAULT_MIN_SIZE == 20
    # Rows top to bottom, left to right: A, E, B on the first row, then C, then D.
    assert selection.indices.tolist() == [0, 4, 1, 2, 3]


def test_no_detections_select_nothing():
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))
    selection = select_faces(empty, FaceFilter(min_score=0.99, min_size=40))
    assert len(selection) == 0 and selection.indices.dtype == np.int64 and selection.threshold_note() is None


@pytest.mark.parametrize("kwargs, message", [
    ({"min_score": 1.5}, "minimum face score must be between 0 and 1, got 1.5"),
    ({"min_score": float("nan")}, "minimum face score must be between 0 and 1"),
    ({"min_size": -1}, "minimum face size must be at least 0 pixels, got -1"),
    ({"max_faces": 0}, "max_faces \\(most faces per image\\) must be a whole number of at least 1, got 0"),
    ({"max_faces": 2.5}, "max_faces \\(most faces per image\\) must be a whole number of at least 1, got 2.5"),
])
def test_bad_limits_are_refused_naming_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FaceFilter(**kwargs)
